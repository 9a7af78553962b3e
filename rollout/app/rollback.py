"""``rollout rollback --role R``: back to what the pool ran before.

Within a blue-green rollout's ``scale_down_delay`` the old (blue) pool is
still warm, so the rollback is one switch back:

- a live controller holds the pool (the ``run`` waiting out the delay): the
  rollback journals a ``rollback_requested`` event, which that controller
  honours within one loop pass, and waits for the rollout to end (on the
  controller's host the console script rings its doorbell first, see
  :mod:`rollout.entry`, and this path runs only when that falls back);
- nobody holds it (the ``run`` was killed): the rollback takes the pool's
  lease and switches back itself.

Otherwise it rolls out the image the pool's last succeeded rollout replaced,
through the pool's normal safe path (:func:`rollout.app.rollouts.run_rollout`).
With nothing to go back to it refuses (ConfigError, exit 2).
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Callable
from contextlib import closing

from rollout.app.rollouts import run_rollout
from rollout.app.session import EventSink, Session, open_journal
from rollout.app.workspace import Workspace
from rollout.clock import SystemClock
from rollout.core.bluegreen import rollback_refusal
from rollout.core.rollback import RollbackTarget, rollback_target
from rollout.core.state import RolloutStatus
from rollout.engine.controller import RolloutResult
from rollout.engine.result import rollback_outcome
from rollout.errors import ConfigError, LockHeldError
from rollout.events import RollbackRequested
from rollout.protocols import Clock
from rollout.store.journal import Journal
from rollout.store.lease import alive

#: How often a rollback that handed its request to the live controller looks
#: at the journal for the end of the rollout.
POLL_SECONDS = 0.05


def rollback_of(ws: Workspace, role: str) -> RollbackTarget | None:
    """Where ``rollout rollback --role ROLE`` would take the pool, or None."""
    pool = ws.pool(role)
    with closing(open_journal(ws)) as journal:
        states = journal.rollouts(pool.env, pool.role)
    return rollback_target(list(reversed(states)))


def rollback_pool(ws: Workspace, role: str, *, wait_lock: bool = False,
                  on_event: EventSink = lambda e: None,
                  stop_requested: Callable[[], bool] = lambda: False,
                  clock: Clock | None = None) -> RolloutResult:
    """Roll the pool of ``role`` back; see the module doc."""
    pool = ws.pool(role)
    # The switch back is timed from the command's start: one journal, and the
    # unfinished rollout read first, before any history.
    with closing(open_journal(ws)) as journal:
        unfinished = journal.unfinished(pool.env, pool.role)
        if unfinished is not None and rollback_refusal(unfinished) is None:
            lease = journal.lease_status(f"{pool.env}/{pool.role}")
            if lease is not None:
                if lease.host == socket.gethostname() and not alive(lease.pid):
                    raise LockHeldError(
                        f"pool {pool.env}/{role}: its lease is held by pid {lease.pid}, "
                        "which is no longer running", hint=f"`rollout unlock --role {role} "
                        "--force`, then `rollout rollback` again")
                t = pool.settings.timeouts
                patience = t.drain + t.lb_up + pool.settings.lease_ttl
                return _ask_holder(journal, unfinished.id, on_event, clock or SystemClock(),
                                   patience)
    target = rollback_of(ws, role)
    if target is None:
        raise ConfigError(
            f"pool {ws.env.name}/{role}: nothing to roll back to (no blue-green rollout in "
            "its scale_down_delay, no succeeded rollout that replaced an image)",
            hint=f"see `rollout history --role {role}`")
    if target.how == "previous_image":
        return run_rollout(ws, role, image_id=target.image_id, wait_lock=wait_lock,
                           on_event=on_event, stop_requested=stop_requested, clock=clock)
    with Session(ws, role, on_event=on_event, stop_requested=stop_requested,
                 clock=clock) as session, session.lease(wait=wait_lock):
        return session.rollback(target.rollout_id)


def _ask_holder(journal: Journal, rollout_id: str, on_event: EventSink,
                clock: Clock, patience: float) -> RolloutResult:
    """Journal the request for the live controller, then wait for the end
    (at most ``patience`` seconds: drain, LB rise and a lease's lifetime)."""
    by = f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}"
    event = RollbackRequested(rollout_id, clock.now(), by=by)
    journal.record(rollout_id, events=(event,))
    on_event(event)
    seen = 0
    deadline = clock.now() + patience
    while True:
        state = journal.get(rollout_id)
        news = journal.events(rollout_id)
        for later in news[seen:]:
            if later.kind != RollbackRequested.kind:
                on_event(later)
        seen = len(news)
        if not state.status.unfinished or state.status is not RolloutStatus.RUNNING:
            break
        if clock.now() > deadline:
            raise LockHeldError(
                f"rollout {state.id}: the controller holding the pool did not finish the "
                f"rollback within {patience:g}s", hint=f"see `rollout status --role "
                f"{state.role}`; if its process is gone, `rollout rollback` again once "
                "its lease expired")
        clock.sleep(POLL_SECONDS)
    return rollback_outcome(state, journal.wait_totals(state.id), clock.now())


__all__ = ["rollback_of", "rollback_pool"]
