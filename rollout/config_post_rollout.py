"""The ``post_rollout`` key of a pool's settings: a window after a rollout
succeeded in which analyses keep judging the new pool, and a failure rolls
the pool back to the image the rollout replaced (see
:mod:`rollout.core.window`)::

    post_rollout:
      analysis: [error-rate]   # names in rollout.analyses, in order
      window: 5m               # keep measuring for this long after the last node
      rollback: true           # on a failure, roll out the previous image

Meant for the ``surge`` and ``in_place`` strategies; a blue-green pool is
better judged by ``blue_green.post_switch_analysis`` while blue is still warm
(the window runs after blue retired). Pure (no I/O), like :mod:`rollout.config`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from rollout.durations import parse_duration


class PostRollout(BaseModel):
    """Analyses after a succeeded rollout, for ``window`` seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    analysis: tuple[str, ...] = ()
    # Rounds of the analyses run until this long after the window began (one
    # round at least, however short).
    window: Annotated[float, BeforeValidator(parse_duration)] = Field(0.0, ge=0)
    # False: a failure only fails the rollout (the pool stays on the new image).
    rollback: bool = True


__all__ = ["PostRollout"]
