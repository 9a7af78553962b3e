"""Blue-green on the fakes: the whole green pool beside blue, one switch, blue
warm for scale_down_delay, then gone; failures and aborts end all blue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollout.config import Pool
from rollout.core.plan import build_plan
from rollout.core.state import RolloutStatus
from rollout.engine.controller import Controller
from rollout.errors import RolloutFailed
from rollout.events import Event, SideChosen, StepStarted, TrafficSwitched
from rollout.model import Admin
from rollout.store.journal import Journal
from rollout.testing import FakeWorld, pool_settings

BG: dict[str, Any] = {"pool_size": 2, "strategy": "blue_green", "scale_down_delay": 5}


def controller(world: FakeWorld, tmp_path: Path, events: list[Event], **settings: Any,
               ) -> Controller:
    pool = Pool("lab", "web", pool_settings(**{**BG, **settings}), tmp_path / "web.yml")
    return Controller(pool=pool, provider=world.provider, lb=world.lb, smoke=world.smoke,
                      journal=Journal(tmp_path / "journal.sqlite", durable=False),
                      clock=world.clock, on_event=events.append, workers=0)


class Watch:
    """Samples the LB after every step: the most nodes at once, and whether a
    moment ever had both blue and green in service after the switch."""

    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.peak = 0
        self.serving: list[set[str]] = []

    def __call__(self, event: Event) -> None:
        if event.kind != "step_finished":
            return
        self.peak = max(self.peak, len(self.world.provider.live()))
        by_target = {n.lb_target: n for n in self.world.provider.live()}
        self.serving.append({by_target[m.target].image_id for m in self.world.lb.members()
                             if m.in_service and m.target in by_target})


def test_blue_green_launches_a_full_green_pool_switches_once_then_retires_blue(
        tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    events: list[Event] = []
    watch = Watch(world)
    ctl = controller(world, tmp_path, events)
    ctl.on_event = lambda e: (events.append(e), watch(e))  # type: ignore[func-returns-value]
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.problems(2, world.new.id) == []
    assert watch.peak == 4  # the whole green pool beside blue
    switches = [e for e in events if isinstance(e, StepStarted) and e.step == "lb_switch"]
    assert len(switches) == 1
    # Before the switch only blue served; after it only green, never both.
    first_green = next(i for i, s in enumerate(watch.serving) if world.new.id in s)
    assert all(s == {world.old.id} for s in watch.serving[:first_green])
    assert all(s == {world.new.id} for s in watch.serving[first_green:])
    switched = next(e for e in events if isinstance(e, TrafficSwitched))
    finished = events[-1]
    # Blue stayed warm for scale_down_delay before it was retired.
    assert finished.at - switched.at >= 5
    assert [e.side for e in events if isinstance(e, SideChosen)] == ["green"]


def test_green_stays_drained_until_the_whole_pool_is_up(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    events: list[Event] = []
    seen: list[list[Admin]] = []

    def look(event: Event) -> None:
        events.append(event)
        if event.kind == "step_finished" and event.step == "lb_stage":  # type: ignore[attr-defined]
            olds = {n.lb_target for n in world.provider.live() if n.image_id == world.old.id}
            seen.append([m.admin for m in world.lb.members() if m.target and
                         m.target not in olds])

    ctl = controller(world, tmp_path, events)
    ctl.on_event = look
    assert ctl.run(world.new).status is RolloutStatus.SUCCEEDED
    assert seen and all(a is Admin.DRAIN for admins in seen for a in admins)


def test_a_green_node_failing_its_smoke_leaves_all_blue(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    world.smoke.fail(image=world.new.id, times=1)
    events: list[Event] = []
    with pytest.raises(RolloutFailed):
        controller(world, tmp_path, events).run(world.new)
    assert world.problems(2, world.old.id) == []
    assert not any(isinstance(e, StepStarted) and e.step == "lb_switch" for e in events)


def test_abort_during_the_delay_switches_back_to_blue_in_one_call(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    events: list[Event] = []
    ctl = controller(world, tmp_path, events, scale_down_delay=3600)
    switched = {"done": False}

    def stop() -> bool:
        switched["done"] = switched["done"] or any(isinstance(e, TrafficSwitched) for e in events)
        return switched["done"]

    ctl.stop_requested = stop
    with pytest.raises(Exception):  # noqa: B017 - Interrupted
        ctl.run(world.new)
    assert world.problems(2, world.old.id) == []
    switches = [e for e in events if isinstance(e, StepStarted) and e.step == "lb_switch"]
    assert len(switches) == 2  # to green, then back to blue at once
    assert [e.side for e in events if isinstance(e, SideChosen)] == ["green", "blue"]


class Crash(BaseException):
    pass


class HalfSwitch:
    """An LB whose switch dies half-way: green in service, blue not drained yet
    (as a SIGKILL between two runtime commands would leave it)."""

    def __init__(self, inner: Any, then: Any = None) -> None:
        self._inner = inner
        self._then = then

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def switch(self, ready: Any, drain: Any) -> None:
        self._inner.switch(ready, ())
        if self._then is not None:
            self._then()
        raise Crash("killed mid-switch")


def _crash_mid_switch(world: FakeWorld, tmp_path: Path, then: Any = None) -> Controller:
    events: list[Event] = []
    ctl = controller(world, tmp_path, events)
    ctl.lb = ctl.observer.lb = HalfSwitch(world.lb, then)  # type: ignore[assignment]
    with pytest.raises(Crash):
        ctl.run(world.new)
    mixed = {n.image_id for n in world.provider.live()
             if any(m.in_service and m.target == n.lb_target for m in world.lb.members())}
    assert mixed == {world.old.id, world.new.id}  # the kill left a mix
    return controller(world, tmp_path, [])


def test_a_kill_mid_switch_resumes_to_all_green_when_green_is_up(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    resumed = _crash_mid_switch(world, tmp_path)
    said: list[Event] = []
    resumed.on_event = said.append
    assert resumed.resume().status is RolloutStatus.SUCCEEDED
    assert world.problems(2, world.new.id) == []
    chosen = [e for e in said if isinstance(e, SideChosen)]
    assert chosen[0].side == "green" and "completing" in chosen[0].reason


def test_a_kill_mid_switch_resumes_to_all_blue_when_a_green_node_died(tmp_path: Path) -> None:
    world = FakeWorld.create(2)

    def kill_a_green() -> None:
        green = next(n for n in world.provider.live() if n.image_id == world.new.id)
        world.provider.destroy(green)

    resumed = _crash_mid_switch(world, tmp_path, then=kill_a_green)
    said: list[Event] = []
    resumed.on_event = said.append
    with pytest.raises(RolloutFailed):
        resumed.resume()
    assert world.problems(2, world.old.id) == []
    chosen = [e for e in said if isinstance(e, SideChosen)]
    assert chosen[0].side == "blue" and "not UP" in chosen[0].reason


def test_plan_shows_the_doubled_peak_and_the_config_checks_slots_and_max_nodes() -> None:
    world = FakeWorld.create(2)
    settings = pool_settings(**BG)
    report = build_plan(env="lab", role="web", target=world.new, settings=settings,
                        nodes=world.provider.list(), members=world.lb.members(), samples={},
                        lb_capacity=world.lb.capacity())
    assert report.batches == (tuple(sorted(n.name for n in world.provider.live())),)
    assert max(s.nodes for s in report.steps) == 4
    assert min(s.in_service for s in report.steps) == 2  # never below the pool
    assert report.lb_peak == 4
    with pytest.raises(ValueError, match="max_nodes 3"):
        pool_settings(**BG, max_nodes=3)
    with pytest.raises(ValueError, match=r"haproxy\.slots"):
        pool_settings(pool_size=4, strategy="blue_green",
                      haproxy={"backend": "web", "frontend_port": 8080, "slots": 6})
