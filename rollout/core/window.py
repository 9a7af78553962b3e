"""The post-rollout window (``rollout.post_rollout``), pure.

Once every replacement of a rollout (``kind`` "rollout") ended and the rollout
would succeed, it stays running for ``window`` seconds: its analyses run in
rounds, each name in order as one :class:`~rollout.core.state.RunAnalysis`
on the first replaced node, judging the new nodes (``$canary``) against any
other in-service member (``$baseline``)::

    state                                   what happens
    --------------------------------------  -------------------------------------------
    a round is under way                    the next analysis not passed in it runs
    a round passed, window not over         the next round starts (no sooner than the
                                            analyses' longest interval after the last)
    a round passed, window over             the window is done: the rollout succeeds
    an analysis failed (or inconclusive:    the rollout fails; with rollback: true the
    fail)                                   session rolls the pool back to rollback_to
    inconclusive, inconclusive: pause       held until `rollout continue` (re-runs it)

The image to go back to is journaled when the window begins, so the app
layer (:mod:`rollout.app.post_rollout`) can roll back after a restart too.
The after_rollout hook runs once the window is done.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from rollout.core import gate
from rollout.core.analysis import AnalysisContext, AnalysisPoint
from rollout.core.decision import Pass
from rollout.core.state import Outcome, Phase, RolloutState, RunAnalysis
from rollout.core.window_state import Window
from rollout.events import RolledBack

__all__ = ["Window", "concluded", "pending", "replaced_image", "rolled_back", "step"]


def _wanted(run: Pass) -> bool:
    s, state = run.settings.post_rollout, run.state
    if not s.analysis or state.kind != "rollout":
        return False
    if run.failing or run.halted or state.aborting:
        return False  # (a signal leaves the window unfinished: interrupted, resumable)
    reps = run.reps
    return all(r.phase.terminal for r in reps) and any(r.phase is Phase.DONE for r in reps)


def pending(run: Pass) -> bool:
    """Whether the window holds the end of a rollout that would succeed."""
    return _wanted(run) and not run.window.done


def step(run: Pass) -> bool:
    """Move the window on; True once it is over (or the rollout has none)."""
    if not pending(run):
        return True
    if run.state.stopping:
        return False
    w = run.window
    if w.started is None:
        w = run.window = replace(w, started=run.now, round_at=run.now,
                                 rollback_to=replaced_image(run.state))
        run.progressed = True
    names = run.settings.post_rollout.analysis
    name = next((n for n in names if n not in w.passed), None)
    if name is None:  # a round passed
        started = w.started if w.started is not None else run.now
        if run.now - started >= run.settings.post_rollout.window:
            run.window = replace(w, done=True, passed=(), rounds=w.rounds + 1)
            run.progressed = True
            return True
        gap = max((run.settings.analyses[n].interval for n in names), default=1.0)
        if run.now < (w.round_at or started) + gap:
            return False
        w = run.window = replace(w, passed=(), round_at=run.now, rounds=w.rounds + 1)
        run.progressed = True
        name = names[0]
    first = next(r for r in run.reps if r.phase is Phase.DONE)
    if run.gate.paused or first.index in run.busy:
        return False
    new = run.node(first.new_name)
    if new is not None:
        run.actions.append(RunAnalysis(index=first.index, attempt=first.attempt,
                                       phase=first.phase, node=new, name=name,
                                       point=AnalysisPoint.POST_ROLLOUT, context=_context(run)))
    return False


def concluded(run: Pass, action: RunAnalysis, outcome: Outcome) -> bool:
    """Fold a window analysis' verdict; False when it is late."""
    w = run.window
    names = run.settings.post_rollout.analysis
    if w.started is None or w.done or run.failing or \
            next((n for n in names if n not in w.passed), None) != action.name:
        return False
    settled = gate.settle(run, action, outcome, f"post-rollout analysis {action.name}")
    if settled.passed:
        run.window = replace(w, passed=(*w.passed, action.name))
        return True
    if settled.held:
        return True
    why = settled.failure
    back = (f"; rolling back to {w.rollback_to}" if run.settings.post_rollout.rollback
            and w.rollback_to else "")
    run.window = replace(w, failed=why)
    run.failing = f"post-rollout analysis: {why}{back}"
    return True


def rolled_back(state: RolloutState, by: str, now: float) -> tuple[RolloutState, RolledBack]:
    """Record that rollout ``by`` rolled the pool back after ``state``'s window
    failed: the state keeps it (so ``rollout rollback`` does not go back again
    from here), with its event."""
    w = replace(state.window, rolled_back_by=by)
    message = f"{state.message}; rolled back to {w.rollback_to} by rollout {by}"
    return (replace(state, window=w, message=message),
            RolledBack(state.id, now, by=by, image=w.rollback_to))


def replaced_image(state: RolloutState) -> str:
    """The image most of the rollout's replaced nodes ran ('' if none)."""
    done = [r.old_image_id for r in state.replacements if r.phase in (Phase.DONE, Phase.WARM)]
    counts = Counter(done or state.previous_images)
    return counts.most_common(1)[0][0] if counts else ""


def _context(run: Pass) -> AnalysisContext:
    members = run.world.members
    ours = tuple(r.new_target for r in run.reps if r.phase is Phase.DONE and r.new_target)
    others = tuple(sorted(t for t, m in members.items() if m.in_service and t not in ours))
    backend = run.settings.haproxy.backend if run.settings.haproxy is not None else run.state.role
    return AnalysisContext(
        env=run.state.env, role=run.state.role, rollout_id=run.state.id, backend=backend,
        canary_targets=ours, canary_slots=tuple(members[t].slot for t in ours if t in members),
        baseline_targets=others, baseline_slots=tuple(members[t].slot for t in others),
    )
