"""The ``blue_green`` key of a pool's settings: analyses that judge a green
pool before and after the switch (see :mod:`rollout.core.switch_checks`)::

    blue_green:
      pre_switch_analysis: [green-checks]   # green staged, no user traffic yet
      post_switch_analysis: [error-rate]    # green serving, blue still warm
      preview: true                         # the idle side on a preview frontend

Each name must be one of ``rollout.analyses``; they run in order. They apply
to ``strategy: blue_green`` only. Pure (no I/O), like :mod:`rollout.config`.

``preview`` serves the pool's IDLE side on a frontend of its own: the staged
green pool before the switch, the warm blue pool after it (what a rollback
would return to), nothing otherwise (the preview answers 503). It never takes
the main frontend's traffic, and a node in it is never counted as serving.
On HAProxy it needs ``rollout.haproxy.preview_backend`` (and, outside the lab,
``preview_port``); on ELBv2, ``rollout.aws.preview_rule_arn``; see
docs/BLUE-GREEN.md, "Preview", and docs/AWS.md.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BlueGreenSettings(BaseModel):
    """Analyses run around the blue-green switch, by name, and the preview."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    # Before the switch, against the staged green pool: a failure keeps blue
    # and removes green.
    pre_switch_analysis: tuple[str, ...] = Field(())
    # After the switch, while blue is warm: a failure switches back to blue.
    post_switch_analysis: tuple[str, ...] = Field(())
    # Expose the idle side (green before the switch, warm blue after it) on a
    # preview frontend, for people or a pre-switch analysis to try.
    preview: bool = False

    def names(self) -> tuple[str, ...]:
        """Every analysis named here."""
        return (*self.pre_switch_analysis, *self.post_switch_analysis)


__all__ = ["BlueGreenSettings"]
