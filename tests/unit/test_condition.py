"""The success-condition language: a table of conditions, values and results,
and the inputs it refuses (nothing reaches eval)."""

from __future__ import annotations

import math

import pytest

from rollout.condition import ConditionError, parse_condition


@pytest.mark.parametrize(("text", "values", "expected"), [
    ("result < 0.05", {"result": 0.01}, True),
    ("result < 0.05", {"result": 0.05}, False),
    ("result <= 0.05", {"result": 0.05}, True),
    ("result >= 1e-3", {"result": 0.002}, True),
    ("result == 0", {"result": 0.0}, True),
    ("result != 0", {"result": 0.0}, False),
    ("result <= baseline + 0.01", {"result": 0.02, "baseline": 0.015}, True),
    ("result <= baseline * 2 - .01", {"result": 0.5, "baseline": 0.2}, False),
    ("result < 1 and result > 0", {"result": 0.5}, True),
    ("result < 0 or result > 0.9", {"result": 0.5}, False),
    ("not (result > 0.1)", {"result": 0.05}, True),
    ("-result < 0", {"result": 2.0}, True),
    ("result / 2 < 1", {"result": 1.5}, True),
    ("(result + 1) * 2 == 4", {"result": 1.0}, True),
])
def test_conditions_evaluate(text: str, values: dict[str, float], expected: bool) -> None:
    assert parse_condition(text).holds(values) is expected


@pytest.mark.parametrize("text", [
    "", "result", "0.5", "result <", "result < 0.05 extra", "__import__('os')",
    "result < open", "result.real < 1", "result < 1 and 2", "(result < 1", "result < 'a'",
    "result ** 2 < 1", "true + 1 < 2", "result < 1 < 2", "not result",
])
def test_bad_conditions_are_refused(text: str) -> None:
    with pytest.raises(ConditionError):
        parse_condition(text)


def test_only_allowed_names() -> None:
    with pytest.raises(ConditionError, match="unknown name 'baseline'"):
        parse_condition("result < baseline", ("result",))


@pytest.mark.parametrize("values", [{}, {"result": math.nan}])
def test_no_value_is_not_a_verdict(values: dict[str, float]) -> None:
    with pytest.raises(ConditionError, match="no value"):
        parse_condition("result < 0.05").holds(values)


def test_division_by_zero_is_an_error_not_a_pass() -> None:
    with pytest.raises(ConditionError, match="division by zero"):
        parse_condition("result / baseline < 2").holds({"result": 1.0, "baseline": 0.0})
