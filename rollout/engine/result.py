"""What a finished drive of the controller returns, or raises: the rollout's
result for a succeeded run, a typed error naming the next step otherwise."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rollout.core.state import Phase, RestoreReason, RolloutState, RolloutStatus
from rollout.errors import ConfigError, Interrupted, RolloutFailed, RolloutHalted


@dataclass(frozen=True)
class RolloutResult:
    id: str
    status: RolloutStatus
    replaced: tuple[str, ...]  # old nodes now gone, replaced by new ones
    restored: tuple[str, ...]  # old nodes put back after a failure, abort or canary
    not_replaced: tuple[str, ...]  # skipped or still pending
    already_on_target: tuple[str, ...]
    wall: float
    waits: dict[str, float] = field(default_factory=dict)
    message: str = ""

    @property
    def overhead(self) -> float | None:
        """Wall time ÷ the irreducible waits (boot, smoke, lb_rise, drain, soak)."""
        total = sum(self.waits.values())
        return self.wall / total if total > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-able data (the doorbell's end, :meth:`from_dict`)."""
        data = dataclasses.asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutResult:
        return cls(id=data["id"], status=RolloutStatus(data["status"]),
                   replaced=tuple(data["replaced"]), restored=tuple(data["restored"]),
                   not_replaced=tuple(data["not_replaced"]),
                   already_on_target=tuple(data["already_on_target"]), wall=data["wall"],
                   waits=dict(data["waits"]), message=data["message"])


def conclude(state: RolloutState, waits: dict[str, float], now: float) -> RolloutResult:
    """The result of a rollout that stopped running: returned when it
    succeeded (or was aborted), raised as RolloutFailed (exit 1), RolloutHalted
    (4) or Interrupted (130) otherwise."""
    reps = state.replacements
    result = RolloutResult(
        id=state.id, status=state.status,
        replaced=tuple(r.old_name for r in reps if r.phase is Phase.DONE),
        restored=tuple(r.old_name for r in reps if r.phase is Phase.RESTORED),
        not_replaced=tuple(r.old_name for r in reps
                           if r.phase in (Phase.SKIPPED, Phase.PENDING)),
        already_on_target=state.skipped_nodes,
        wall=(state.finished_at or now) - state.started_at,
        waits=waits, message=state.message,
    )
    where = f"rollout {state.id} of {state.env}/{state.role}"
    role = state.role
    if state.status is RolloutStatus.FAILED:
        restored = ", ".join(result.restored) or "none"
        # Say why, not only that the budget ran out: the first failure's cause.
        first = next((r.error for r in reps if r.restore_reason is RestoreReason.FAILED
                      and r.error and r.error not in state.message), None)
        cause = f"; first failure: {first}" if first else ""
        raise RolloutFailed(f"{where} failed: {state.message}{cause} "
                            f"(restored: {restored})", hint=f"see `rollout show {state.id}`")
    if state.status is RolloutStatus.HALTED:
        raise RolloutHalted(f"{where} halted: {state.message}",
                            hint=f"fix the cause, then `rollout resume --role {role}`, "
                            f"or `rollout abort --role {role}` to restore the old nodes")
    if state.status is RolloutStatus.INTERRUPTED:
        raise Interrupted(f"{where} was interrupted; in-flight nodes were restored",
                          hint=f"`rollout resume --role {role}` continues it, "
                          f"`rollout abort --role {role}` restores the old nodes")
    return result


def rollback_outcome(state: RolloutState, waits: dict[str, float], now: float,
                     ) -> RolloutResult:
    """What `rollout rollback` reports when the live controller it asked ended
    the rollout: :func:`conclude`, except that a rollout that succeeded (blue
    retired before the request was seen) refuses the rollback (exit 2)."""
    if state.status is RolloutStatus.SUCCEEDED:
        raise ConfigError(
            f"rollout {state.id} finished (blue retired) before it saw the rollback "
            "request", hint=f"`rollout rollback --role {state.role}` again rolls out "
            "the previous image")
    return conclude(state, waits, now)
