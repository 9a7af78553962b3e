"""Rows <-> the core's state objects, the same for every engine.

The columns hold what the queries filter on (status, pool, phase); the rest
of a rollout's state is one JSON blob, ``state_json``, compared as a whole to
tell whether a save has anything to write.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import RowMapping

from rollout.config import PoolSettings
from rollout.core.bluegreen_state import BlueGreen
from rollout.core.state import (
    Counters,
    Gate,
    Phase,
    Replacement,
    RestoreReason,
    RolloutState,
    RolloutStatus,
    Soak,
)
from rollout.core.window_state import Window
from rollout.model import FailureKind, Image

Row = RowMapping


def state_json(state: RolloutState) -> str:
    soak = state.soak
    # status and finished_at have columns of their own; they are in here too so
    # that a change of either alone is seen as a change by save().
    return json.dumps({
        "status": state.status.value, "finished_at": state.finished_at,
        "last_progress": state.last_progress,
        "soak": None if soak is None else {
            "batch": soak.batch, "started": soak.started,
            "baseline": {t: [c.total, c.http_5xx, c.check_downs]
                         for t, c in soak.baseline.items()},
        },
        "soaked": state.soaked, "stopping": state.stopping, "aborting": state.aborting,
        "failing": state.failing, "halted": state.halted,
        "batches_done": sorted(state.batches_done),
        "skipped_nodes": list(state.skipped_nodes), "message": state.message,
        "kind": state.kind, "hooks_done": sorted(state.hooks_done),
        "blue_green": None if state.blue_green is None else state.blue_green.to_json(),
        "gate": _gate_json(state.gate),
        "window": state.window.to_json(),
    }, sort_keys=True)


def _gate_json(gate: Gate) -> dict[str, Any] | None:
    """The canary steps' position and the pause gate; None when untouched, so
    rollouts without either keep the blob they always had."""
    return None if gate == Gate() else dataclasses.asdict(gate)


def _gate(data: dict[str, Any] | None) -> Gate:
    if data is None:
        return Gate()
    return Gate(**{**data, "weighted": tuple(data.get("weighted", ()))})


def rollout_values(state: RolloutState, pid: int | None, host: str | None) -> dict[str, Any]:
    """The ``rollouts`` row of a new rollout."""
    return {
        "id": state.id, "env": state.env, "role": state.role,
        "target_image_id": state.target.id, "target_version": state.target.version,
        "target_json": json.dumps(dataclasses.asdict(state.target)),
        "previous_images": json.dumps(list(state.previous_images)),
        "strategy": state.settings.strategy, "settings_json": state.settings.model_dump_json(),
        "status": state.status.value, "pid": pid, "host": host,
        "started_at": state.started_at, "finished_at": state.finished_at,
        "state_json": state_json(state),
    }


def replacement_values(rollout_id: str, r: Replacement) -> dict[str, Any]:
    """The ``replacements`` row of one replacement."""
    return {
        "rollout_id": rollout_id, "idx": r.index, "batch": r.batch, "old_name": r.old_name,
        "old_target": r.old_target, "old_image_id": r.old_image_id, "new_name": r.new_name,
        "new_target": r.new_target, "phase": r.phase.value, "phase_started": r.phase_started,
        "attempt": r.attempt, "error": r.error,
        "restore_reason": r.restore_reason.value if r.restore_reason else None,
        "retries": r.retries, "retry_at": r.retry_at, "drain_timed_out": int(r.drain_timed_out),
        "waiting": r.waiting, "entered_json": json.dumps(dict(r.entered), sort_keys=True),
        "relaunches": r.relaunches, "failure_kind": r.failure.value if r.failure else None,
    }


def replacement(row: Row) -> Replacement:
    reason, failure = row["restore_reason"], row["failure_kind"]
    return Replacement(
        index=row["idx"], batch=row["batch"], old_name=row["old_name"],
        old_target=row["old_target"], old_image_id=row["old_image_id"],
        new_name=row["new_name"], phase=Phase(row["phase"]), phase_started=row["phase_started"],
        attempt=row["attempt"], new_target=row["new_target"], error=row["error"],
        restore_reason=RestoreReason(reason) if reason else None, retries=row["retries"],
        retry_at=row["retry_at"], drain_timed_out=bool(row["drain_timed_out"]),
        waiting=row["waiting"], entered=json.loads(row["entered_json"]),
        relaunches=row["relaunches"], failure=FailureKind(failure) if failure else None,
    )


def rollout_state(row: Row, reps: Sequence[Row]) -> RolloutState:
    """A rollout read back; KeyError, TypeError or ValueError if it cannot be."""
    extra = json.loads(row["state_json"])
    soak = extra.get("soak")
    return RolloutState(
        id=row["id"], env=row["env"], role=row["role"],
        target=Image(**json.loads(row["target_json"])),
        settings=PoolSettings.model_validate_json(row["settings_json"]),
        replacements=tuple(replacement(r) for r in reps),
        started_at=row["started_at"], status=RolloutStatus(row["status"]),
        finished_at=row["finished_at"], last_progress=extra["last_progress"],
        soak=None if soak is None else Soak(
            soak["batch"], soak["started"],
            {t: Counters(*c) for t, c in soak["baseline"].items()},
        ),
        soaked=extra["soaked"], stopping=extra["stopping"], aborting=extra["aborting"],
        failing=extra["failing"], halted=extra["halted"],
        batches_done=frozenset(extra["batches_done"]),
        skipped_nodes=tuple(extra["skipped_nodes"]),
        previous_images=tuple(json.loads(row["previous_images"])),
        message=extra["message"], kind=extra.get("kind", "rollout"),
        hooks_done=frozenset(extra.get("hooks_done", ())),
        blue_green=BlueGreen.from_json(bg) if (bg := extra.get("blue_green")) else None,
        gate=_gate(extra.get("gate")),
        window=Window.from_json(extra.get("window")),
    )
