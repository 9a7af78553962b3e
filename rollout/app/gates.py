"""``rollout pause`` and ``rollout continue``: requests queued in the store
for the controller of a running rollout (see :mod:`rollout.store.requests`).

Neither takes the pool's lease: the controller holding it acts on the
request at its next pass, and journals what it did.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from contextlib import closing
from typing import Any

from rollout.app.rollouts import rollout_role
from rollout.app.session import open_journal
from rollout.app.workspace import Workspace
from rollout.core.state import RolloutState, RolloutStatus
from rollout.errors import ConfigError, NotFoundError
from rollout.store.journal import Journal
from rollout.store.requests import RequestKind


def _target(ws: Workspace, journal: Journal, role: str | None,
            rollout_id: str | None, verb: str) -> RolloutState:
    role = rollout_role(ws, role, rollout_id)
    pool = ws.pool(role)
    if rollout_id is not None:
        state = journal.get(rollout_id)
    else:
        found = journal.unfinished(pool.env, pool.role)
        if found is None:
            raise NotFoundError(f"pool {pool.env}/{pool.role} has no unfinished rollout to "
                                f"{verb}", hint="see `rollout status`")
        state = found
    if not state.status.unfinished:
        raise ConfigError(f"rollout {state.id} is {state.status.value}; nothing to {verb}",
                          hint=f"see `rollout show {state.id}`")
    return state


def request_gate(ws: Workspace, kind: RequestKind, *, role: str | None = None,
                 rollout_id: str | None = None) -> dict[str, Any]:
    """Queue ``kind`` for the rollout (by id, or the pool's unfinished one).
    ``continue`` is refused (ConfigError, exit 2) for a rollout that is neither
    paused nor asked to pause: there is nothing to move past."""
    by = f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}"
    with closing(open_journal(ws)) as journal:
        state = _target(ws, journal, role, rollout_id, kind.value)
        gate = state.gate
        if kind is RequestKind.CONTINUE and not (gate.paused or gate.hold):
            raise ConfigError(f"rollout {state.id} is not paused; nothing to continue",
                              hint=f"see `rollout status --role {state.role}`")
        request_id = journal.request(state.id, kind, by=by, at=time.time())
    running = state.status is RolloutStatus.RUNNING
    return {"rollout_id": state.id, "request": kind.value, "request_id": request_id, "by": by,
            "note": "" if running else f"rollout {state.id} is {state.status.value}: its "
            f"controller acts on the request once `rollout resume {state.id}` runs"}


def pause_rollout(ws: Workspace, *, role: str | None = None,
                  rollout_id: str | None = None) -> dict[str, Any]:
    """``rollout pause``: hold the rollout at its next step boundary."""
    return request_gate(ws, RequestKind.PAUSE, role=role, rollout_id=rollout_id)


def continue_rollout(ws: Workspace, *, role: str | None = None,
                     rollout_id: str | None = None) -> dict[str, Any]:
    """``rollout continue``: end a pause (and a ``pause: {}`` canary step)."""
    return request_gate(ws, RequestKind.CONTINUE, role=role, rollout_id=rollout_id)


__all__ = ["continue_rollout", "pause_rollout", "request_gate"]
