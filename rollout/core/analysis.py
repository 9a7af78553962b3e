"""Analysis verdicts, pure: a measurement's value against the success
condition, and a series of measurements against the limits.

    measurement value            condition           outcome
    ---------------------------  ------------------  -------------
    a finite number              holds               SUCCESSFUL
    a finite number              does not hold       FAILED
    none / NaN / provider error  (not evaluated)     INCONCLUSIVE

    series                                                 verdict
    -----------------------------------------------------  ------------
    FAILED measurements > failure_limit                    FAILED (stops at once)
    INCONCLUSIVE measurements > inconclusive_limit         INCONCLUSIVE
    otherwise, after ``count`` measurements                PASSED

An inconclusive verdict is never a pass: no traffic means no evidence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from rollout.condition import ConditionError, parse_condition
from rollout.config_analysis import Analysis, OnInconclusive


class AnalysisPoint(StrEnum):
    """Where in a rollout an analysis runs, other than the canary (soak or
    ``analysis:`` step), which decides its verdict's consequence."""

    PRE_SWITCH = "pre_switch"  # blue-green: green staged, before the switch
    POST_SWITCH = "post_switch"  # blue-green: green serving, blue warm
    POST_ROLLOUT = "post_rollout"  # the window after a rollout (rollout.core.window)


class Judgement(StrEnum):
    """One measurement judged."""

    SUCCESSFUL = "successful"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


class VerdictKind(StrEnum):
    """A whole analysis judged."""

    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class AnalysisContext:
    """What an analysis is about: the canary's nodes against the baseline's
    (LB targets, and the LB slots they fill, which name them in HAProxy's
    metrics), in the pool's LB ``backend``, for rollout ``rollout_id``."""

    env: str
    role: str
    rollout_id: str
    backend: str
    canary_targets: tuple[str, ...]
    canary_slots: tuple[str, ...]
    baseline_targets: tuple[str, ...] = ()
    baseline_slots: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reading:
    """What a provider read: ``values`` (``result`` and maybe ``baseline``), or
    ``error`` saying why there is no usable value."""

    values: Mapping[str, float]
    error: str = ""


@dataclass(frozen=True)
class Measurement:
    """One judged reading, as journaled and shown by ``rollout show``."""

    analysis: str
    at: float
    outcome: Judgement
    result: float | None
    baseline: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class Verdict:
    """The analysis as a whole, with every measurement it took."""

    analysis: str
    kind: VerdictKind
    measurements: tuple[Measurement, ...]
    reason: str = ""
    on_inconclusive: OnInconclusive = OnInconclusive.FAIL

    @property
    def passed(self) -> bool:
        return self.kind is VerdictKind.PASSED


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def judge(name: str, spec: Analysis, reading: Reading, at: float) -> Measurement:
    """One reading against ``spec.success``."""
    result = _number(reading.values.get("result"))
    baseline = _number(reading.values.get("baseline"))
    if reading.error or result is None:
        why = reading.error or "no value"
        return Measurement(name, at, Judgement.INCONCLUSIVE, result, baseline, why)
    condition = parse_condition(spec.success, type(spec).VARIABLES)
    try:
        holds = condition.holds({k: v for k, v in reading.values.items()})
    except ConditionError as exc:
        return Measurement(name, at, Judgement.INCONCLUSIVE, result, baseline, exc.message)
    outcome = Judgement.SUCCESSFUL if holds else Judgement.FAILED
    detail = f"{spec.success}: {'true' if holds else 'false'}"
    return Measurement(name, at, outcome, result, baseline, detail)


def tally(name: str, spec: Analysis, measurements: Sequence[Measurement]) -> Verdict | None:
    """The verdict the measurements so far force, or None to measure on."""
    failed = sum(1 for m in measurements if m.outcome is Judgement.FAILED)
    unsure = sum(1 for m in measurements if m.outcome is Judgement.INCONCLUSIVE)
    taken = tuple(measurements)
    if failed > spec.failure_limit:
        last = next(m for m in reversed(taken) if m.outcome is Judgement.FAILED)
        return Verdict(name, VerdictKind.FAILED, taken,
                       f"analysis {name}: {failed} of {len(taken)} measurements failed, more "
                       f"than failure_limit {spec.failure_limit} (last: result "
                       f"{last.result:g}, {last.detail})", spec.inconclusive)
    if len(taken) < spec.count:
        return None
    if unsure > spec.inconclusive_limit:
        last = next(m for m in reversed(taken) if m.outcome is Judgement.INCONCLUSIVE)
        return Verdict(name, VerdictKind.INCONCLUSIVE, taken,
                       f"analysis {name} is inconclusive: {unsure} of {len(taken)} measurements "
                       f"had no usable value, more than inconclusive_limit "
                       f"{spec.inconclusive_limit} (last: {last.detail})", spec.inconclusive)
    return Verdict(name, VerdictKind.PASSED, taken, "", spec.inconclusive)


__all__ = ["AnalysisContext", "AnalysisPoint", "Judgement", "Measurement", "Reading", "Verdict",
           "VerdictKind",
           "judge", "tally"]
