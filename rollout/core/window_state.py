"""The rollout-level state of a post-rollout window (``rollout.post_rollout``).

Kept apart from :mod:`rollout.core.state` so that the state module only names
it; the decisions are in :mod:`rollout.core.window`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Window:
    """Where the post-rollout window is. Journaled with the rest of the state,
    so a resume runs only the analyses whose verdict was not journaled yet."""

    started: float | None = None  # every replacement ended: the window began
    round_at: float | None = None  # the current round of analyses began
    passed: tuple[str, ...] = ()  # analyses that passed in the current round
    rounds: int = 0  # rounds that passed
    done: bool = False  # the window is over and every round passed
    failed: str = ""  # why an analysis failed (the rollout fails)
    rollback_to: str = ""  # the image a rollback returns to (the one replaced)
    rolled_back_by: str = ""  # the rollout that rolled the pool back

    def to_json(self) -> dict[str, Any] | None:
        """None when untouched, so other rollouts keep the blob they had."""
        return None if self == Window() else {**asdict(self), "passed": list(self.passed)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Window:
        if not data:
            return cls()
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        return cls(**{**values, "passed": tuple(values.get("passed", ()))})


__all__ = ["Window"]
