"""The canary soak judged by an analysis (``rollout.analysis``), pure.

With an analysis set, the soak still waits ``soak`` seconds and still fails at
once when a new node leaves the LB or its checks flap; the LB's 5xx rates no
longer decide. When the soak time is up the core asks for one
:class:`~rollout.core.state.RunAnalysis` (taken for the batch's first
replacement), and the verdict it returns decides:

    verdict                              what happens
    -----------------------------------  -----------------------------------------
    passed                               the soak passed: the batch retires
    failed                               the batch is restored, the rollout fails
    inconclusive (inconclusive: fail)    the same, saying why
    inconclusive (inconclusive: pause)   the rollout holds (status paused, the
                                         canary serving) until `rollout continue`,
                                         which runs the analysis again: an
                                         inconclusive canary never passes

Every measurement becomes an :class:`~rollout.events.AnalysisMeasured` event
(the journal keeps events) and the verdict an
:class:`~rollout.events.AnalysisVerdict`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from rollout.config_analysis import OnInconclusive
from rollout.core.analysis import AnalysisContext, Verdict, VerdictKind
from rollout.core.decision import Pass
from rollout.core.state import Outcome, Replacement, RestoreReason, RunAnalysis, Wait
from rollout.events import AnalysisMeasured, AnalysisVerdict, RolloutPaused


def request(run: Pass, name: str, standby: Sequence[Replacement], ours: Collection[str]) -> None:
    """Ask for analysis ``name`` of the parked canary ``standby`` replacements."""
    first = standby[0]
    new = run.node(first.new_name)
    if new is None or first.index in run.busy:
        return
    run.wait_for(first.index, f"analysis {name} of the canary")
    run.act(first.index, RunAnalysis, new, name=name, context=context(run, standby, ours))


def context(run: Pass, standby: Sequence[Replacement], ours: Collection[str]) -> AnalysisContext:
    """What an analysis of the canary ``standby`` replacements is about: their
    LB targets and slots, and the in-service members that are not ``ours``."""
    members = run.world.members
    canary = tuple(r.new_target for r in standby)
    baseline = tuple(sorted(t for t, m in members.items() if m.in_service and t not in ours))
    backend = run.settings.haproxy.backend if run.settings.haproxy is not None else run.state.role
    return AnalysisContext(
        env=run.state.env, role=run.state.role, rollout_id=run.state.id, backend=backend,
        canary_targets=canary,
        canary_slots=tuple(members[t].slot for t in canary if t in members),
        baseline_targets=baseline, baseline_slots=tuple(members[t].slot for t in baseline),
    )


def journal(run: Pass, verdict: Verdict) -> None:
    """Journal each measurement of ``verdict`` as an event."""
    for m in verdict.measurements:
        run.events.append(AnalysisMeasured(
            run.state.id, run.now, analysis=m.analysis, outcome=m.outcome.value,
            result=m.result, baseline=m.baseline, detail=m.detail, measured_at=m.at,
        ))
    run.events.append(AnalysisVerdict(
        run.state.id, run.now, analysis=verdict.analysis, verdict=verdict.kind.value,
        measurements=len(verdict.measurements), reason=verdict.reason,
    ))


@dataclass(frozen=True)
class Settled:
    """An analysis' verdict folded in: it passed, it holds the rollout for
    `rollout continue` (inconclusive with ``inconclusive: pause``), or it
    failed, saying why."""

    passed: bool = False
    held: bool = False
    failure: str = ""


def settle(run: Pass, action: RunAnalysis, outcome: Outcome, what: str) -> Settled:
    """Journal the verdict of ``action`` (``what`` names it in messages) and
    hold the rollout when it is inconclusive and set to pause; the caller acts
    on a pass or a failure. Shared by the canary soak, the blue-green switch
    checks and the post-rollout window."""
    verdict = outcome.verdict
    run.progressed = True
    if verdict is None:
        return Settled(failure=f"analysis {action.name} could not run: "
                               f"{outcome.error or 'no verdict'}")
    journal(run, verdict)
    if verdict.passed:
        return Settled(passed=True)
    if verdict.kind is VerdictKind.INCONCLUSIVE and (
            verdict.on_inconclusive is OnInconclusive.PAUSE):
        why = f"{what} was inconclusive ({verdict.reason}); `rollout continue` runs it again"
        run.gate = replace(run.gate, held_since=run.now, held_by=why)
        run.events.append(RolloutPaused(run.state.id, run.now, reason=why))
        return Settled(held=True)
    return Settled(failure=verdict.reason)


def conclude(run: Pass, action: RunAnalysis, outcome: Outcome) -> None:
    """Fold an analysis' outcome into the canary batch."""
    rep = run.reps[action.index]
    batch = [r for r in run.reps if r.batch == rep.batch]
    # Held like an inconclusive canary step: the canary keeps serving, the
    # soak keeps its start, and `rollout continue` asks the analysis again.
    settled = settle(run, action, outcome, f"analysis {action.name} of the canary soak")
    if settled.passed:
        started = run.soak.started if run.soak is not None else run.now
        run.waits.append(Wait(None, "soak", max(0.0, run.now - started), run.now))
        run.soak = None
        run.soaked = True
        return
    if settled.held:
        return
    run.soak = None
    for r in batch:
        run.restore(r.index, RestoreReason.CANARY)
    run.failing = run.failing or f"canary analysis: {settled.failure}"
    for i in range(len(run.reps)):
        run.restore(i, RestoreReason.ROLLOUT_FAILED)


__all__ = ["Settled", "conclude", "context", "journal", "request", "settle"]
