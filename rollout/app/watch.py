"""``rollout watch``: follow a rollout that another process runs, read-only.

The watcher polls the state store (the rollout's row and its journaled events)
and hands each new event to a sink, the same events the running controller's
own output gets. It takes no lease and writes nothing, so it works from any
machine that reaches the store (with the shared PostgreSQL store, across
machines). It ends when the rollout stops running and ends like the rollout
did: the result of a success or an abort, or the same typed error (failed,
halted, interrupted) the controller raised, so the exit code is the rollout's.

A rollout still marked running whose pool lease nobody holds has lost its
controller (killed, crashed, its machine gone): after a grace of one lease TTL
the watcher says so and ends as halted (exit 4), pointing to ``resume``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing

from rollout import names
from rollout.app.session import EventSink, open_journal
from rollout.app.workspace import Workspace
from rollout.core.state import RolloutState, RolloutStatus
from rollout.engine.controller import RolloutResult
from rollout.engine.result import conclude
from rollout.errors import ConfigError, NotFoundError, RolloutHalted
from rollout.store.journal import Journal


def watch_rollout(ws: Workspace, *, rollout_id: str | None = None, role: str | None = None,
                  on_event: EventSink = lambda e: None, poll: float = 1.0,
                  sleep: Callable[[float], None] = time.sleep,
                  now: Callable[[], float] = time.time) -> RolloutResult:
    """Follow a rollout (``rollout_id``, or the unfinished one of ``role``)
    until it stops running; return its result or raise its error."""
    with closing(open_journal(ws)) as journal:
        state = _find(ws, journal, rollout_id, role)
        key = f"{state.env}/{state.role}"
        grace = ws.pool(state.role).settings.lease_ttl if state.role in ws.env.pools else 30.0
        seen = 0
        orphaned_since: float | None = None
        while True:
            events = journal.events(state.id)
            for event in events[seen:]:
                on_event(event)
            seen = len(events)
            if state.status is not RolloutStatus.RUNNING:
                return conclude(state, journal.wait_totals(state.id), now())
            if journal.lease_status(key) is None:
                orphaned_since = orphaned_since if orphaned_since is not None else now()
                if now() - orphaned_since >= grace:
                    raise RolloutHalted(
                        f"rollout {state.id} of {key} is marked running, but no controller "
                        f"has held the pool's lease for {grace:.0f}s: it was killed or crashed",
                        hint=f"`rollout resume --role {state.role}` reconciles and finishes it, "
                        f"`rollout abort --role {state.role}` restores the old nodes")
            else:
                orphaned_since = None
            sleep(poll)
            state = journal.get(state.id)


def _find(ws: Workspace, journal: Journal, rollout_id: str | None,
          role: str | None) -> RolloutState:
    if rollout_id is not None:
        names.rollout_id(rollout_id, "ROLLOUT_ID")
        state = journal.get(rollout_id)
        if state.env != ws.env.name:
            raise ConfigError(f"rollout {rollout_id} belongs to environment {state.env!r}, "
                              f"not {ws.env.name!r}", hint=f"pass --env {state.env}")
        return state
    if role is None:
        raise ConfigError("name the rollout: `rollout watch ID` or `rollout watch --role ROLE`")
    pool = ws.pool(role)
    state_or_none = journal.unfinished(pool.env, pool.role)
    if state_or_none is None:
        raise NotFoundError(f"{pool.env}/{pool.role} has no running rollout to watch",
                            hint=f"see `rollout history --role {role}`; "
                            f"`rollout show ID` shows a finished one")
    return state_or_none


__all__ = ["watch_rollout"]
