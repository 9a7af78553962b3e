"""The pure core, one transition at a time, on hand-made observations."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rollout.core.batches import plan_batches
from rollout.core.decide import apply_outcome, decide, new_state, request_stop
from rollout.core.state import (
    AddMember,
    DestroyNode,
    Launch,
    Outcome,
    Phase,
    RestoreReason,
    RolloutState,
    RolloutStatus,
    SetAdmin,
    World,
)
from rollout.model import Admin, Health, Member, Node, NodeState, Readiness
from rollout.testing import image, pool_settings

OLD, NEW = image(version="1"), image(version="2")
T0 = 1000.0


def _node(name: str, addr: str, img: str = OLD.id,
          state: NodeState = NodeState.RUNNING) -> Node:
    return Node(name, addr, "web", "lab", img, "", state, 0.0)


def _olds(n: int) -> list[Node]:
    return [_node(f"web-{i}", f"10.0.0.{i}") for i in range(n)]


def _up(node: Node, admin: Admin = Admin.READY, sessions: int = 0) -> Member:
    return Member(f"s-{node.name}", node.lb_target, admin, Health.UP, sessions=sessions)


def _start(n: int = 3, **settings: Any) -> RolloutState:
    s = pool_settings(pool_size=n, **settings)
    return new_state("r0000abcd", "lab", "web", NEW, s, plan_batches(_olds(n), NEW, s), T0)


def _world(nodes: list[Node], members: list[Member], ready: tuple[str, ...] = ()) -> World:
    return World.of(nodes, members, {n: Readiness(True) for n in ready})


def _at(state: RolloutState, i: int, phase: Phase, **kw: Any) -> RolloutState:
    rep = replace(state.replacements[i], phase=phase, phase_started=T0, **kw)
    return state.with_replacement(rep)


def test_first_batch_launches_later_ones_wait() -> None:
    olds = _olds(3)
    d = decide(_start(), _world(olds, [_up(n) for n in olds]), T0)
    assert [type(a) for a in d.actions] == [Launch]
    assert [r.phase for r in d.state.replacements] == [Phase.LAUNCHING, Phase.PENDING,
                                                      Phase.PENDING]
    assert d.actions[0].spec is not None and d.actions[0].spec.image == NEW  # type: ignore[attr-defined]


def test_a_launched_node_is_found_not_launched_twice() -> None:
    olds = _olds(3)
    state = _at(_start(), 0, Phase.LAUNCHING)
    new = _node(state.replacements[0].new_name, "10.0.1.1", NEW.id, NodeState.PENDING)
    d = decide(state, _world([*olds, new], [_up(n) for n in olds]), T0 + 1)
    assert d.actions == () and d.state.replacements[0].phase is Phase.BOOTING
    assert d.state.replacements[0].new_target == "10.0.1.1"


def test_ready_then_smoke_then_add_then_rise_then_drain() -> None:
    olds = _olds(3)
    state = _at(_start(canary=0), 0, Phase.BOOTING, entered={"launching": T0})
    name = state.replacements[0].new_name
    new = _node(name, "10.0.1.1", NEW.id)
    members = [_up(n) for n in olds]
    d = decide(state, _world([*olds, new], members, (name,)), T0 + 2)
    assert d.state.replacements[0].phase is Phase.SMOKING
    assert [w.kind for w in d.waits] == ["boot"] and d.waits[0].seconds == 2
    smoke = d.actions[0]
    from rollout.model import SmokeResult

    d = apply_outcome(d.state, smoke, Outcome(True, 1.5, smoke=SmokeResult(True, 1.5, "ok")),
                      T0 + 3.5)
    assert d.state.replacements[0].phase is Phase.ADDING
    d = decide(d.state, _world([*olds, new], members), T0 + 3.5)
    assert [type(a) for a in d.actions] == [AddMember]
    rising = [*members, Member("s-new", "10.0.1.1", Admin.READY, Health.DOWN)]
    d = decide(d.state, _world([*olds, new], rising), T0 + 3.6)
    assert d.state.replacements[0].phase is Phase.RISING and d.actions == ()
    d = decide(d.state, _world([*olds, new], [*members, _up(new)]), T0 + 4.6)
    assert d.state.replacements[0].phase is Phase.DRAINING
    assert d.actions == (SetAdmin(0, 0, Phase.DRAINING, olds[0], admin=Admin.DRAIN),)


def test_surge_waits_rather_than_drain_below_the_floor() -> None:
    olds = _olds(3)
    state = _at(_start(canary=0), 0, Phase.RISING)
    new = _node(state.replacements[0].new_name, "10.0.1.1", NEW.id)
    # web-2 is DOWN: with the new node UP, only 3 serve; draining web-0 leaves 2 < 3.
    members = [_up(olds[0]), _up(olds[1]), Member("s2", "10.0.0.2", Admin.READY, Health.DOWN),
               _up(new)]
    d = decide(state, _world([*olds, new], members), T0 + 1)
    assert d.actions == () and d.state.replacements[0].phase is Phase.RISING
    assert "capacity" in d.state.replacements[0].waiting


def test_a_deadline_fails_and_the_restore_only_removes_the_new_node() -> None:
    olds = _olds(3)
    state = _at(_start(boot_retries=0), 0, Phase.BOOTING)
    new = _node(state.replacements[0].new_name, "10.0.1.1", NEW.id, NodeState.PENDING)
    d = decide(state, _world([*olds, new], [_up(n) for n in olds]), T0 + 61)
    rep = d.state.replacements[0]
    assert rep.phase is Phase.RESTORING and rep.restore_reason is RestoreReason.FAILED
    assert "timeouts.ready" in (rep.error or "")
    assert [type(a) for a in d.actions] == [DestroyNode] and d.actions[0].node == new
    assert d.state.failing and "failure_budget" in d.state.failing
    assert [r.phase for r in d.state.replacements[1:]] == [Phase.SKIPPED, Phase.SKIPPED]


def test_restore_puts_the_old_node_back_before_touching_the_new() -> None:
    olds = _olds(3)
    state = _at(_start(), 0, Phase.RESTORING, restore_reason=RestoreReason.FAILED,
                new_target="10.0.1.1")
    new = _node(state.replacements[0].new_name, "10.0.1.1", NEW.id)
    drained = [_up(olds[0], Admin.DRAIN), _up(olds[1]), _up(olds[2]), _up(new)]
    d = decide(state, _world([*olds, new], drained, ("web-0",)), T0 + 1)
    assert d.actions == (SetAdmin(0, 0, Phase.RESTORING, olds[0], admin=Admin.READY),)
    back = [_up(n) for n in olds] + [_up(new)]
    d = decide(d.state, _world([*olds, new], back), T0 + 2)
    assert d.actions == (SetAdmin(0, 0, Phase.RESTORING, new, admin=Admin.DRAIN),)


def test_a_late_outcome_changes_nothing() -> None:
    state = _at(_start(), 0, Phase.RESTORING, restore_reason=RestoreReason.FAILED)
    launch = Launch(0, 0, Phase.LAUNCHING, _olds(1)[0])
    assert apply_outcome(state, launch, Outcome(True), T0).state == state


def test_a_signal_restores_in_flight_work_and_retries_it_on_resume() -> None:
    olds = _olds(3)
    state = _at(_start(), 0, Phase.SMOKING, new_target="10.0.1.1")
    stopped = request_stop(state, T0).state
    rep = stopped.replacements[0]
    assert rep.phase is Phase.RESTORING and rep.restore_reason is RestoreReason.INTERRUPTED
    # The new node is gone (destroyed): the restore completes.
    d = decide(stopped, _world(olds, [_up(n) for n in olds]), T0 + 1)
    rep = d.state.replacements[0]
    assert rep.phase is Phase.PENDING and rep.attempt == 1 and rep.new_name.endswith("-0-1")
    assert d.state.status is RolloutStatus.INTERRUPTED


def test_no_progress_fails_the_rollout() -> None:
    olds = _olds(3)
    state = _at(_start(), 0, Phase.RISING)
    new = _node(state.replacements[0].new_name, "10.0.1.1", NEW.id)
    members = [_up(olds[0]), Member("s1", "10.0.0.1", Admin.READY, Health.DOWN),
               Member("s2", "10.0.0.2", Admin.READY, Health.DOWN), _up(new)]
    d = decide(state, _world([*olds, new], members), T0 + 1801)
    assert d.state.failing and "progress_deadline" in d.state.failing


def test_decide_is_pure() -> None:
    olds = _olds(3)
    state = _start()
    world = _world(olds, [_up(n) for n in olds])
    assert decide(state, world, T0) == decide(state, world, T0)
    assert state.replacements[0].phase is Phase.PENDING


def test_a_node_that_fails_to_boot_is_relaunched_under_a_new_name() -> None:
    olds = _olds(3)
    state = _at(_start(boot_retries=1), 0, Phase.BOOTING)
    first = _node(state.replacements[0].new_name, "10.0.1.1", NEW.id, NodeState.PENDING)
    world = _world([*olds, first], [_up(n) for n in olds])
    d = decide(state, world, T0 + 61)  # past timeouts.ready: give up on this machine
    rep = d.state.replacements[0]
    assert rep.phase is Phase.RELAUNCHING and rep.restore_reason is None
    assert "timeouts.ready" in (rep.error or "") and not d.state.failing
    assert [e.kind for e in d.events if e.kind == "node_relaunched"] == ["node_relaunched"]
    d = decide(d.state, world, T0 + 61.1)
    assert [type(a) for a in d.actions] == [DestroyNode] and d.actions[0].node == first
    # Once the failed machine is gone: a second attempt under a new name.
    d = decide(d.state, _world(olds, [_up(n) for n in olds]), T0 + 62)
    rep = d.state.replacements[0]
    assert (rep.attempt, rep.relaunches, rep.error) == (1, 1, None)
    assert rep.new_name == first.name + "-1"
    assert [type(a) for a in d.actions] == [Launch] and d.actions[0].node.name == rep.new_name


def test_a_degraded_boot_is_given_up_on_at_once_and_retries_run_out() -> None:
    olds = _olds(3)
    state = _at(_start(boot_retries=1), 0, Phase.BOOTING, relaunches=1, attempt=1)
    new = _node(state.replacements[0].new_name, "10.0.1.1", NEW.id)
    degraded = Readiness(False, "systemd is degraded", systemd="degraded", failed=True)
    world = World.of([*olds, new], [_up(n) for n in olds], {new.name: degraded})
    d = decide(state, world, T0 + 1)  # long before the deadline
    rep = d.state.replacements[0]
    assert rep.phase is Phase.RESTORING and rep.restore_reason is RestoreReason.FAILED
    assert "degraded" in (rep.error or "")
