"""The dark-launch gate's settings: ``rollout.shadow`` in a pool's group_vars.

Before a new node takes user traffic, a sample of the pool's recent real
requests is replayed to it and to one old in-service node, and the answers are
compared (:mod:`rollout.core.shadow`). docs/ANALYSIS.md ("Dark launch")
describes the keys.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from rollout.durations import parse_duration

_Duration = Annotated[float, BeforeValidator(parse_duration)]
_HEADER = re.compile(r"^[A-Za-z0-9-]+$")


class OnTooFew(StrEnum):
    """What the gate does when too few requests were recorded to judge."""

    PASS = "pass"  # let the node through, with a warning in the journal
    FAIL = "fail"  # refuse it: no evidence is not a pass


class ShadowSettings(BaseModel):
    """``rollout.shadow``: off unless ``enabled``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    #: How many distinct recent requests are replayed (the newest first).
    sample: int = Field(20, ge=1, le=1000)
    #: Paths never replayed: a prefix (``/admin``) or a glob (``/*/delete``).
    exclude: tuple[str, ...] = ()
    #: The largest share of mismatching replays that still passes.
    threshold: float = Field(0.0, ge=0, le=1)
    #: Compare the bodies' SHA-256 too (the status class always is).
    body_hash: bool = False
    #: The new node may answer this much slower than the old one.
    latency_tolerance: _Duration = Field(0.5, ge=0, le=60)
    #: Sensitive headers (Cookie, Authorization) that may be replayed.
    allow_headers: tuple[str, ...] = ()
    #: Fewer replayable requests recorded than this: the gate is inconclusive.
    min_requests: int = Field(5, ge=1, le=1000)
    #: What an inconclusive gate does.
    inconclusive: OnTooFew = OnTooFew.FAIL
    #: Each replayed request's timeout.
    timeout: _Duration = Field(5.0, gt=0, le=60)

    @field_validator("exclude")
    @classmethod
    def _paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if not pattern.startswith(("/", "*")):
                raise ValueError(f"exclude {pattern!r} must start with '/' (or be a glob)")
        return value

    @field_validator("allow_headers")
    @classmethod
    def _headers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _HEADER.fullmatch(name):
                raise ValueError(f"allow_headers: {name!r} is not a header name")
        return tuple(n.lower() for n in value)


__all__ = ["OnTooFew", "ShadowSettings"]
