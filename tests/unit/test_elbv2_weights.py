"""The listener weights a canary weight step writes on ELBv2, and the poll
that holds the step until the canary is healthy in the group it joins."""

from __future__ import annotations

import pytest

from rollout.backends.aws.weights import member_weight, split, until_healthy
from rollout.core.canary import canary_weight
from rollout.errors import DriverError
from rollout.testing import FakeClock


@pytest.mark.parametrize(("serving", "canaries", "percent"), [
    (1, 1, 10), (4, 1, 10), (9, 3, 25), (50, 2, 5), (3, 1, 40)])
def test_the_split_gives_the_canary_group_the_core_s_share(
        serving: int, canaries: int, percent: float) -> None:
    weight = canary_weight(percent, [100] * serving, canaries)
    a, b = split(serving, canaries, weight)
    assert 0 < b < a <= 999
    assert b / (a + b) * 100 == pytest.approx(percent, abs=1.5)
    # Read back from the listener, each canary reports the weight it was given.
    assert member_weight(serving, canaries, (a, b)) == weight


def test_one_serving_target_and_ten_percent_is_100_to_11() -> None:
    assert split(1, 1, canary_weight(10, [100], 1)) == (100, 11)


def test_the_poll_waits_on_the_clock_and_gives_up_naming_the_target() -> None:
    clock = FakeClock()
    start = clock.now()
    states = iter(["absent", "initial", "initial", "healthy"])
    until_healthy(lambda: next(states), "node web-1", clock, timeout=60, poll=5)
    assert clock.now() - start == 15
    with pytest.raises(DriverError, match=r"node web-1 is 'initial', not healthy, after 30s"):
        until_healthy(lambda: "initial", "node web-1", clock, timeout=30, poll=5)
