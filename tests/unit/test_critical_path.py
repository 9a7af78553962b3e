"""The rollout's physical limit (rollout.core.critical_path), and the proof that
wall ÷ that limit measures the controller: a delay added to any driver call
raises it, where wall ÷ the journal's phase times did not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollout.config import Pool, Strategy
from rollout.core.critical_path import (
    Components,
    batch_sizes,
    critical_path,
    pool_limit,
)
from rollout.core.state import RolloutStatus
from rollout.engine.controller import Controller
from rollout.errors import ConfigError
from rollout.model import Admin, Image, LaunchSpec, Member, Node, SmokeResult
from rollout.store.journal import Journal
from rollout.testing import (
    FakeClock,
    FakeImageStore,
    FakeLoadBalancer,
    FakeProvider,
    FakeSmokeRunner,
    image,
    pool_settings,
)

NODE = Components(boot=1.0, smoke=0.5, lb_rise=1.0, drain=0.5)  # 3 s per node


@pytest.mark.parametrize(("settings", "nodes", "sizes"), [
    ({"pool_size": 4}, 4, (1, 1, 1, 1)),                        # canary 1, batch 1
    ({"pool_size": 5, "canary": 1, "batch_size": 2}, 5, (1, 2, 2)),
    ({"pool_size": 5, "canary": 0, "batch_size": 2}, 5, (2, 2, 1)),
    ({"pool_size": 4, "canary": 2, "batch_size": 4}, 4, (2, 2)),
    ({"pool_size": 4, "canary": 1}, 0, ()),
    ({"pool_size": 4, "strategy": "blue_green", "canary": 0, "batch_size": 4}, 4, (4,)),
])
def test_batch_sizes_follow_the_plan(settings: dict[str, Any], nodes: int,
                                     sizes: tuple[int, ...]) -> None:
    assert batch_sizes(pool_settings(**settings), nodes) == sizes


def test_a_batch_lasts_as_long_as_its_slowest_node_and_batches_add_up() -> None:
    straggler = Components(boot=4.0, smoke=0.5, lb_rise=1.0, drain=0.5)  # 6 s
    path = critical_path([[NODE], [NODE, straggler], [NODE]], soak=2.0)
    assert path.batches == (5.0, 6.0, 3.0)
    assert path.total == 14.0
    assert path.ratio(15.4) == pytest.approx(1.1)


def test_no_soak_batch_means_no_soak() -> None:
    assert critical_path([[NODE], [NODE]], soak=9.0, soak_batch=None).total == 6.0


def test_blue_green_waits_for_the_whole_green_pool_then_the_warm_delay() -> None:
    slow_drain = Components(boot=1.0, smoke=0.5, lb_rise=1.0, drain=40.0)
    path = critical_path([[NODE, NODE]], strategy=Strategy.BLUE_GREEN, warm=30.0)
    assert path.total == 2.5 + 30.0
    # A drain longer than the warm delay holds the retirement.
    assert critical_path([[slow_drain]], strategy=Strategy.BLUE_GREEN,
                         warm=30.0).total == 2.5 + 40.0


def test_pool_limit_from_settings() -> None:
    settings = pool_settings(pool_size=4, canary=1, soak=3, batch_size=1)
    assert pool_limit(settings, 4, NODE).total == 4 * 3.0 + 3.0
    in_place = pool_settings(pool_size=4, canary=0, batch_size=2, strategy="in_place",
                             min_healthy="50%", max_unavailable=2)
    assert pool_limit(in_place, 4, NODE).batches == (3.0, 3.0)


def test_an_empty_limit_cannot_give_a_ratio() -> None:
    with pytest.raises(ValueError, match="0 s long"):
        critical_path([]).ratio(1.0)


def test_canary_steps_are_refused_not_guessed() -> None:
    settings = pool_settings(pool_size=4, canary=1,
                             canary_steps=[{"weight": 20}, {"pause": 5}])
    with pytest.raises(ConfigError, match="canary_steps"):
        pool_limit(settings, 4, NODE)


# --- the controller on the fakes, with a delay added to one driver call ---------------


class SlowProvider(FakeProvider):
    """A FakeProvider whose launch and destroy calls take ``delays[op]`` seconds
    of the fake clock before their effect (as a slow API would)."""

    delays: dict[str, float]

    def launch(self, spec: LaunchSpec) -> Node:
        self.clock.sleep(self.delays.get("launch", 0.0))
        return super().launch(spec)

    def destroy(self, node: Node) -> None:
        self.clock.sleep(self.delays.get("destroy", 0.0))
        super().destroy(node)


class SlowLoadBalancer(FakeLoadBalancer):
    delays: dict[str, float]

    def add(self, node: Node) -> Member:
        self.clock.sleep(self.delays.get("lb_add", 0.0))
        return super().add(node)

    def set_admin(self, node: Node, admin: Admin) -> None:
        self.clock.sleep(self.delays.get("lb_set_admin", 0.0))
        super().set_admin(node, admin)

    def remove(self, node: Node) -> None:
        self.clock.sleep(self.delays.get("lb_remove", 0.0))
        super().remove(node)


class SlowSmoke(FakeSmokeRunner):
    delays: dict[str, float]

    def run(self, node: Node, image: Image) -> SmokeResult:
        # The suite itself still takes `duration`; the delay is the runner's own cost.
        self.clock.sleep(self.delays.get("smoke", 0.0))
        return super().run(node, image)


SETTINGS: dict[str, Any] = {"pool_size": 2, "canary": 1, "soak": 1, "batch_size": 1}
DRIVER_CALLS = ("launch", "lb_add", "lb_set_admin", "lb_remove", "destroy", "smoke")


def overhead(tmp_path: Path, delays: dict[str, float]) -> tuple[float, float | None]:
    """(wall ÷ the limit from the fakes' configured latencies, wall ÷ the
    journal's phase times) of one rollout of a 2-node pool."""
    clock = FakeClock()
    provider = SlowProvider(clock, boot_time=NODE.boot)
    lb = SlowLoadBalancer(clock, provider, rise=2, interval=NODE.lb_rise / 2,
                          drain_time=NODE.drain)
    smoke = SlowSmoke(clock, duration=NODE.smoke)
    provider.delays = lb.delays = smoke.delays = delays
    old, new = image("web", "1.0.0", 1.0), image("web", "2.0.0", 2.0)
    lb.seed(provider.seed(2, old))
    FakeImageStore([old, new])
    settings = pool_settings(**SETTINGS)
    journal = Journal(tmp_path / f"journal-{len(list(tmp_path.iterdir()))}.sqlite",
                      durable=False)
    ctl = Controller(pool=Pool("lab", "web", settings, tmp_path / "web.yml"),
                     provider=provider, lb=lb, smoke=smoke, journal=journal, clock=clock,
                     workers=0)
    result = ctl.run(new)
    assert result.status is RolloutStatus.SUCCEEDED
    # The components come from the fakes' configuration, never from the journal.
    limit = pool_limit(settings, 2, Components(
        boot=provider.boot_time, smoke=smoke.duration, lb_rise=lb.rise * lb.interval,
        drain=lb.drain_time))
    return limit.ratio(result.wall), result.overhead


def test_the_limit_is_close_to_the_wall_on_instant_drivers(tmp_path: Path) -> None:
    ratio, _ = overhead(tmp_path, {})
    # The rest is the controller's detection delay (0.1 s polls on the fake clock).
    assert 1.0 <= ratio < 1.25


@pytest.mark.parametrize("call", DRIVER_CALLS)
def test_a_delay_in_any_driver_call_raises_the_ratio(tmp_path: Path, call: str) -> None:
    base, _ = overhead(tmp_path, {})
    slowed, _ = overhead(tmp_path, {call: 1.0})
    # The limit is 7 s (2 x 3 s + a 1 s soak): one 1 s call is > 5 % of it.
    assert slowed > base * 1.05, f"a 1 s delay in {call} left the ratio at {slowed:.3f}"


def test_the_old_ratio_hid_a_slow_launch(tmp_path: Path) -> None:
    """Wall ÷ observed phase time counts the launch call inside the boot wait."""
    base_limit, base_phases = overhead(tmp_path, {})
    slow_limit, slow_phases = overhead(tmp_path, {"launch": 5.0, "lb_add": 5.0})
    assert base_phases is not None and slow_phases is not None
    assert slow_phases < base_phases * 1.05
    assert slow_limit > base_limit * 1.5
