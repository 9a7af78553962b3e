"""Typed progress events. The controller hands each one to a sink (a callable);
the CLI prints ``text()`` for people (in ``style`` on a TTY) or ``to_dict()``
as JSON, one per line.

Every event has ``kind`` (a stable string, the JSON ``event`` field), the
``rollout_id`` and ``at`` (clock time, seconds since the epoch). ``text()`` is
one human line, or None for events too chatty to show.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from rollout.model import FailureKind


@dataclass(frozen=True)
class Event:
    rollout_id: str
    at: float

    kind: ClassVar[str] = "event"
    #: How a terminal shows ``text()`` (a rich style), or None for plain.
    style: ClassVar[str | None] = None

    def text(self) -> str | None:
        """One line for people, or None when the event is not worth a line."""
        return None

    def to_dict(self) -> dict[str, Any]:
        """``{"event": kind}`` and the fields, as :func:`dataclasses.asdict`
        gives them. Events are nearly all scalars, and the journal converts
        ~10 per pass of the controller, so scalars are taken as they are
        rather than through asdict's deep copy of each."""
        data: dict[str, Any] = {"event": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            data[f.name] = value if isinstance(value, _SCALARS) else _plain(value)
        return data

    def to_json(self) -> str:
        """One line of JSON, for ``--output json``."""
        return json.dumps(self.to_dict(), sort_keys=False, default=str)


EventSink = Callable[[Event], None]

#: Immutable values asdict would return as they are (its deep copy of each is
#: the value itself).
_SCALARS = (str, int, float, bool, type(None), enum.Enum)


def _plain(value: Any) -> Any:
    """``value`` as :func:`dataclasses.asdict` converts a field's value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*[_plain(v) for v in value])
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return type(value)((_plain(k), _plain(v)) for k, v in value.items())
    return value if isinstance(value, _SCALARS) else copy.deepcopy(value)


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

    def text(self) -> str:
        verb = "resuming" if self.resumed else "rolling"
        return (f"{verb} {self.env}/{self.role} to {self.target_version} ({self.target_image}): "
                f"{self.replacements} node(s) in {self.batches} batch(es), "
                f"{self.already_on_target} already on target, strategy {self.strategy}")


@dataclass(frozen=True)
class PhaseChanged(Event):
    index: int = 0
    old_node: str = ""
    new_node: str = ""
    phase: str = ""
    previous: str = ""
    kind: ClassVar[str] = "phase_changed"

    def text(self) -> str:
        return f"  [{self.index}] {self.old_node} -> {self.new_node}: {self.phase}"


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

    def text(self) -> str | None:
        return None if self.ok else f"  step {self.step} on {self.node} failed: {self.error}"


@dataclass(frozen=True)
class Waiting(Event):
    """Emitted when what a replacement (or the rollout) waits for changes."""

    index: int | None = None
    node: str = ""
    reason: str = ""
    deadline: float | None = None
    kind: ClassVar[str] = "waiting"

    def text(self) -> str | None:
        return f"  waiting: {self.node or 'rollout'}: {self.reason}" if self.reason else None


@dataclass(frozen=True)
class ReplacementDone(Event):
    index: int = 0
    old_node: str = ""
    new_node: str = ""
    drain_timed_out: bool = False
    kind: ClassVar[str] = "replacement_done"
    style: ClassVar[str | None] = "green"

    def text(self) -> str:
        late = " (drain timed out)" if self.drain_timed_out else ""
        return f"  replaced {self.old_node} with {self.new_node}{late}"


@dataclass(frozen=True)
class ReplacementFailed(Event):
    """A replacement failed a step; its restore starts now. ``failure_kind``
    says what it failed at (None in events journaled before it existed)."""

    index: int = 0
    old_node: str = ""
    new_node: str = ""
    phase: str = ""
    error: str = ""
    failure_kind: FailureKind | None = None
    kind: ClassVar[str] = "replacement_failed"
    style: ClassVar[str | None] = "bold red"

    def __post_init__(self) -> None:
        # Rebuilt from JSON (the journal), the kind arrives as its string value.
        if self.failure_kind is not None and not isinstance(self.failure_kind, FailureKind):
            object.__setattr__(self, "failure_kind", FailureKind(self.failure_kind))

    def text(self) -> str:
        return (f"  FAILED {self.new_node} in {self.phase}: {self.error}; "
                f"restoring {self.old_node}")


@dataclass(frozen=True)
class NodeRelaunched(Event):
    """A new node failed to boot; it is destroyed and another one launched."""

    index: int = 0
    old_node: str = ""
    failed_node: str = ""
    reason: str = ""
    kind: ClassVar[str] = "node_relaunched"

    def text(self) -> str:
        return f"  {self.failed_node} failed to boot ({self.reason}): launching another"


@dataclass(frozen=True)
class ReplacementRestored(Event):
    index: int = 0
    old_node: str = ""
    new_node: str = ""
    reason: str = ""
    kind: ClassVar[str] = "replacement_restored"
    style: ClassVar[str | None] = "yellow"

    def text(self) -> str:
        return f"  restored {self.old_node} (removed {self.new_node}): {self.reason}"


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

    def text(self) -> str:
        return (f"  retrying {self.step} on {self.node} (attempt {self.attempt}): "
                f"{self.error}")


@dataclass(frozen=True)
class BatchDone(Event):
    batch: int = 0
    replaced: int = 0
    restored: int = 0
    kind: ClassVar[str] = "batch_done"

    def text(self) -> str:
        return (f"batch {self.batch} done: {self.replaced} replaced, "
                f"{self.restored} restored")


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
    style: ClassVar[str | None] = "cyan"

    def text(self) -> str:
        verdict = "passed" if self.passed else f"FAILED: {self.reason}"
        return (f"canary soak {verdict} (5xx rate new {self.rate_new:.4f} vs old "
                f"{self.rate_old:.4f}, flaps {self.flaps})")


@dataclass(frozen=True)
class AnalysisMeasured(Event):
    """One measurement of an analysis (journaled, printed by ``rollout show``)."""

    analysis: str = ""
    outcome: str = ""  # successful, failed or inconclusive
    result: float | None = None
    baseline: float | None = None
    detail: str = ""
    measured_at: float = 0.0
    kind: ClassVar[str] = "analysis_measured"

    def text(self) -> str:
        value = "no value" if self.result is None else f"result {self.result:.4g}"
        if self.baseline is not None:
            value += f", baseline {self.baseline:.4g}"
        return f"analysis {self.analysis}: {self.outcome} ({value}; {self.detail})"


@dataclass(frozen=True)
class AnalysisVerdict(Event):
    """An analysis as a whole: passed, failed or inconclusive."""

    analysis: str = ""
    verdict: str = ""
    measurements: int = 0
    reason: str = ""
    kind: ClassVar[str] = "analysis_verdict"
    style: ClassVar[str | None] = "cyan"

    def text(self) -> str:
        tail = f": {self.reason}" if self.reason else ""
        return (f"analysis {self.analysis} {self.verdict} after {self.measurements} "
                f"measurement(s){tail}")


@dataclass(frozen=True)
class RolloutFinished(Event):
    status: str = ""
    replaced: int = 0
    restored: int = 0
    skipped: int = 0
    duration: float = 0.0
    message: str = ""
    kind: ClassVar[str] = "rollout_finished"
    style: ClassVar[str | None] = "bold"

    def text(self) -> str:
        return (f"rollout {self.rollout_id} {self.status}: {self.replaced} replaced, "
                f"{self.restored} restored, {self.skipped} skipped in {self.duration:.1f}s"
                + (f": {self.message}" if self.message else ""))


@dataclass(frozen=True)
class NodeReaped(Event):
    """``rollout reap`` removed (or, dry run, would remove) a node or LB member."""

    node: str = ""
    what: str = ""  # "node" or "member"
    reason: str = ""
    dry_run: bool = False
    kind: ClassVar[str] = "node_reaped"

    def text(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return f"{verb} {self.what} {self.node}: {self.reason}"


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

    def text(self) -> str:
        return (f"{self.key}: lease of {self.holder} (host {self.host}, pid {self.pid}) "
                f"released by {self.by}; new epoch {self.epoch}, the old holder is "
                "fenced out")


# --- blue-green (rollout.core.bluegreen) ---------------------------------------


@dataclass(frozen=True)
class SideChosen(Event):
    """A blue-green rollout chose which pool takes the traffic, and why (also
    on resume, where it says which side it converges to)."""

    side: str = ""  # "blue" or "green"
    reason: str = ""
    kind: ClassVar[str] = "side_chosen"
    style: ClassVar[str | None] = "bold"

    def text(self) -> str:
        return f"traffic to {self.side}: {self.reason}"


@dataclass(frozen=True)
class TrafficSwitched(Event):
    """The load balancer was seen with every node of ``side`` in service and
    the other side drained."""

    side: str = ""
    nodes: tuple[str, ...] = ()
    kind: ClassVar[str] = "traffic_switched"
    style: ClassVar[str | None] = "bold"

    def text(self) -> str:
        return f"all traffic on {self.side}: {', '.join(self.nodes)}"


@dataclass(frozen=True)
class RollbackRequested(Event):
    """``rollout rollback`` asked the controller that holds the pool to switch
    back to the warm blue pool; journaled, honoured within one loop pass."""

    by: str = ""
    kind: ClassVar[str] = "rollback_requested"

    def text(self) -> str:
        return f"rollback requested by {self.by}"


@dataclass(frozen=True)
class RolledBack(Event):
    """The rollout's post-rollout window failed and rollout ``by`` rolled the
    pool back to ``image`` (:mod:`rollout.core.window`)."""

    by: str = ""
    image: str = ""
    kind: ClassVar[str] = "rolled_back"
    style: ClassVar[str | None] = "yellow"

    def text(self) -> str:
        return f"rollout {self.rollout_id} rolled back to {self.image} by rollout {self.by}"


# --- canary steps and pause gates ----------------------------------------------


@dataclass(frozen=True)
class CanaryStepStarted(Event):
    """The canary batch began step ``step`` (0-based) of ``canary_steps``."""

    step: int = 0
    steps: int = 0
    description: str = ""
    kind: ClassVar[str] = "canary_step"
    style: ClassVar[str | None] = "cyan"

    def text(self) -> str:
        return f"canary step {self.step + 1}/{self.steps}: {self.description}"


@dataclass(frozen=True)
class RolloutPaused(Event):
    """The rollout holds at a step boundary until ``rollout continue``
    (``held``), or a ``rollout pause`` asked it to at the next one."""

    reason: str = ""
    held: bool = True
    kind: ClassVar[str] = "rollout_paused"
    style: ClassVar[str | None] = "yellow"

    def text(self) -> str:
        what = "paused" if self.held else "will pause"
        return f"rollout {self.rollout_id} {what}: {self.reason}"


@dataclass(frozen=True)
class RolloutContinued(Event):
    """``rollout continue`` ended a pause that lasted ``waited`` seconds."""

    by: str = ""
    waited: float = 0.0
    kind: ClassVar[str] = "rollout_continued"

    def text(self) -> str:
        who = f" by {self.by}" if self.by else ""
        return f"rollout {self.rollout_id} continued{who} after {self.waited:.0f}s paused"


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
        AnalysisMeasured,
        AnalysisVerdict,
        RolloutFinished,
        NodeReaped,
        LeaseForceReleased,
        SideChosen,
        TrafficSwitched,
        RollbackRequested,
        RolledBack,
        CanaryStepStarted,
        RolloutPaused,
        RolloutContinued,
    )
}


def from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from :meth:`Event.to_dict` (the journal stores them so)."""
    fields = dict(data)
    cls = EVENT_TYPES.get(str(fields.pop("event", "")), Event)
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in fields.items() if k in known})
