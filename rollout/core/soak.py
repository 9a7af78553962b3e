"""The canary soak verdict: new nodes' LB counters against the old nodes'.

During the soak the counters of every member are compared with a baseline taken
when the soak started. The new nodes regress when their 5xx rate (5xx responses
per session) exceeds the old nodes' rate by more than ``max_5xx_rate``, when
their health checks flap more than ``max_flaps`` times, or when one of them is
no longer UP in the LB. Flaps and a DOWN node fail the soak at once; the rate is
judged at the end, when there are enough requests to compare.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from rollout.config import PoolSettings
from rollout.core.state import Counters, Soak
from rollout.model import Health, Member


@dataclass(frozen=True)
class Verdict:
    passed: bool
    rate_new: float
    rate_old: float
    flaps: int
    reason: str = ""
    at_once: bool = False  # fail now, without waiting for the end of the soak


def _delta(member: Member, base: Counters | None) -> Counters:
    base = base or Counters()
    return Counters(
        total=max(0, member.total_sessions - base.total),
        http_5xx=max(0, member.http_5xx - base.http_5xx),
        check_downs=max(0, member.check_downs - base.check_downs),
    )


def _rate(deltas: list[Counters]) -> float:
    total = sum(d.total for d in deltas)
    errors = sum(d.http_5xx for d in deltas)
    return errors / total if total else 0.0


def verdict(
    soak: Soak,
    members: Mapping[str, Member],
    new_targets: Collection[str],
    ours: Collection[str],
    settings: PoolSettings,
) -> Verdict:
    """Judge the soak so far. ``new_targets`` are the canary's new nodes; ``ours``
    every node this rollout created (left out of the old side)."""
    new: list[Counters] = []
    for target in new_targets:
        member = members.get(target)
        if member is None or member.health is not Health.UP:
            state = "not in the LB" if member is None else f"health {member.health}"
            return Verdict(False, 0.0, 0.0, 0, f"new node {target} is {state}", at_once=True)
        new.append(_delta(member, soak.baseline.get(target)))
    old = [
        _delta(m, soak.baseline.get(t))
        for t, m in members.items()
        if m.in_service and t not in ours
    ]
    rate_new, rate_old = _rate(new), _rate(old)
    flaps = sum(d.check_downs for d in new)
    if flaps > settings.max_flaps:
        return Verdict(
            False, rate_new, rate_old, flaps,
            f"new nodes' health checks flapped {flaps} times (max_flaps {settings.max_flaps})",
            at_once=True,
        )
    if rate_new > rate_old + settings.max_5xx_rate:
        return Verdict(
            False, rate_new, rate_old, flaps,
            f"new nodes' 5xx rate {rate_new:.2%} exceeds the old nodes' {rate_old:.2%} "
            f"by more than max_5xx_rate {settings.max_5xx_rate:.2%}",
        )
    return Verdict(True, rate_new, rate_old, flaps)
