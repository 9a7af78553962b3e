"""Measurements to verdicts: failure limits, inconclusive limits, and the
config's refusal of bad analyses."""

from __future__ import annotations

import math

import pytest
from pydantic import TypeAdapter, ValidationError

from rollout.config_analysis import Analysis
from rollout.core.analysis import Judgement, Reading, VerdictKind, judge, tally
from rollout.testing import pool_settings

ADAPTER: TypeAdapter[Analysis] = TypeAdapter(Analysis)


def spec(**extra: object) -> Analysis:
    base = {"provider": "prometheus", "query": "up", "success": "result < 0.05", "count": 3}
    return ADAPTER.validate_python(base | extra)


def series(s: Analysis, values: list[float | None]) -> VerdictKind | None:
    taken = []
    for k, value in enumerate(values):
        reading = Reading({} if value is None else {"result": value})
        taken.append(judge("error-rate", s, reading, float(k)))
        verdict = tally("error-rate", s, taken)
        if verdict is not None:
            return verdict.kind
    return None


@pytest.mark.parametrize(("extra", "values", "expected"), [
    ({}, [0.0, 0.01, 0.02], VerdictKind.PASSED),
    ({}, [0.2], VerdictKind.FAILED),  # failure_limit 0: the first failure decides
    ({"failure_limit": 1}, [0.2, 0.0, 0.0], VerdictKind.PASSED),
    ({"failure_limit": 1}, [0.2, 0.0, 0.3], VerdictKind.FAILED),
    ({}, [None, None, None], VerdictKind.INCONCLUSIVE),  # no traffic is never a pass
    ({}, [0.0, None, 0.0], VerdictKind.INCONCLUSIVE),
    ({"inconclusive_limit": 1}, [0.0, None, 0.0], VerdictKind.PASSED),
    ({"inconclusive_limit": 1}, [None, None, 0.0], VerdictKind.INCONCLUSIVE),
    ({}, [math.nan, 0.0, 0.0], VerdictKind.INCONCLUSIVE),
    ({}, [0.0, 0.0], None),  # not enough measurements yet
])
def test_series(extra: dict[str, object], values: list[float | None],
                expected: VerdictKind | None) -> None:
    assert series(spec(**extra), values) is expected


def test_a_failed_verdict_names_the_measurement() -> None:
    s = spec()
    taken = [judge("error-rate", s, Reading({"result": 0.2}), 1.0)]
    verdict = tally("error-rate", s, taken)
    assert verdict is not None and verdict.kind is VerdictKind.FAILED
    assert "result 0.2" in verdict.reason and "failure_limit 0" in verdict.reason
    assert taken[0].outcome is Judgement.FAILED


def test_provider_error_is_inconclusive() -> None:
    m = judge("x", spec(), Reading({}, "prometheus: connection refused"), 0.0)
    assert m.outcome is Judgement.INCONCLUSIVE and "refused" in m.detail


def test_haproxy_condition_may_use_baseline() -> None:
    s = ADAPTER.validate_python({"provider": "haproxy", "success": "result <= baseline + 0.01"})
    m = judge("x", s, Reading({"result": 0.3, "baseline": 0.0}), 0.0)
    assert m.outcome is Judgement.FAILED


@pytest.mark.parametrize("bad", [
    {"success": "result < "},
    {"success": "baseline < 1"},  # prometheus gives no baseline
    {"count": 0},
    {"inconclusive": "ignore"},
    {"provider": "nagios"},
    {"address": "ftp://x"},
])
def test_bad_analyses_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        spec(**bad)


def test_pool_settings_name_an_analysis_they_define() -> None:
    analyses = {"error-rate": {"provider": "haproxy", "success": "result < 0.05"}}
    settings = pool_settings(analyses=analyses, analysis="error-rate")
    assert settings.analysis == "error-rate"
    with pytest.raises(Exception, match=r"not one of rollout\.analyses"):
        pool_settings(analyses=analyses, analysis="latency")
