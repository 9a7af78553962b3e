"""Typed progress events. The controller hands each one to a sink (a callable);
the CLI renders them with rich on a TTY or prints ``to_json()`` one per line.

Every event has ``kind`` (a stable string, the JSON ``event`` field), the
``rollout_id`` and ``at`` (clock time, seconds since the epoch).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    rollout_id: str
    at: float

    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        data = {"event": self.kind}
        data.update(dataclasses.asdict(self))
        return data

    def to_json(self) -> str:
        """One line of JSON, for ``--output json``."""
        return json.dumps(self.to_dict(), sort_keys=False, default=str)


EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class RolloutStarted(Event):
    env: str = ""
    role: str = ""
    target_image: str = ""
    target_version: str = ""
    strategy: str = ""
    replacements: int = 0
    batches: int = 0
    already_on_target: int = 0
    resumed: bool = False
    kind: ClassVar[str] = "rollout_started"


@dataclass(frozen=True)
class PhaseChanged(Event):
    index: int = 0
    old_node: str = ""
    new_node: str = ""
    phase: str = ""
    previous: str = ""
    kind: ClassVar[str] = "phase_changed"


@dataclass(frozen=True)
class StepStarted(Event):
    index: int | None = None
    node: str = ""
    step: str = ""
    kind: ClassVar[str] = "step_started"


@dataclass(frozen=True)
class StepFinished(Event):
    index: int | None = None
    node: str = ""
    step: str = ""
    ok: bool = True
    duration: float = 0.0
    error: str = ""
    kind: ClassVar[str] = "step_finished"


@dataclass(frozen=True)
class Waiting(Event):
    """Emitted when what a replacement (or the rollout) waits for changes."""

    index: int | None = None
    node: str = ""
    reason: str = ""
    deadline: float | None = None
    kind: ClassVar[str] = "waiting"


@dataclass(frozen=True)
class ReplacementDone(Event):
    index: int = 0
    old_node: str = ""
    new_node: str = ""
    drain_timed_out: bool = False
    kind: ClassVar[str] = "replacement_done"


@dataclass(frozen=True)
class ReplacementFailed(Event):
    """A replacement failed a step; its restore starts now."""

    index: int = 0
    old_node: str = ""
    new_node: str = ""
    phase: str = ""
    error: str = ""
    kind: ClassVar[str] = "replacement_failed"


@dataclass(frozen=True)
class NodeRelaunched(Event):
    """A new node failed to boot; it is destroyed and another one launched."""

    index: int = 0
    old_node: str = ""
    failed_node: str = ""
    reason: str = ""
    kind: ClassVar[str] = "node_relaunched"


@dataclass(frozen=True)
class ReplacementRestored(Event):
    index: int = 0
    old_node: str = ""
    new_node: str = ""
    reason: str = ""
    kind: ClassVar[str] = "replacement_restored"


@dataclass(frozen=True)
class RetryScheduled(Event):
    """A restore or retire action failed and will be tried again."""

    index: int = 0
    node: str = ""
    step: str = ""
    attempt: int = 0
    retry_at: float = 0.0
    error: str = ""
    kind: ClassVar[str] = "retry_scheduled"


@dataclass(frozen=True)
class BatchDone(Event):
    batch: int = 0
    replaced: int = 0
    restored: int = 0
    kind: ClassVar[str] = "batch_done"


@dataclass(frozen=True)
class SoakVerdict(Event):
    batch: int = 0
    passed: bool = True
    rate_new: float = 0.0
    rate_old: float = 0.0
    flaps: int = 0
    seconds: float = 0.0
    reason: str = ""
    kind: ClassVar[str] = "soak_verdict"


@dataclass(frozen=True)
class RolloutFinished(Event):
    status: str = ""
    replaced: int = 0
    restored: int = 0
    skipped: int = 0
    duration: float = 0.0
    message: str = ""
    kind: ClassVar[str] = "rollout_finished"


@dataclass(frozen=True)
class NodeReaped(Event):
    """``rollout reap`` removed (or, dry run, would remove) a node or LB member."""

    node: str = ""
    what: str = ""  # "node" or "member"
    reason: str = ""
    dry_run: bool = False
    kind: ClassVar[str] = "node_reaped"


@dataclass(frozen=True)
class LeaseForceReleased(Event):
    """An operator released a pool's lease whose holder they know is dead.
    ``epoch`` is the new one: the old holder's writes are refused from now on."""

    key: str = ""
    by: str = ""
    holder: str = ""
    host: str = ""
    pid: int = 0
    epoch: int = 0
    kind: ClassVar[str] = "lease_force_released"


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        RolloutStarted,
        PhaseChanged,
        StepStarted,
        StepFinished,
        Waiting,
        ReplacementDone,
        ReplacementFailed,
        ReplacementRestored,
        NodeRelaunched,
        RetryScheduled,
        BatchDone,
        SoakVerdict,
        RolloutFinished,
        NodeReaped,
        LeaseForceReleased,
    )
}


def from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from :meth:`Event.to_dict` (the journal stores them so)."""
    fields = dict(data)
    cls = EVENT_TYPES.get(str(fields.pop("event", "")), Event)
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in fields.items() if k in known})
