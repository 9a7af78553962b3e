"""Canary steps and pause gates. Pure, like the rest of the core.

Once the canary batch is parked (its new nodes serve, its old ones are in
MAINT), it goes through ``canary_steps`` in order, instead of the single soak
of ``soak`` seconds. The position is :class:`rollout.core.state.Gate`,
journaled with the rest of the state::

    step        what the core does                          the step ends when
    ----------  ------------------------------------------  -------------------------------
    weight P    SetWeight on each canary member, so that    every canary member has its
                together they take P % of the traffic       weight
    pause D     soak: the canary's counters against the     D seconds passed and the soak
                old nodes' since the step began             verdict passed
    pause {}    hold (status ``paused``)                    `rollout continue`
    analysis N  RunAnalysis (the engine asks analysis N)    the analysis passed
    (the end)   SetWeight None on every weighted member     normal weights: the batch retires

Every step keeps the canary at the weight of the last weight step before it
(reconciled on every pass, so a resume finds HAProxy as it left it or puts it
right), and fails the canary at once when a canary member is no longer UP or
its checks flap. A failed canary restores its batch (the new members leave
the LB, and with them their weights) and fails the rollout.

Pause gates: ``rollout pause`` sets ``Gate.hold``; the rollout holds at the
next step boundary (between two canary steps, or before a batch starts).
``rollout continue`` ends a hold, and moves past a ``pause {}`` step. Paused
time is left out of the progress deadline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from rollout.config_analysis import OnInconclusive
from rollout.config_canary import CanaryStep
from rollout.core import gate as gate_analysis
from rollout.core import soak as soaking
from rollout.core.analysis import VerdictKind
from rollout.core.decision import Pass
from rollout.core.state import (
    Counters,
    Gate,
    Outcome,
    Replacement,
    RestoreReason,
    RolloutState,
    RunAnalysis,
    SetWeight,
    Soak,
    Wait,
)
from rollout.events import (
    CanaryStepStarted,
    Event,
    RolloutContinued,
    RolloutPaused,
    SoakVerdict,
)

#: HAProxy's largest server weight.
MAX_WEIGHT = 256


def canary_weight(percent: float, old_weights: Sequence[int], canaries: int) -> int:
    """The weight of each of ``canaries`` new members so that together they
    take ``percent`` % of the traffic, the old members keeping ``old_weights``.

    With W the old weights' sum and k canaries of weight c, the canaries' share
    is k·c / (k·c + W); solving for a share p gives c = p·W / ((100 - p)·k).
    Rounded, and kept within 1..256 (HAProxy's range)."""
    total = sum(old_weights)
    if total <= 0 or canaries <= 0:
        return MAX_WEIGHT
    exact = percent * total / ((100.0 - percent) * canaries)
    return max(1, min(MAX_WEIGHT, round(exact)))


def held(run: Pass, where: str) -> bool:
    """At a step boundary: whether the rollout holds here (a ``rollout pause``
    asked for it, or it is paused already)."""
    gate = run.gate
    if gate.paused:
        return True
    if not gate.hold:
        return False
    reason = f"held by `rollout pause` {where}"
    run.gate = replace(gate, held_since=run.now, held_by=reason)
    run.events.append(RolloutPaused(run.state.id, run.now, reason=reason))
    return True


def run_steps(run: Pass, standby: list[Replacement]) -> bool:
    """Move the parked canary batch through its steps; True once every step
    passed and the canary's weights are normal again (the batch may retire)."""
    steps = run.settings.canary_steps
    for _ in range(len(steps) + 1):
        gate = run.gate
        if gate.step >= len(steps):
            return _normal_weights(run, standby)
        step = steps[gate.step]
        if gate.step_started is None:
            if held(run, f"before canary step {gate.step + 1}"):
                return False
            _begin(run, gate.step, step)
        if not _weigh(run, standby, _percent(steps, gate.step)):
            return False
        if _failed_at_once(run, standby) or not _step(run, step, standby):
            return False
        _next(run)
    return False


def analysed(run: Pass, action: RunAnalysis, outcome: Outcome) -> None:
    """Fold the verdict of an analysis step into ``run``."""
    steps, gate = run.settings.canary_steps, run.gate
    if gate.step >= len(steps) or steps[gate.step].analysis != action.name:
        return  # a late verdict for a step the canary has left
    verdict = outcome.verdict
    if verdict is not None:
        gate_analysis.journal(run, verdict)
    if (verdict is not None and verdict.kind is VerdictKind.INCONCLUSIVE
            and verdict.on_inconclusive is OnInconclusive.PAUSE):
        reason = (f"analysis {action.name} was inconclusive ({verdict.reason}); "
                  "`rollout continue` runs it again")
        run.gate = replace(run.gate, held_since=run.now, held_by=reason)
        run.events.append(RolloutPaused(run.state.id, run.now, reason=reason))
        return
    if outcome.ok and verdict is not None and verdict.passed:
        _next(run)
    else:
        reason = verdict.reason if verdict is not None else outcome.error or "no verdict"
        _fail(run, f"analysis {action.name} failed: {reason}")


def request_pause(state: RolloutState, now: float, by: str) -> tuple[RolloutState, Event]:
    """``rollout pause``: hold at the next step boundary."""
    gate = replace(state.gate, hold=True)
    return replace(state, gate=gate), RolloutPaused(
        state.id, now, reason=f"`rollout pause` by {by}: holds at the next step boundary",
        held=False)


def request_continue(state: RolloutState, now: float, by: str) -> tuple[RolloutState, Event]:
    """``rollout continue``: end the hold (and a ``pause {}`` step); the time
    paused is added to ``last_progress`` so the progress deadline skips it."""
    gate = state.gate
    waited = now - gate.held_since if gate.held_since is not None else 0.0
    steps = state.settings.canary_steps
    step, started = gate.step, gate.step_started
    if gate.paused and started is not None and step < len(steps) and steps[step].manual:
        step, started = step + 1, None
    gate = replace(gate, hold=False, held_since=None, held_by="", step=step,
                   step_started=started, held_total=gate.held_total + waited)
    state = replace(state, gate=gate, last_progress=state.last_progress + waited)
    return state, RolloutContinued(state.id, now, by=by, waited=waited)


# --- one step ----------------------------------------------------------------------


def _percent(steps: Sequence[CanaryStep], upto: int) -> float | None:
    """The weight the canary has at step ``upto``: that of the last weight
    step so far; None (normal weights) before the first."""
    for step in reversed(steps[: upto + 1]):
        if step.weight is not None:
            return step.weight
    return None


def _begin(run: Pass, k: int, step: CanaryStep) -> None:
    steps = run.settings.canary_steps
    baseline = {t: Counters.of(m) for t, m in run.world.members.items()}
    run.soak = Soak(0, run.now, baseline)
    run.gate = replace(run.gate, step_started=run.now)
    run.progressed = True
    run.events.append(CanaryStepStarted(run.state.id, run.now, step=k, steps=len(steps),
                                        description=step.describe()))


def _next(run: Pass) -> None:
    gate = run.gate
    run.gate = replace(gate, step=gate.step + 1, step_started=None)
    run.soak = None
    run.progressed = True


def _weigh(run: Pass, standby: list[Replacement], percent: float | None) -> bool:
    """Give the canary members the weight of ``percent``; True once they have it."""
    if percent is None:
        return True
    ours = {r.new_target for r in run.reps if r.new_target}
    old = [m.weight for t, m in run.world.members.items() if m.in_service and t not in ours]
    if any(w is None for w in old):
        _fail(run, "the load balancer has no member weights, so weight steps cannot run; "
                   "remove them from canary_steps")
        return False
    weight = canary_weight(percent, [w for w in old if w is not None], len(standby))
    done = True
    for rep in standby:
        member = run.member(rep.new_target)
        if member is None or member.weight == weight:
            continue
        done = False
        if rep.index in run.busy:
            continue
        if rep.new_target not in run.gate.weighted:
            # Journaled with this decision, before the action runs.
            run.gate = replace(run.gate, weighted=(*run.gate.weighted, rep.new_target))
        new = run.node(rep.new_name)
        if new is not None:
            run.act(rep.index, SetWeight, new, weight=weight)
    return done


def _normal_weights(run: Pass, standby: list[Replacement]) -> bool:
    by_target = {r.new_target: r for r in standby}
    done = True
    for target in run.gate.weighted:
        member, rep = run.member(target), by_target.get(target)
        if member is None or rep is None or member.weight == member.normal_weight:
            continue
        done = False
        new = run.node(rep.new_name)
        if new is not None and rep.index not in run.busy:
            run.act(rep.index, SetWeight, new, weight=None)
    if done:
        run.gate = replace(run.gate, weighted=())
    return done


def _failed_at_once(run: Pass, standby: list[Replacement]) -> bool:
    soak = run.soak or Soak(0, run.now)
    news = [r.new_target for r in standby]
    ours = {r.new_target for r in run.reps if r.new_target}
    verdict = soaking.verdict(soak, run.world.members, news, ours, run.settings)
    if verdict.passed or not verdict.at_once:
        return False
    _fail(run, verdict.reason, verdict)
    return True


def _step(run: Pass, step: CanaryStep, standby: list[Replacement]) -> bool:
    """True when ``step`` is over (and passed)."""
    gate = run.gate
    if step.weight is not None:
        return True
    if step.analysis is not None:
        rep = standby[0]
        if gate.paused:  # an inconclusive verdict asked a person: `rollout continue` re-runs it
            return False
        if rep.index not in run.busy:
            new = run.node(rep.new_name)
            if new is not None:
                ours = {r.new_target for r in run.reps if r.new_target}
                run.act(rep.index, RunAnalysis, new, name=step.analysis, step=True,
                        context=gate_analysis.context(run, standby, ours))
        for r in standby:
            run.wait_for(r.index, f"canary analysis {step.analysis}")
        return False
    if step.manual:
        if not gate.paused:
            reason = (f"canary step {gate.step + 1}/{len(run.settings.canary_steps)}: "
                      "waiting for `rollout continue`")
            run.gate = replace(gate, held_since=run.now, held_by=reason)
            run.events.append(RolloutPaused(run.state.id, run.now, reason=reason))
        return False
    started = gate.step_started if gate.step_started is not None else run.now
    seconds = step.pause or 0.0
    elapsed = run.now - started
    run.progressed = True  # a timed pause is bounded by itself, not by the deadline
    if elapsed < seconds:
        for r in standby:
            run.wait_for(r.index, f"canary pause {seconds:g}s", started + seconds)
        return False
    soak = run.soak or Soak(0, started)
    news = [r.new_target for r in standby]
    ours = {r.new_target for r in run.reps if r.new_target}
    verdict = soaking.verdict(soak, run.world.members, news, ours, run.settings)
    run.events.append(SoakVerdict(
        run.state.id, run.now, batch=0, passed=verdict.passed, rate_new=verdict.rate_new,
        rate_old=verdict.rate_old, flaps=verdict.flaps, seconds=elapsed, reason=verdict.reason,
    ))
    if not verdict.passed:
        _fail(run, verdict.reason)
        return False
    run.waits.append(Wait(None, "soak", elapsed, run.now))
    return True


def _fail(run: Pass, reason: str, verdict: soaking.Verdict | None = None) -> None:
    """The canary regressed: restore its batch and fail the rollout."""
    if verdict is not None:
        run.events.append(SoakVerdict(
            run.state.id, run.now, batch=0, passed=False, rate_new=verdict.rate_new,
            rate_old=verdict.rate_old, flaps=verdict.flaps, reason=reason,
        ))
    run.gate = replace(run.gate, hold=False, held_since=None, held_by="")
    run.soak = None
    for r in run.reps:
        if r.batch == 0:
            run.restore(r.index, RestoreReason.CANARY)
    run.failing = run.failing or f"canary regression: {reason}"
    for i in range(len(run.reps)):
        run.restore(i, RestoreReason.ROLLOUT_FAILED)


__all__ = [
    "Gate",
    "analysed",
    "canary_weight",
    "held",
    "request_continue",
    "request_pause",
    "run_steps",
]
