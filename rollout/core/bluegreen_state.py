"""The rollout-level state of a blue-green rollout (``strategy: blue_green``).

Kept apart from :mod:`rollout.core.state` so that the state module only
names it; the decisions are in :mod:`rollout.core.bluegreen`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Side(StrEnum):
    """Which pool should take the traffic: the old nodes (blue) or the new (green)."""

    BLUE = "blue"
    GREEN = "green"


@dataclass(frozen=True)
class BlueGreen:
    """What a blue-green rollout decided about the traffic.

    ``side`` is journaled before the switch action starts (write before you
    act): a controller killed mid-switch finds the side it was going to and
    reconciles the LB with it, or decides the other way and says why.
    """

    side: Side = Side.BLUE
    switched_at: float | None = None  # when the LB was seen all green
    rollback: bool = False  # `rollout rollback` asked to go back to blue
    resumed: bool = False  # set by resume: the next pass says which side it chose
    retries: int = 0  # failed switch actions in a row
    retry_at: float = 0.0
    error: str = ""
    # Analyses around the switch that passed (rollout.core.switch_checks).
    pre_passed: tuple[str, ...] = ()
    post_passed: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"side": self.side.value, "switched_at": self.switched_at,
                "rollback": self.rollback, "resumed": self.resumed,
                "retries": self.retries, "retry_at": self.retry_at, "error": self.error,
                "pre_passed": list(self.pre_passed), "post_passed": list(self.post_passed)}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> BlueGreen:
        switched = data.get("switched_at")
        return cls(side=Side(str(data.get("side", "blue"))),
                   switched_at=float(switched) if isinstance(switched, (int, float)) else None,
                   rollback=bool(data.get("rollback")), resumed=bool(data.get("resumed")),
                   retries=int(str(data.get("retries", 0))),
                   retry_at=float(str(data.get("retry_at", 0.0))),
                   error=str(data.get("error", "")),
                   pre_passed=_names(data.get("pre_passed")),
                   post_passed=_names(data.get("post_passed")))


def _names(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()
