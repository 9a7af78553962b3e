"""Lifecycle hooks in the decision pass: when a hook is due, the phase handler
emits a :class:`~rollout.core.state.RunHook` instead of its next step, and the
hook's outcome marks it passed (or fails the replacement, which then takes
its restore path). Pure, like the rest of the core.

A replacement's hook is marked in its ``entered`` (key ``hook:POINT``), the
controller's in ``RolloutState.hooks_done``; both are journaled with the
state. A hook whose outcome was never journaled (the controller was killed
while it ran) is not marked, so it runs again on resume: hooks must be
idempotent (docs/HOOKS.md).
"""

from __future__ import annotations

from rollout.core.decision import Pass
from rollout.core.state import (
    ROLLOUT_INDEX,
    Outcome,
    Phase,
    RestoreReason,
    RunHook,
    placeholder,
)
from rollout.hooks import HookCall, HookPoint
from rollout.model import FailureKind, Node, NodeState

#: The name a controller hook's steps are journaled under.
CONTROLLER = "controller"


def _running(run: Pass, name: str) -> Node | None:
    node = run.node(name)
    return node if node is not None and node.state is NodeState.RUNNING else None


def node_hook(run: Pass, i: int, point: HookPoint, node: Node) -> bool:
    """True when no hook is due at ``point`` for replacement ``i`` (go on);
    otherwise emit the hook, about ``node``, and return False."""
    hook = run.settings.hooks.at(point)
    rep = run.reps[i]
    if hook is None or point.marker in rep.entered:
        return True
    call = HookCall(point=point, hook=hook, rollout_id=run.state.id, image=run.state.target,
                    index=i, node=node, new=_running(run, rep.new_name),
                    old=_running(run, rep.old_name))
    run.wait_for(i, f"{point.value} hook {hook.playbook} on {node.name}")
    return run.act(i, RunHook, node, call=call)


def _controller_hook(run: Pass, point: HookPoint) -> bool:
    """True when the controller hook at ``point`` passed or none is set;
    otherwise emit it (unless it is running) and return False."""
    hook = run.settings.hooks.at(point)
    if hook is None or point.value in run.hooks_done:
        return True
    if ROLLOUT_INDEX not in run.busy:
        call = HookCall(point=point, hook=hook, rollout_id=run.state.id,
                        image=run.state.target)
        run.actions.append(RunHook(index=ROLLOUT_INDEX, attempt=0, phase=Phase.PENDING,
                                   node=placeholder(CONTROLLER, "", run.state), call=call))
    return False


def _quiet(run: Pass) -> bool:
    state = run.state
    return not (run.failing or run.halted or state.stopping or state.aborting)


def before_rollout(run: Pass) -> bool:
    """Whether the first batch may start: the before_rollout hook passed."""
    if not _quiet(run) or not any(r.phase is Phase.PENDING for r in run.reps):
        return True
    return _controller_hook(run, HookPoint.BEFORE_ROLLOUT)


def awaiting_after_rollout(run: Pass) -> bool:
    """Whether a rollout that would succeed must first run its after_rollout
    hook (a stop request does not skip it: the rollout is interrupted instead,
    and resume runs it)."""
    hook = run.settings.hooks.after_rollout
    state = run.state
    return (hook is not None and HookPoint.AFTER_ROLLOUT.value not in run.hooks_done
            and not (run.failing or run.halted or state.aborting)
            and all(r.phase.terminal for r in run.reps))


def after_rollout(run: Pass) -> None:
    """Emit the after_rollout hook once every replacement has ended well."""
    if awaiting_after_rollout(run) and not run.state.stopping:
        _controller_hook(run, HookPoint.AFTER_ROLLOUT)


def apply_hook(run: Pass, action: RunHook, outcome: Outcome) -> None:
    """Fold a hook's outcome in: mark it passed, or fail what it was for."""
    call = action.call
    assert call is not None
    limit = call.hook.timeout
    error = outcome.error
    if outcome.ok and outcome.duration > limit:
        error = f"it took {outcome.duration:.1f}s, more than its timeout {limit:g}s"
    ok = outcome.ok and not error
    what = f"{call.point.value} hook {call.hook.playbook}"
    run.progressed = True
    if action.index == ROLLOUT_INDEX:
        if ok:
            run.hooks_done = run.hooks_done | {call.point.value}
        elif call.point is HookPoint.BEFORE_ROLLOUT:
            run.failing = run.failing or f"{what} failed: {error}; no node was replaced"
            for i in range(len(run.reps)):
                run.restore(i, RestoreReason.ROLLOUT_FAILED)
        else:
            # Every node is on the new image already and the old ones are
            # gone: there is nothing to restore to, so the pool stays whole
            # and the rollout reports the failure (exit 1).
            run.failing = run.failing or (f"{what} failed: {error}; every node runs the new "
                                          "image, nothing was restored")
        return
    i = action.index
    if ok:
        rep = run.reps[i]
        run.set(i, entered={**rep.entered, call.point.marker: run.now}, waiting="")
        return
    run.fail(i, FailureKind.HOOK, f"{what} on {action.node.name} failed: {error}")
