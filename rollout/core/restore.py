"""RESTORING: the old node back in service first, then the new one out, so
capacity never dips (see the table in :mod:`rollout.core.state`)."""

from __future__ import annotations

from rollout.core.decision import Pass, node_name
from rollout.core.state import (
    AddMember,
    Phase,
    RemoveMember,
    Replacement,
    RestoreReason,
    SetAdmin,
    StartNode,
    placeholder,
)
from rollout.events import ReplacementRestored
from rollout.model import Admin, Health, NodeState


def take_out_new(run: Pass, i: int, rep: Replacement) -> bool:
    """Drain, remove and destroy the new node; True once it is gone from
    the LB and the provider (otherwise one action or a wait was emitted)."""
    new = run.node(rep.new_name)
    target = rep.new_target or (new.lb_target if new is not None else "")
    new_member = run.member(target)
    new_ref = new or placeholder(rep.new_name, target, run.state)
    if new_member is not None:
        if new_member.admin is Admin.READY:
            run.set(i, entered={**rep.entered, "restore_drain": run.now})
            return run.act(i, SetAdmin, new_ref, admin=Admin.DRAIN)
        since = rep.entered.get("restore_drain", run.now)
        busy = new_member.admin is Admin.DRAIN and new_member.sessions > 0
        if busy and run.now - since <= run.timeouts.drain:
            return run.wait_for(i, f"draining {rep.new_name}")
        return run.act(i, RemoveMember, new_ref)
    return run.gone(i, rep.new_name)


def restoring(run: Pass, i: int, rep: Replacement) -> bool:
    """Old node back in service first, then the new one out: capacity never dips."""
    if run.now < rep.retry_at:
        return run.wait_for(i, f"retrying the restore of {rep.old_name}")
    t = run.timeouts
    deadline = rep.phase_started + t.ready + t.lb_up + t.drain + t.smoke
    if run.now > deadline:
        took = deadline - rep.phase_started
        return run.halt(f"could not restore {rep.old_name} within {took:g}s"
                         f" (last: {rep.waiting or 'no progress'})")
    old = run.node(rep.old_name)
    if old is None:
        return run.halt(f"old node {rep.old_name} is gone, so it cannot be put back; "
                         f"new node {rep.new_name} was left as it is")
    if old.state is NodeState.STOPPED:
        # A data volume is on the new node now: that node must be out and
        # gone before the old one starts and takes its volume back.
        if run.settings.volume and not take_out_new(run, i, rep):
            return False
        return run.act(i, StartNode, old)
    member = run.member(rep.old_target)
    if member is None or member.admin is not Admin.READY:
        probe = run.world.readiness.get(rep.old_name)
        if not run.setup(i, old, probe):
            return False
        if probe is None or not probe.ready:
            return run.wait_for(i, f"{rep.old_name} starting again", deadline)
        if member is None:
            return run.act(i, AddMember, old)
        return run.act(i, SetAdmin, old, admin=Admin.READY)
    if member.health is not Health.UP:
        return run.wait_for(i, f"{rep.old_name} back in the LB, waiting for UP", deadline)
    if not take_out_new(run, i, rep):
        return False
    run.events.append(ReplacementRestored(
        run.state.id, run.now, index=i, old_node=rep.old_name, new_node=rep.new_name,
        reason=(rep.restore_reason or RestoreReason.FAILED).value,
    ))
    if rep.restore_reason is RestoreReason.INTERRUPTED:
        # A signal is no failure: start again from scratch on resume.
        run.move(i, Phase.PENDING)
        attempt = rep.attempt + 1
        run.set(i, attempt=attempt, restore_reason=None, error=None, failure=None, new_target="",
                 entered={}, retries=0, retry_at=0.0, drain_timed_out=False,
                 new_name=node_name(run.state.role, run.state.id, i, attempt))
    else:
        run.move(i, Phase.RESTORED)
    return False
