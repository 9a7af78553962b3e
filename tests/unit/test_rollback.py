"""`rollout rollback` on the fakes: a switch back to the warm blue pool (asked
of the live controller, or done by a new one), and what a rollback returns to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rollout.app.history import rollout_history
from rollout.app.rollback import rollback_of, rollback_pool
from rollout.app.rollouts import run_rollout
from rollout.app.workspace import PoolDrivers, Workspace
from rollout.config import Pool
from rollout.core.rollback import rollback_target
from rollout.core.state import Phase, RolloutStatus
from rollout.engine.controller import Controller
from rollout.errors import ConfigError
from rollout.events import Event, RollbackRequested, SideChosen, StepStarted, TrafficSwitched
from rollout.inventory import load_environment
from rollout.model import SshTarget
from rollout.paths import DataDir
from rollout.store.journal import Journal
from rollout.testing import FakeWorld, pool_settings

BG: dict[str, Any] = {"pool_size": 2, "strategy": "blue_green", "scale_down_delay": 600}


def controller(world: FakeWorld, path: Path, events: list[Event], **settings: Any,
               ) -> Controller:
    pool = Pool("lab", "web", pool_settings(**settings), path.parent / "web.yml")
    return Controller(pool=pool, provider=world.provider, lb=world.lb, smoke=world.smoke,
                      journal=Journal(path, durable=False), clock=world.clock,
                      on_event=events.append, workers=0)


def _switches(events: list[Event]) -> list[StepStarted]:
    return [e for e in events if isinstance(e, StepStarted) and e.step == "lb_switch"]


def test_the_live_controller_honours_a_journaled_rollback_request(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    path = tmp_path / "journal.sqlite"
    events: list[Event] = []
    ctl = controller(world, path, events, **BG)
    other = Journal(path, durable=False)  # the `rollout rollback` process

    def sink(event: Event) -> None:
        events.append(event)
        if isinstance(event, TrafficSwitched):
            other.record(event.rollout_id, events=(RollbackRequested(
                event.rollout_id, world.clock.now(), by="test"),))

    ctl.on_event = sink
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.ABORTED
    assert "rolled back" in result.message
    assert world.problems(2, world.old.id) == []
    assert len(_switches(events)) == 2
    # The switch back is the first action after the request: blue served again
    # before any green node was touched.
    after = [e for e in events[events.index(next(e for e in events
                                                  if isinstance(e, TrafficSwitched))):]
             if isinstance(e, StepStarted)]
    assert after[0].step == "lb_switch"
    switched = next(e for e in events if isinstance(e, TrafficSwitched))
    assert world.clock.now() - switched.at < 60  # well within the 600 s delay


class Crash(BaseException):
    pass


def test_a_rollback_with_no_live_controller_switches_back_itself(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    path = tmp_path / "journal.sqlite"
    events: list[Event] = []
    ctl = controller(world, path, events, **BG)

    def die_in_the_delay(event: Event) -> None:
        events.append(event)
        if event.kind == "phase_changed" and event.phase == Phase.WARM.value:  # type: ignore[attr-defined]
            raise Crash

    ctl.on_event = die_in_the_delay
    with pytest.raises(Crash):
        ctl.run(world.new)
    journal = Journal(path, durable=False)
    states = list(reversed(journal.rollouts("lab", "web")))
    target = rollback_target(states)
    assert target is not None and target.how == "switch_back"
    assert target.image_id == world.old.id
    said: list[Event] = []
    result = controller(world, path, said, **BG).rollback()
    assert result.status is RolloutStatus.ABORTED
    assert world.problems(2, world.old.id) == []
    chosen = [e for e in said if isinstance(e, SideChosen)]
    assert chosen[0].side == "blue" and "rollback" in chosen[0].reason


def test_rollback_after_the_delay_is_refused_and_points_at_the_previous_image(
        tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    path = tmp_path / "journal.sqlite"
    ctl = controller(world, path, [], **{**BG, "scale_down_delay": 1})
    done = ctl.run(world.new)
    assert done.status is RolloutStatus.SUCCEEDED
    with pytest.raises(ConfigError):
        controller(world, path, [], **BG).rollback(done.id)
    target = rollback_target(list(reversed(ctl.journal.rollouts("lab", "web"))))
    assert target is not None and target.how == "previous_image"
    assert target.image_id == world.old.id and target.rollout_id == done.id


def test_a_surge_rollout_rolls_back_to_the_image_it_replaced(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    path = tmp_path / "journal.sqlite"
    ctl = controller(world, path, [], pool_size=2)
    assert rollback_target(ctl.journal.rollouts("lab", "web")) is None  # nothing yet
    done = ctl.run(world.new)
    target = rollback_target(list(reversed(ctl.journal.rollouts("lab", "web"))))
    assert target is not None and (target.how, target.image_id) == ("previous_image",
                                                                    world.old.id)
    # Rolling back is a rollout like any other; after it, going back again
    # returns to the image it replaced.
    back = controller(world, path, [], pool_size=2).run(world.old)
    assert back.status is RolloutStatus.SUCCEEDED and back.id != done.id
    assert world.problems(2, world.old.id) == []
    again = rollback_target(list(reversed(ctl.journal.rollouts("lab", "web"))))
    assert again is not None and again.image_id == world.new.id


def test_phoenix_runs_do_not_count_as_something_to_go_back_to(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    path = tmp_path / "journal.sqlite"
    ctl = controller(world, path, [], pool_size=2)
    ctl.run(world.old, only=[n.name for n in world.provider.live()][:1], kind="phoenix")
    assert rollback_target(list(reversed(ctl.journal.rollouts("lab", "web")))) is None


# --- the application layer: `rollout rollback --role web` on the lab inventory ----------

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class FakeWorkspace(Workspace):
    """The repo's lab inventory, with the web pool's drivers replaced by fakes."""

    fake: FakeWorld | None = None

    def drivers(self, role: str) -> PoolDrivers:
        assert self.fake is not None
        f = self.fake
        return PoolDrivers(self.pool(role), f.provider, f.lb, f.smoke, f.images)


def test_rollback_refuses_with_exit_2_when_there_is_nothing_to_go_back_to(
        tmp_path: Path) -> None:
    fake = FakeWorld.create(4)
    ws = FakeWorkspace(REPO, load_environment(REPO, "lab"), DataDir(tmp_path / "d"), fake=fake)
    with pytest.raises(ConfigError) as refused:
        rollback_pool(ws, "web", clock=fake.clock)
    assert refused.value.exit_code == 2
    assert "nothing to roll back to" in str(refused.value)


def test_rollback_after_a_surge_rolls_the_previous_image_out_again(tmp_path: Path) -> None:
    fake = FakeWorld.create(4)
    fake.provider.ssh = lambda node: SshTarget(  # type: ignore[method-assign]
        host="127.0.0.1", port=1, host_key_policy="ignore")
    ws = FakeWorkspace(REPO, load_environment(REPO, "lab"), DataDir(tmp_path / "d"), fake=fake)
    run_rollout(ws, "web", image_id=fake.new.id, clock=fake.clock)
    assert fake.problems(4, fake.new.id) == []
    back = rollback_of(ws, "web")
    assert back is not None and back.image_id == fake.old.id
    result = rollback_pool(ws, "web", clock=fake.clock)
    assert result.status is RolloutStatus.SUCCEEDED
    assert fake.problems(4, fake.old.id) == []
    history = rollout_history(ws, "web")
    assert [h["rollback_to"] for h in history] == [fake.new.id, fake.old.id]
