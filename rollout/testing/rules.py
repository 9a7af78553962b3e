"""Injected failures of the fakes: which call of which node or image fails, how often."""

from __future__ import annotations

from dataclasses import dataclass

from rollout.errors import DriverError


@dataclass
class FailureRule:
    op: str
    times: int | None  # None: every time
    node: str | None
    image: str | None
    error: str
    raises: type[Exception] = DriverError


def take_rule(rules: list[FailureRule], op: str, name: str, image: str) -> FailureRule | None:
    for rule in rules:
        if rule.op != op or (rule.node and rule.node != name) or (
            rule.image and rule.image != image
        ):
            continue
        if rule.times is not None:
            rule.times -= 1
            if rule.times <= 0:
                rules.remove(rule)
        return rule
    return None
