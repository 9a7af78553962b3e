"""Lifecycle hooks: the points of a rollout where a pool's playbooks run, their
settings (the pool's ``rollout.hooks`` key) and one call of a hook.

Pure: the schema checks a playbook's shape (a relative path without ``..``);
that it exists inside the project is checked by the loader
(:mod:`rollout.inventory`) when the inventory is read, before anything runs.

Where each point falls (see docs/HOOKS.md)::

    point           runs against        when
    --------------  ------------------  ----------------------------------------------
    before_rollout  the controller      once, before the first node is launched
    after_boot      the new node        ready, before its smoke test
    before_traffic  the new node        smoke passed, before it joins the LB
    after_traffic   the new node        UP in the LB, before the old node drains
    before_drain    the old node        still serving, before it is set DRAIN
    before_destroy  the old node        drained, still running, before it is parked
                                        (MAINT, stopped), so before it is destroyed
    after_rollout   the controller      once, after every node was replaced
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from rollout.durations import parse_duration
from rollout.model import Image, Node

_Duration = Annotated[float, BeforeValidator(parse_duration)]


class HookPoint(StrEnum):
    BEFORE_ROLLOUT = "before_rollout"
    AFTER_BOOT = "after_boot"
    BEFORE_TRAFFIC = "before_traffic"
    AFTER_TRAFFIC = "after_traffic"
    BEFORE_DRAIN = "before_drain"
    BEFORE_DESTROY = "before_destroy"
    AFTER_ROLLOUT = "after_rollout"

    @property
    def on_controller(self) -> bool:
        """Whether the hook runs once for the rollout, against the controller."""
        return self in (HookPoint.BEFORE_ROLLOUT, HookPoint.AFTER_ROLLOUT)

    @property
    def marker(self) -> str:
        """The key under which a replacement records that this hook passed."""
        return f"hook:{self.value}"


class Hook(BaseModel):
    """One hook: a playbook of the project, its time limit and extra vars."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    playbook: str
    timeout: _Duration = Field(300.0, gt=0, le=3600)
    vars: dict[str, Any] = {}

    @field_validator("playbook")
    @classmethod
    def _relative(cls, value: str) -> str:
        path = PurePosixPath(value)
        if (not value or path.is_absolute() or ".." in path.parts
                or path.suffix not in (".yml", ".yaml")):
            raise ValueError("must be a .yml playbook path relative to the project, "
                             f"without '..' (got {value!r})")
        return value

    @field_validator("vars")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key.startswith("rollout_"):
                raise ValueError(f"{key!r}: names starting with rollout_ are the hook's own "
                                 "variables (node, old node, image, rollout id)")
        return value


class HookSettings(BaseModel):
    """A pool's hooks, by point; a point without a hook is skipped."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    before_rollout: Hook | None = None
    after_boot: Hook | None = None
    before_traffic: Hook | None = None
    after_traffic: Hook | None = None
    before_drain: Hook | None = None
    before_destroy: Hook | None = None
    after_rollout: Hook | None = None

    def at(self, point: HookPoint) -> Hook | None:
        """The hook configured at ``point``, if any."""
        return {
            HookPoint.BEFORE_ROLLOUT: self.before_rollout,
            HookPoint.AFTER_BOOT: self.after_boot,
            HookPoint.BEFORE_TRAFFIC: self.before_traffic,
            HookPoint.AFTER_TRAFFIC: self.after_traffic,
            HookPoint.BEFORE_DRAIN: self.before_drain,
            HookPoint.BEFORE_DESTROY: self.before_destroy,
            HookPoint.AFTER_ROLLOUT: self.after_rollout,
        }[point]

    def configured(self) -> list[tuple[HookPoint, Hook]]:
        """Every configured hook with its point, in the order of the points."""
        return [(p, h) for p in HookPoint if (h := self.at(p)) is not None]


@dataclass(frozen=True)
class HookCall:
    """One run of a hook: what it runs and the variables it is given.

    ``node`` is the node the point is about (the new node, or the old one for
    ``before_drain`` and ``before_destroy``; None on the controller); ``new``
    and ``old`` are both nodes of the replacement when they are running, so a
    playbook can reach either (the inventory groups ``new`` and ``old``).
    ``index`` is the replacement's position, stable across attempts, so a
    store and a load hook of one replacement agree on where the data is."""

    point: HookPoint
    hook: Hook
    rollout_id: str
    image: Image
    index: int | None = None
    node: Node | None = None
    new: Node | None = None
    old: Node | None = None
