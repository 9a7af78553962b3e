"""The handler of each phase, in one decision pass over the replacements.

A handler reads the observed world, and either moves the replacement to its
next phase (returns True, so the next handler runs in the same pass), emits at
most one action, or waits (both return False). Nothing here does I/O. The
restore handlers are in :mod:`rollout.core.restore`; the state they share in
:mod:`rollout.core.decision`.
"""

from __future__ import annotations

from collections.abc import Callable

from rollout.core import bluegreen, shadow_gate
from rollout.core.decision import Decision, Pass, node_name
from rollout.core.lifecycle import node_hook
from rollout.core.restore import restoring
from rollout.core.state import (
    IDLE,
    AddMember,
    Launch,
    Phase,
    RemoveMember,
    Replacement,
    RunSmoke,
    SetAdmin,
    StopNode,
    Strategy,
    placeholder,
)
from rollout.events import NodeRelaunched, ReplacementDone
from rollout.hooks import HookPoint
from rollout.model import Admin, FailureKind, Health, LaunchSpec, NodeState

__all__ = ["Decision", "Pass", "advance", "node_name"]


def advance(run: Pass, i: int) -> None:
    """Move replacement ``i`` through as many phases as the world allows."""
    for _ in range(16):
        rep = run.reps[i]
        if i in run.busy or i in run.held or rep.phase in IDLE:
            return
        if run.halted:
            return
        if rep.phase in _NEW_RUNS and _new_died(run, i, rep):
            return
        if not _HANDLERS[rep.phase](run, i, rep):
            return


# Phases in which the new node has booted and must keep running.
_NEW_RUNS = frozenset({Phase.SMOKING, Phase.ADDING, Phase.RISING, Phase.DRAINING,
                       Phase.STANDBY, Phase.STAGED, Phase.WARM})


def _new_died(run: Pass, i: int, rep: Replacement) -> bool:
    """Fail the replacement when its new node stopped by itself (its machine
    died). Such a node may still answer for a while (a lab node's orphaned
    init, an instance being reclaimed), so the LB's view alone cannot be trusted."""
    new = run.node(rep.new_name)
    if new is None or new.state is not NodeState.STOPPED:
        return False
    run.fail(i, FailureKind.GONE, f"new node {rep.new_name} stopped running "
                                  f"(its machine died) in phase {rep.phase.value}")
    return True


def launching(run: Pass, i: int, rep: Replacement) -> bool:
    new = run.node(rep.new_name)
    if new is not None:
        run.set(i, new_target=new.lb_target)
        run.move(i, Phase.BOOTING)
        return True
    spec = LaunchSpec(
        name=rep.new_name, role=run.state.role, env=run.state.env,
        image=run.state.target, rollout_id=run.state.id,
        volume_from=rep.old_name if run.settings.volume else None,
    )
    return run.act(i, Launch, placeholder(rep.new_name, "", run.state), spec=spec)


def booting(run: Pass, i: int, rep: Replacement) -> bool:
    if run.node(rep.new_name) is None:
        return run.fail(i, FailureKind.GONE, f"new node {rep.new_name} disappeared while booting")
    probe = run.world.readiness.get(rep.new_name)
    if probe is not None and probe.ready:
        run.record(i, "boot", run.since(rep, Phase.LAUNCHING))
        run.move(i, Phase.SMOKING)
        return True
    deadline = rep.phase_started + run.timeouts.ready
    error = None
    if probe is not None and probe.failed:
        error = f"new node {rep.new_name} will not become ready: {probe.detail}"
    elif run.now > deadline:
        detail = f" ({probe.detail})" if probe is not None and probe.detail else ""
        error = (f"new node {rep.new_name} was not ready within "
                 f"timeouts.ready {run.timeouts.ready:g}s{detail}")
    if error is None:
        new = run.node(rep.new_name)
        if new is not None and not run.setup(i, new, probe):
            return False
        return run.wait_for(i, f"{rep.new_name} booting", deadline)
    if rep.relaunches < run.settings.boot_retries:
        # A machine that fails to boot says nothing about the image yet
        # (clouds and busy hosts do this): try another before failing.
        run.events.append(NodeRelaunched(
            run.state.id, run.now, index=i, old_node=rep.old_name,
            failed_node=rep.new_name, reason=error))
        run.move(i, Phase.RELAUNCHING)
        run.set(i, error=error)
        return True
    return run.fail(i, FailureKind.BOOT, error)


def relaunching(run: Pass, i: int, rep: Replacement) -> bool:
    """Destroy the new node that failed to boot, then launch another under a
    new name (attempt + 1). Journaled as any phase: a crash here resumes here."""
    if not run.gone(i, rep.new_name):
        return False
    attempt = rep.attempt + 1
    run.set(i, attempt=attempt, relaunches=rep.relaunches + 1, new_target="", error=None,
             new_name=node_name(run.state.role, run.state.id, i, attempt))
    run.move(i, Phase.LAUNCHING)
    return True


def smoking(run: Pass, i: int, rep: Replacement) -> bool:
    new = run.node(rep.new_name)
    if new is None:
        return run.fail(i, FailureKind.GONE,
                        f"new node {rep.new_name} disappeared before its smoke test")
    if not node_hook(run, i, HookPoint.AFTER_BOOT, new):
        return False
    return run.act(i, RunSmoke, new, image=run.state.target)


def adding(run: Pass, i: int, rep: Replacement) -> bool:
    new = run.node(rep.new_name)
    if new is None:
        return run.fail(i, FailureKind.GONE,
                        f"new node {rep.new_name} disappeared before joining the LB")
    if not shadow_gate.admit(run, i, new):
        return False
    if not node_hook(run, i, HookPoint.BEFORE_TRAFFIC, new):
        return False
    member = run.member(new.lb_target)
    if member is not None and member.admin is Admin.READY:
        run.move(i, Phase.RISING)
        return True
    if member is not None:
        return run.act(i, SetAdmin, new, admin=Admin.READY)
    return run.act(i, AddMember, new)


def rising(run: Pass, i: int, rep: Replacement) -> bool:
    new = run.node(rep.new_name)
    if new is None:
        return run.fail(i, FailureKind.GONE,
                        f"new node {rep.new_name} disappeared while joining the LB")
    member = run.member(new.lb_target)
    if member is None:
        return run.act(i, AddMember, new)
    if member.admin is not Admin.READY:
        return run.act(i, SetAdmin, new, admin=Admin.READY)
    if member.health is Health.UP:
        if "up" not in rep.entered:
            run.record(i, "lb_rise", run.since(rep, Phase.ADDING))
            rep = run.set(i, entered={**rep.entered, "up": run.now})
        if not node_hook(run, i, HookPoint.AFTER_TRAFFIC, new):
            return False
        if run.state.strategy is Strategy.IN_PLACE:
            run.move(i, Phase.STANDBY)
            return True
        if not run.capacity_for(i):
            return False
        run.move(i, Phase.DRAINING)
        return True
    deadline = rep.phase_started + run.timeouts.lb_up
    if run.now > deadline:
        return run.fail(i, FailureKind.LB, f"new node {rep.new_name} was not UP in the LB within "
                            f"timeouts.lb_up {run.timeouts.lb_up:g}s "
                            f"(health {member.health})")
    return run.wait_for(i, f"{rep.new_name} rising in the LB", deadline)


def draining(run: Pass, i: int, rep: Replacement) -> bool:
    after = Phase.STANDBY if run.state.strategy is Strategy.SURGE else Phase.PARKING
    member = run.member(rep.old_target)
    old = run.node(rep.old_name)
    if old is not None and not node_hook(run, i, HookPoint.BEFORE_DRAIN, old):
        return False
    if member is not None and member.admin is Admin.READY:
        return run.act(i, SetAdmin, run.old_node(rep), admin=Admin.DRAIN)
    if member is not None and member.admin is Admin.DRAIN and member.sessions > 0:
        deadline = rep.phase_started + run.timeouts.drain
        if run.now <= deadline:
            return run.wait_for(i, f"draining {rep.old_name}", deadline)
        run.set(i, drain_timed_out=True)
    run.record(i, "drain", rep.phase_started)
    run.move(i, after)
    return True


def park(run: Pass, i: int, rep: Replacement, stop: bool) -> bool:
    """Old node to MAINT (and stopped if asked); True once it is so. The
    before_destroy hook runs first: the node is drained but still running."""
    old = run.node(rep.old_name)
    if old is not None and old.state is NodeState.RUNNING and not node_hook(
            run, i, HookPoint.BEFORE_DESTROY, old):
        return False
    member = run.member(rep.old_target)
    if member is not None and member.admin is not Admin.MAINT:
        return run.act(i, SetAdmin, run.old_node(rep), admin=Admin.MAINT)
    old = run.node(rep.old_name)
    if stop and old is not None and old.state in (NodeState.RUNNING, NodeState.PENDING):
        return run.act(i, StopNode, old)
    return True


def parking(run: Pass, i: int, rep: Replacement) -> bool:
    if not park(run, i, rep, stop=True):
        return False
    run.move(i, Phase.LAUNCHING)
    return True


def standby(run: Pass, i: int, rep: Replacement) -> bool:
    stop = run.state.strategy is Strategy.IN_PLACE or run.settings.standby == "stopped"
    if park(run, i, rep, stop):
        run.parked.add(i)
    return False


def retiring(run: Pass, i: int, rep: Replacement) -> bool:
    if run.now < rep.retry_at:
        return run.wait_for(i, f"retrying the retirement of {rep.old_name}")
    if run.member(rep.old_target) is not None:
        return run.act(i, RemoveMember, run.old_node(rep))
    if not run.gone(i, rep.old_name):
        return False
    run.move(i, Phase.DONE)
    run.events.append(ReplacementDone(
        run.state.id, run.now, index=i, old_node=rep.old_name, new_node=rep.new_name,
        drain_timed_out=rep.drain_timed_out,
    ))
    return False


_HANDLERS: dict[Phase, Callable[[Pass, int, Replacement], bool]] = {
    Phase.LAUNCHING: launching,
    Phase.BOOTING: booting,
    Phase.RELAUNCHING: relaunching,
    Phase.SMOKING: smoking,
    Phase.ADDING: adding,
    Phase.RISING: rising,
    Phase.DRAINING: draining,
    Phase.PARKING: parking,
    Phase.STANDBY: standby,
    Phase.RETIRING: retiring,
    Phase.RESTORING: restoring,
    Phase.STAGED: bluegreen.staged,
    Phase.WARM: bluegreen.warm,
}
