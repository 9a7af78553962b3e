"""The ``canary_steps`` key of a pool's settings: what the canary batch goes
through once its new nodes serve, in order, before the rest of the pool is
replaced.

Each step is a mapping with exactly one key::

    canary_steps:
      - weight: 10          # the canary nodes take 10 % of the backend's traffic
      - pause: 5m           # soak: judge the canary for 5 minutes
      - pause: {}           # wait until a person runs `rollout continue`
      - analysis: errors    # ask the analysis named "errors" for a verdict
      - weight: 50
      - pause: 2m

Pure (no I/O), like :mod:`rollout.config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rollout.durations import parse_duration

_KEYS = ("weight", "pause", "analysis")


class CanaryStep(BaseModel):
    """One canary step: ``weight`` (percent of the backend's traffic for the
    canary nodes), ``pause`` (seconds; ``manual`` when a person must continue)
    or ``analysis`` (a name)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    weight: float | None = Field(None, gt=0, lt=100)
    pause: float | None = Field(None, ge=0)
    manual: bool = False  # a pause without a duration: wait for `rollout continue`
    analysis: str | None = Field(None, min_length=1, max_length=63)

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise ValueError("a canary step is a mapping with one key: weight, pause or analysis")
        given = [k for k in _KEYS if data.get(k) is not None]
        manual = bool(data.get("manual"))
        if not given and ("pause" in data or manual):
            given = ["pause"]  # `pause:` with no value, or the stored form of `pause: {}`
        if len(given) != 1:
            raise ValueError(
                f"a canary step has exactly one of weight, pause or analysis (got "
                f"{', '.join(sorted(data)) or 'none'})"
            )
        out = dict(data)
        if given == ["pause"] and not manual:
            pause = out["pause"]
            if pause is None or pause == {} or pause == "":
                out["pause"], out["manual"] = None, True
            elif isinstance(pause, Mapping):
                raise ValueError("pause takes a duration such as 5m, or {} to wait for a person")
            else:
                out["pause"] = parse_duration(pause)
        return out

    @property
    def kind(self) -> str:
        """``weight``, ``pause`` or ``analysis``."""
        if self.weight is not None:
            return "weight"
        if self.analysis is not None:
            return "analysis"
        return "pause"

    def describe(self) -> str:
        """How a person would write the step, for messages."""
        if self.weight is not None:
            return f"weight {self.weight:g}%"
        if self.analysis is not None:
            return f"analysis {self.analysis}"
        return "pause until continued" if self.manual else f"pause {self.pause or 0:g}s"


def shortcut(weight: float, soak: float) -> tuple[CanaryStep, ...]:
    """``rollout run --canary-weight PCT --soak D``: one weight step, one pause."""
    return (CanaryStep(weight=weight), CanaryStep(pause=soak))
