"""Canary weights on ELBv2: what a weight step writes into the listener's
weighted forward between the pool's two target groups (docs/AWS.md,
"Weighted canary steps on ELBv2").

A target has no weight of its own in ELBv2; its share is its group's weight
spread over the group's targets. The canary's targets sit in the idle group,
the others in the serving group, so a member weight ``w`` for each of k
canaries beside S serving targets of :data:`NORMAL_WEIGHT` is the listener
ratio ``100·S : w·k``.
"""

from __future__ import annotations

from collections.abc import Callable
from math import gcd

from rollout.errors import DriverError
from rollout.protocols import Clock

#: The weight each target of the serving group reports (``Member.weight``):
#: ELBv2 has no per-target weight, so a target's share is its group's weight
#: spread over the group's targets, and this is the unit it is counted in.
NORMAL_WEIGHT = 100


def split(serving: int, canaries: int, weight: int) -> tuple[int, int]:
    """The listener weights (serving group, canary group) that give each of
    ``canaries`` targets in the canary group the share of a member of weight
    ``weight`` beside ``serving`` targets of :data:`NORMAL_WEIGHT`: the ratio
    ``serving·100 : canaries·weight``, reduced, and scaled into ELBv2's 0..999."""
    a, b = NORMAL_WEIGHT * max(serving, 1), weight * max(canaries, 1)
    g = gcd(a, b)
    a, b = a // g, b // g
    top = max(a, b)
    if top > 999:
        a, b = max(1, round(a * 999 / top)), max(1, round(b * 999 / top))
    return a, b


def member_weight(serving: int, canaries: int, weights: tuple[int, int]) -> int:
    """The weight each canary target reports for listener ``weights``: the
    one :func:`split` turns into exactly these weights (so a weight set is
    read back as set, whatever the rounding), else the nearest ratio."""
    for weight in range(1, 257):
        if split(serving, canaries, weight) == weights:
            return weight
    a, b = weights
    return max(1, round(b * NORMAL_WEIGHT * max(serving, 1) / (max(a, 1) * max(canaries, 1))))


def until_healthy(state: Callable[[], str], what: str, clock: Clock, *,
                  timeout: float, poll: float) -> None:
    """Poll ``state()`` (a target's ELBv2 state in one group) until it is
    ``healthy``; a DriverError naming ``what`` after ``timeout`` seconds."""
    deadline = clock.now() + timeout
    while True:
        now = state()
        if now == "healthy":
            return
        if clock.now() >= deadline:
            raise DriverError(f"{what} is {now!r}, not healthy, after {timeout:g}s",
                              hint="check the target group's health check, or raise "
                              "timeouts.lb_up")
        clock.sleep(poll)
