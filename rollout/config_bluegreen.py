"""The ``blue_green`` key of a pool's settings: analyses that judge a green
pool before and after the switch (see :mod:`rollout.core.switch_checks`)::

    blue_green:
      pre_switch_analysis: [green-checks]   # green staged, no user traffic yet
      post_switch_analysis: [error-rate]    # green serving, blue still warm

Each name must be one of ``rollout.analyses``; they run in order. They apply
to ``strategy: blue_green`` only. Pure (no I/O), like :mod:`rollout.config`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BlueGreenSettings(BaseModel):
    """Analyses run around the blue-green switch, by name."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    # Before the switch, against the staged green pool: a failure keeps blue
    # and removes green.
    pre_switch_analysis: tuple[str, ...] = Field(())
    # After the switch, while blue is warm: a failure switches back to blue.
    post_switch_analysis: tuple[str, ...] = Field(())

    def names(self) -> tuple[str, ...]:
        """Every analysis named here."""
        return (*self.pre_switch_analysis, *self.post_switch_analysis)


__all__ = ["BlueGreenSettings"]
