"""The controller end to end on the fakes: outcomes in the fake world and the journal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rollout.config import Pool
from rollout.core.state import Phase, RolloutStatus
from rollout.engine.controller import Controller
from rollout.errors import (
    Interrupted,
    JournalError,
    RolloutFailed,
    RolloutHalted,
    UnfinishedRolloutError,
)
from rollout.events import Event
from rollout.model import Admin, Node
from rollout.store.journal import Journal
from rollout.testing import FakeWorld, pool_settings


class Floor:
    """Records the lowest in-service count seen after any LB or node change."""

    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.lowest = world.in_service()

    def __call__(self, event: Event) -> None:
        if event.kind == "step_finished":
            self.lowest = min(self.lowest, self.world.in_service())


def controller(world: FakeWorld, tmp_path: Path, events: list[Event] | None = None,
               **settings: Any) -> Controller:
    pool = Pool("lab", "web", pool_settings(**settings), tmp_path / "web.yml")
    sink = events.append if events is not None else (lambda e: None)
    return Controller(pool=pool, provider=world.provider, lb=world.lb, smoke=world.smoke,
                      journal=Journal(tmp_path / "journal.sqlite", durable=False),
                      clock=world.clock, on_event=sink, workers=0)


def test_surge_replaces_every_node_and_records_waits(tmp_path: Path) -> None:
    world = FakeWorld.create(4)
    events: list[Event] = []
    floor = Floor(world)
    ctl = controller(world, tmp_path, events, soak=3)
    ctl.on_event = lambda e: (events.append(e), floor(e))  # type: ignore[func-returns-value]
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.problems(4, world.new.id) == []
    assert floor.lowest >= 4
    assert set(result.waits) == {"boot", "smoke", "lb_rise", "drain", "soak"}
    assert result.waits["smoke"] == pytest.approx(4 * 0.5)
    # On the fakes nothing but the waits takes time: the overhead is the poll granularity.
    assert result.overhead is not None and result.overhead < 1.10
    assert ctl.journal.overhead(result.id) == pytest.approx(result.overhead)
    steps = ctl.journal.steps(result.id)
    assert steps and all(s.ok for s in steps)
    assert next(e.kind for e in events) == "rollout_started"
    assert events[-1].kind == "rollout_finished"
    assert json.loads(events[-1].to_json())["status"] == "succeeded"
    assert [e.kind for e in ctl.journal.events(result.id)].count("replacement_done") == 4


def test_rerun_is_a_no_op(tmp_path: Path) -> None:
    world = FakeWorld.create(3)
    ctl = controller(world, tmp_path, pool_size=3)
    ctl.run(world.new)
    names = sorted(n.name for n in world.provider.live())
    again = ctl.run(world.new)
    assert again.status is RolloutStatus.SUCCEEDED
    assert again.replaced == () and len(again.already_on_target) == 3
    assert sorted(n.name for n in world.provider.live()) == names


def test_batches_and_concurrent_actions_on_a_thread_pool(tmp_path: Path) -> None:
    world = FakeWorld.create(4)
    ctl = controller(world, tmp_path, batch_size=2, canary=0)
    ctl.workers = 4
    ctl.poll_interval = 0.001
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.problems(4, world.new.id) == []


def _fail_launch(w: FakeWorld) -> None:
    w.provider.fail("launch", image=w.new.id)


def _never_ready(w: FakeWorld) -> None:
    w.provider.never_ready(image=w.new.id)


def _smoke_fails(w: FakeWorld) -> None:
    w.smoke.fail(image=w.new.id)


def _smoke_raises(w: FakeWorld) -> None:
    w.smoke.fail(image=w.new.id, raise_error=True)


def _add_fails(w: FakeWorld) -> None:
    w.lb.fail("add")


def _never_up(w: FakeWorld) -> None:
    w.lb.rise = 10_000  # the LB never sees enough good checks


def _drain_fails(w: FakeWorld) -> None:
    w.lb.fail("set_admin", target=w.provider.live()[0].lb_target)


def _maint_fails(w: FakeWorld) -> None:
    w.lb.fail("set_admin", times=2, target=w.provider.live()[0].lb_target)


@pytest.mark.parametrize("inject", [
    _fail_launch, _never_ready, _smoke_fails, _smoke_raises, _add_fails, _never_up,
    _drain_fails, _maint_fails,
])
def test_a_failure_at_any_step_restores_the_pool(tmp_path: Path, inject: Any) -> None:
    world = FakeWorld.create(4)
    floor = Floor(world)
    ctl = controller(world, tmp_path, canary=1, soak=2)
    ctl.on_event = floor
    inject(world)
    with pytest.raises(RolloutFailed) as err:
        ctl.run(world.new)
    assert "restored: web-base-0" in str(err.value)
    assert world.problems(4, world.old.id) == []
    assert floor.lowest >= 4  # surge: the old node serves until the new one is UP
    state = ctl.journal.history()[0].state
    assert state.status is RolloutStatus.FAILED
    assert [r.phase for r in state.replacements] == [Phase.RESTORED] + [Phase.SKIPPED] * 3
    assert ctl.journal.unfinished("lab", "web") is None


def test_failure_budget_lets_the_rollout_go_on(tmp_path: Path) -> None:
    world = FakeWorld.create(4)
    second = "web-base-1"
    ctl = controller(world, tmp_path, failure_budget=1)
    world.smoke.fail(times=1, node=None, image=world.new.id)  # the first new node flakes
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    assert result.restored == ("web-base-0",)
    assert second in {r for r in result.replaced}
    live = {n.name: n.image_id for n in world.provider.live()}
    assert live["web-base-0"] == world.old.id
    assert sorted(live.values()).count(world.new.id) == 3
    assert world.problems(4) == ["mixed images ['web-1.0.0', 'web-2.0.0']"]


def test_canary_regression_restores_and_fails(tmp_path: Path) -> None:
    world = FakeWorld.create(4)
    world.lb.set_error_rate(world.new.id, 0.2)
    ctl = controller(world, tmp_path, canary=1, soak=5)
    with pytest.raises(RolloutFailed, match=r"canary regression.*5xx rate"):
        ctl.run(world.new)
    assert world.problems(4, world.old.id) == []
    verdicts = [e for e in ctl.journal.events(ctl.journal.history()[0].state.id)
                if e.kind == "soak_verdict"]
    assert len(verdicts) == 1 and not verdicts[0].passed  # type: ignore[attr-defined]


def test_health_flaps_fail_the_soak_at_once(tmp_path: Path) -> None:
    world = FakeWorld.create(3)
    ctl = controller(world, tmp_path, pool_size=3, canary=1, soak=60)
    original = world.lb.members

    def flapping() -> list[Any]:
        new = {n.lb_target for n in world.provider.live() if n.image_id == world.new.id}
        for member in original():
            if member.target in new:
                world.lb.flap(member.target)
        return original()

    world.lb.members = flapping  # type: ignore[method-assign]
    with pytest.raises(RolloutFailed, match="flapped"):
        ctl.run(world.new)
    state = ctl.journal.history()[0].state
    assert state.finished_at is not None and state.finished_at - state.started_at < 60
    world.lb.members = original  # type: ignore[method-assign]
    assert world.problems(3, world.old.id) == []


def test_in_place_drains_first_and_restarts_the_old_node_on_failure(tmp_path: Path) -> None:
    world = FakeWorld.create(3)
    ctl = controller(world, tmp_path, pool_size=3, strategy="in_place", max_unavailable=1,
                     min_healthy=2, canary=0)
    world.smoke.fail(image=world.new.id, times=1)
    with pytest.raises(RolloutFailed):
        ctl.run(world.new)
    assert world.problems(3, world.old.id) == []
    assert ("stop", "web-base-0") in world.provider.calls
    assert ("start", "web-base-0") in world.provider.calls
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.problems(3, world.new.id) == []


def test_in_place_never_goes_below_the_floor(tmp_path: Path) -> None:
    world = FakeWorld.create(4)
    floor = Floor(world)
    ctl = controller(world, tmp_path, strategy="in_place", batch_size=2, max_unavailable=2,
                     min_healthy=2, canary=0)
    ctl.on_event = floor
    ctl.run(world.new)
    assert floor.lowest == 2
    assert world.problems(4, world.new.id) == []


def test_a_drain_timeout_is_reported_not_failed(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    world.lb.stuck_sessions(world.provider.live()[0].lb_target, 3)
    ctl = controller(world, tmp_path, pool_size=2, canary=0, drain=2)
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    done = [e for e in ctl.journal.events(result.id) if e.kind == "replacement_done"]
    assert [e.drain_timed_out for e in done] == [True, False]  # type: ignore[attr-defined]


def test_unfinished_rollout_blocks_a_new_run(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 30

    ctl = controller(world, tmp_path, pool_size=2, canary=0)
    ctl.stop_requested = stop
    with pytest.raises(Interrupted):
        ctl.run(world.new)
    assert world.problems(2) == []  # the in-flight node was restored or finished
    ctl.stop_requested = lambda: False
    with pytest.raises(UnfinishedRolloutError, match=r"resume.*abort"):
        ctl.run(world.new)
    result = ctl.resume()
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.problems(2, world.new.id) == []


def test_abort_restores_the_old_nodes(tmp_path: Path) -> None:
    world = FakeWorld.create(3)
    ctl = controller(world, tmp_path, pool_size=3, canary=0)
    state = {"n": 0}

    def stop() -> bool:
        state["n"] += 1
        return state["n"] > 12

    ctl.stop_requested = stop
    with pytest.raises(Interrupted):
        ctl.run(world.new)
    ctl.stop_requested = lambda: False
    result = ctl.abort()
    assert result.status is RolloutStatus.ABORTED
    assert world.problems(3) == []
    assert ctl.journal.unfinished("lab", "web") is None


def test_a_restore_that_keeps_failing_halts(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    world.smoke.fail(image=world.new.id)
    world.provider.fail("destroy", times=None)
    ctl = controller(world, tmp_path, pool_size=2, canary=0)
    with pytest.raises(RolloutHalted, match="destroy"):
        ctl.run(world.new)
    assert ctl.journal.unfinished("lab", "web") is not None
    world.provider._rules.clear()
    with pytest.raises(RolloutFailed):  # the cause is gone: the restore completes
        ctl.resume()
    assert world.problems(2, world.old.id) == []


def test_a_failed_journal_write_stops_the_rollout(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    ctl = controller(world, tmp_path, pool_size=2, canary=0)
    writes = {"n": 0}

    def disk_full(op: str) -> None:
        writes["n"] += 1
        if writes["n"] == 25:
            raise OSError(28, "No space left on device")

    ctl.journal.fault = disk_full
    with pytest.raises(JournalError, match="No space left"):
        ctl.run(world.new)
    ctl.journal.fault = None
    resumed = Controller(pool=ctl.pool, provider=world.provider, lb=world.lb, smoke=world.smoke,
                         journal=Journal(ctl.journal.path), clock=world.clock, workers=0)
    assert resumed.resume().status is RolloutStatus.SUCCEEDED
    assert world.problems(2, world.new.id) == []


def test_reap_removes_what_no_journal_owns(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    ctl = controller(world, tmp_path, pool_size=2, canary=0)
    ctl.run(world.new)
    stray = world.provider.add_node("web-stray", world.new, rollout_id="rdeadbeef")
    world.lb.add(stray)
    world.lb.set_admin(stray, Admin.MAINT)
    ghost = Node("ghost", "10.9.9.9", "web", "lab", "x", "x", world.provider.live()[0].state,
                 0.0)
    world.lb.add(ghost)  # a member whose node does not exist
    world.lb.set_admin(ghost, Admin.MAINT)
    untouched = world.provider.add_node("web-handmade", world.old)
    dry = ctl.reap(dry_run=True)
    assert dry.destroyed == ("web-stray",) and dry.removed == ("10.9.9.9",)
    assert "web-stray" in {n.name for n in world.provider.live()}
    report = ctl.reap()
    assert report.destroyed == ("web-stray",)
    live = {n.name for n in world.provider.live()}
    assert "web-stray" not in live and untouched.name in live
    assert "10.9.9.9" not in {m.target for m in world.lb.members()}
    assert world.problems(3) == ["mixed images ['web-1.0.0', 'web-2.0.0']",
                                 f"{untouched.name} is not in the LB"]


def test_a_node_that_fails_to_boot_once_is_replaced_by_another(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    ctl = controller(world, tmp_path, pool_size=2, canary=0, ready=5, boot_retries=1)
    ctl.new_id = lambda: "rbootfail"
    world.provider.never_ready(node="web-bootfail-0")  # only the first machine
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED and not result.restored
    assert world.problems(2, world.new.id) == []
    assert "web-bootfail-0" not in {n.name for n in world.provider.live()}
    rep = ctl.journal.get(result.id).replacements[0]
    assert (rep.new_name, rep.relaunches, rep.phase) == ("web-bootfail-0-1", 1, Phase.DONE)
    kinds = [e.kind for e in ctl.journal.events(result.id)]
    assert kinds.count("node_relaunched") == 1
