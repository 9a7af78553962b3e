"""The pure decision core: the state, the observed world and the clock in; the
next state and the actions out. No I/O, no clock reads, no randomness.

Reconcile, don't replay: every phase's exit is checked against the observed
world on every pass, and every action is idempotent, so a controller that died
between recording an intent and recording its outcome simply decides again on
resume and sees whether the side effect happened. See
:mod:`rollout.core.state` for the table of phases and transitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from rollout.config import PoolSettings, Strategy
from rollout.core import bluegreen, canary, gate, lifecycle, shadow_gate, switch_checks, window
from rollout.core.analysis import AnalysisPoint
from rollout.core.batches import Plan
from rollout.core.members import SERVES, readd_missing
from rollout.core.phases import Decision, Pass, advance, node_name
from rollout.core.release import batch_events, fail_rollout, release_batches, start_pending, wait
from rollout.core.state import (
    IDLE,
    MAX_RETRIES,
    Action,
    AddMember,
    Launch,
    Outcome,
    Phase,
    Replacement,
    RestoreReason,
    RolloutState,
    RolloutStatus,
    RunAnalysis,
    RunHook,
    RunShadow,
    RunSmoke,
    SwitchTraffic,
    World,
)
from rollout.events import RetryScheduled, RolloutFinished
from rollout.model import Admin, FailureKind, Image, NodeState

__all__ = [
    "Decision",
    "apply_outcome",
    "apply_outcomes",
    "decide",
    "halt",
    "new_state",
    "request_abort",
    "request_rollback",
    "request_stop",
    "resume_state",
    "wants_probe",
]


def new_state(
    rollout_id: str,
    env: str,
    role: str,
    target: Image,
    settings: PoolSettings,
    plan: Plan,
    now: float,
    kind: str = "rollout",
) -> RolloutState:
    """A fresh rollout of ``plan``: one PENDING replacement per planned node."""
    reps: list[Replacement] = []
    for batch, nodes in enumerate(plan.batches):
        for node in nodes:
            i = len(reps)
            reps.append(Replacement(
                index=i, batch=batch, old_name=node.name, old_target=node.lb_target,
                old_image_id=node.image_id, new_name=node_name(role, rollout_id, i, 0),
                phase_started=now,
            ))
    previous = tuple(sorted({n.image_id for n in plan.nodes}))
    return RolloutState(
        id=rollout_id, env=env, role=role, target=target, settings=settings,
        replacements=tuple(reps), started_at=now, last_progress=now,
        skipped_nodes=tuple(n.name for n in plan.skipped), previous_images=previous, kind=kind,
        blue_green=bluegreen.BlueGreen() if settings.strategy is Strategy.BLUE_GREEN else None,
    )


def wants_probe(state: RolloutState, world: World) -> set[str]:
    """Names of the nodes whose readiness the next :func:`decide` needs."""
    names: set[str] = set()
    for rep in state.replacements:
        if rep.phase is Phase.BOOTING:
            names.add(rep.new_name)
        elif rep.phase is Phase.RESTORING:
            member = world.members.get(rep.old_target)
            old = world.nodes.get(rep.old_name)
            running = old is not None and old.state in (NodeState.RUNNING, NodeState.PENDING)
            if running and (member is None or member.admin is not Admin.READY):
                names.add(rep.old_name)
    return names


def decide(
    state: RolloutState, world: World, now: float, busy: frozenset[int] = frozenset()
) -> Decision:
    """One decision: move every replacement as far as the world allows and say
    which actions to take next. ``busy`` are replacements whose action is still
    running; they get no new action this time."""
    if state.status is not RolloutStatus.RUNNING:
        return Decision(state)
    run = Pass(state, world, now, busy)
    _check_rollout(run)
    bluegreen.step(run)  # the side first: it may hold every replacement this pass
    for i, rep in enumerate(run.reps):
        if rep.phase not in IDLE:  # advance() returns at once for the others
            advance(run, i)
    release_batches(run)
    _check_rollout(run)
    if lifecycle.before_rollout(run):
        start_pending(run)
    readd_missing(run)
    batch_events(run)
    if window.step(run):  # the post-rollout window first, then the after_rollout hook
        lifecycle.after_rollout(run)
    return _finish(run)


def apply_outcome(state: RolloutState, action: Action, outcome: Outcome, now: float) -> Decision:
    """Fold the result of ``action`` into the state. A late outcome for a
    replacement that has moved on (another phase or attempt) changes nothing."""
    run = Pass(state, World({}, {}), now)
    if not _apply(run, action, outcome):
        return Decision(state)
    return _finish(run)


def apply_outcomes(
    state: RolloutState, done: Sequence[tuple[Action, Outcome]], now: float
) -> Decision:
    """:func:`apply_outcome` for several outcomes, in order, in one pass: the
    same result as folding them one by one, at the cost of one copy of the
    replacements instead of one per outcome (a 1,000-node pool finishes 100
    actions at once)."""
    run = Pass(state, World({}, {}), now)
    applied = [_apply(run, action, outcome) for action, outcome in done]
    if not any(applied):
        return Decision(state)
    return _finish(run)


def _apply(run: Pass, action: Action, outcome: Outcome) -> bool:
    """Fold one outcome into ``run``; False when it is late and changes nothing."""
    state, now = run.state, run.now
    if isinstance(action, RunHook) and action.index < 0:
        lifecycle.apply_hook(run, action, outcome)  # a hook on the controller
        return True
    if isinstance(action, SwitchTraffic):
        return bluegreen.switch_outcome(run, action, outcome)
    if isinstance(action, RunAnalysis) and action.point is AnalysisPoint.POST_ROLLOUT:
        return window.concluded(run, action, outcome)
    if isinstance(action, RunAnalysis) and action.point is not None:
        return switch_checks.concluded(run, action, outcome)
    i = action.index
    rep = run.reps[i]
    if rep.attempt != action.attempt or rep.phase is not action.phase:
        return False
    if isinstance(action, AddMember) and rep.phase in SERVES:
        # A settled node put back in the LB: nothing moves; if the add
        # failed, the next pass sees it missing and adds it again.
        return True
    if rep.phase in (Phase.RESTORING, Phase.RETIRING):
        if outcome.ok:
            if rep.retries:
                run.set(i, retries=0, retry_at=0.0)
        else:
            _retry(run, i, action, outcome.error)
    elif isinstance(action, RunHook):
        lifecycle.apply_hook(run, action, outcome)
    elif isinstance(action, RunShadow):
        shadow_gate.apply(run, action, outcome)  # the dark-launch gate
    elif isinstance(action, RunAnalysis):
        # an ``analysis:`` canary step, or the analysis of the canary soak
        (canary.analysed if action.step else gate.conclude)(run, action, outcome)
    elif not outcome.ok:
        run.fail(i, FailureKind.DRIVER,
                 f"{action.kind} of {action.node.name} failed: {outcome.error}")
    elif isinstance(action, Launch) and outcome.node is not None:
        run.set(i, new_target=outcome.node.lb_target)
        run.move(i, Phase.BOOTING)
    elif isinstance(action, RunSmoke):
        result = outcome.smoke
        limit = state.settings.timeouts.smoke
        if result is None or not result.passed:
            summary = result.summary if result is not None else "no result"
            run.fail(i, FailureKind.SMOKE, f"smoke test of {action.node.name} failed: {summary}")
        elif outcome.duration > limit:
            run.fail(i, FailureKind.SMOKE,
                     f"smoke test of {action.node.name} took {outcome.duration:.1f}s, "
                     f"more than timeouts.smoke {limit:g}s")
        else:
            run.waits.append(wait(i, "smoke", outcome.duration, now))
            blue_green = state.strategy is Strategy.BLUE_GREEN
            run.move(i, Phase.STAGED if blue_green else Phase.ADDING)
    elif isinstance(action, AddMember) and rep.phase is Phase.ADDING:
        run.move(i, Phase.RISING)
    return True


def request_stop(state: RolloutState, now: float) -> Decision:
    """A signal: start nothing new; restore every in-flight replacement whose old
    node is still there (retried from scratch on resume); let RETIRING finish."""
    run = Pass(replace(state, stopping=True), World({}, {}), now)
    for i, rep in enumerate(run.reps):
        if rep.active:
            run.restore(i, RestoreReason.INTERRUPTED)
    return Decision(_state(run), events=tuple(run.events))


def request_abort(state: RolloutState, now: float) -> Decision:
    """``rollout abort``: restore every replacement that can be, skip the rest."""
    base = resume_state(state, now) if state.status is not RolloutStatus.RUNNING else state
    run = Pass(replace(base, aborting=True), World({}, {}), now)
    for i, _rep in enumerate(run.reps):
        run.restore(i, RestoreReason.ABORTED)
    return Decision(_state(run), events=tuple(run.events))


def halt(state: RolloutState, reason: str, now: float) -> Decision:
    """Stop the rollout as halted (the executor cannot observe the pool)."""
    run = Pass(state, World({}, {}), now)
    run.halt(reason)
    return _finish(run)


def request_rollback(state: RolloutState, now: float) -> Decision:
    """``rollout rollback`` within a blue-green scale_down_delay: back to the
    warm blue pool (one switch), then the green nodes are restored away. The
    caller checked :func:`rollout.core.bluegreen.rollback_refusal` first."""
    bg = state.blue_green
    marked = replace(state, blue_green=None if bg is None else replace(bg, rollback=True))
    return request_abort(marked, now)


def resume_state(state: RolloutState, now: float) -> RolloutState:
    """Running again after a crash, a halt or a signal. Restores get a fresh set
    of retries; the progress deadline counts from now."""
    reps = tuple(
        replace(r, retries=0, retry_at=0.0, phase_started=now)
        if r.phase in (Phase.RESTORING, Phase.RETIRING)
        else r
        for r in state.replacements
    )
    return replace(
        state, status=RolloutStatus.RUNNING, halted=None, stopping=False, finished_at=None,
        last_progress=now, replacements=reps, message="",
        blue_green=None if state.blue_green is None else replace(state.blue_green, resumed=True),
    )


# --- the rollout as a whole ------------------------------------------------------


def _retry(run: Pass, i: int, action: Action, error: str) -> None:
    rep = run.reps[i]
    retries = rep.retries + 1
    if retries > MAX_RETRIES:
        run.halt(f"{action.kind} of {action.node.name} failed {retries} times: {error}")
        return
    retry_at = run.now + min(30.0, 2.0 ** (retries - 1))
    run.set(i, retries=retries, retry_at=retry_at, error=error)
    run.events.append(RetryScheduled(
        run.state.id, run.now, index=i, node=action.node.name, step=action.kind,
        attempt=retries, retry_at=retry_at, error=error,
    ))


def _check_rollout(run: Pass) -> None:
    state, settings = run.state, run.settings
    if run.failing or state.aborting or state.stopping or run.halted:
        return
    failures = sum(1 for r in run.reps if r.restore_reason is RestoreReason.FAILED)
    if failures > settings.failure_budget:
        fail_rollout(run, f"{failures} replacement(s) failed, more than failure_budget "
                           f"{settings.failure_budget}", RestoreReason.ROLLOUT_FAILED)
    elif run.gate.paused:
        return  # paused time does not count against the progress deadline
    elif run.now - state.last_progress > settings.timeouts.progress_deadline:
        fail_rollout(run, f"no progress for timeouts.progress_deadline "
                           f"{settings.timeouts.progress_deadline:g}s",
                      RestoreReason.ROLLOUT_FAILED)


def _state(run: Pass, status: RolloutStatus | None = None, message: str = "") -> RolloutState:
    state = run.state
    return replace(
        state,
        replacements=tuple(run.reps),
        failing=run.failing,
        halted=run.halted,
        last_progress=run.now if run.progressed else state.last_progress,
        soak=run.soak,
        soaked=run.soaked,
        batches_done=run.batches_done,
        hooks_done=run.hooks_done,
        gate=run.gate,
        window=run.window,
        status=status or state.status,
        finished_at=run.now if status not in (None, RolloutStatus.RUNNING) else state.finished_at,
        message=message or state.message,
        blue_green=run.bg,
    )


def _finish(run: Pass) -> Decision:
    status, message = _outcome(run)
    state = _state(run, status, message)
    events = list(run.events)
    if status is not None:
        reps = state.replacements
        events.append(RolloutFinished(
            state.id, run.now, status=status.value,
            replaced=sum(1 for r in reps if r.phase is Phase.DONE),
            restored=sum(1 for r in reps if r.phase is Phase.RESTORED),
            skipped=sum(1 for r in reps if r.phase is Phase.SKIPPED),
            duration=run.now - state.started_at, message=message,
        ))
    actions = tuple(run.actions) if status is None else ()
    return Decision(state, actions, tuple(events), tuple(run.waits))


def _outcome(run: Pass) -> tuple[RolloutStatus | None, str]:
    state = run.state
    if run.halted:
        return RolloutStatus.HALTED, run.halted
    reps: Sequence[Replacement] = run.reps
    if any(r.active for r in reps):
        return None, ""
    pending = any(r.phase is Phase.PENDING for r in reps)
    restored = [r.old_name for r in reps if r.phase is Phase.RESTORED]
    if state.aborting and run.bg is not None and run.bg.rollback:
        return RolloutStatus.ABORTED, f"rolled back to the warm blue pool: {', '.join(restored)}"
    if state.aborting:
        return RolloutStatus.ABORTED, f"aborted; restored {len(restored)} node(s)"
    if state.stopping and pending:
        return RolloutStatus.INTERRUPTED, "interrupted; resume to continue"
    if pending:
        return None, ""
    if run.failing:
        return RolloutStatus.FAILED, run.failing
    if window.pending(run):
        if state.stopping:
            return (RolloutStatus.INTERRUPTED,
                    "interrupted in the post-rollout window; resume to finish it")
        return None, ""
    if lifecycle.awaiting_after_rollout(run):
        if state.stopping:
            return (RolloutStatus.INTERRUPTED,
                    "interrupted before the after_rollout hook; resume to run it")
        return None, ""
    done = sum(1 for r in reps if r.phase is Phase.DONE)
    note = f"; {len(restored)} restored within failure_budget: {', '.join(restored)}" if (
        restored) else ""
    return RolloutStatus.SUCCEEDED, f"replaced {done} node(s){note}"
