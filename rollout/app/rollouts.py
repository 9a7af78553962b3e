"""``rollout run``, ``resume``, ``abort`` and ``reap``, as plain functions over a
:class:`~rollout.app.workspace.Workspace`.

The CLI packs options and calls these; a Jenkins step or a test can call them
directly. Everything is validated before the first side effect: the pool's
settings and overrides, the target image, the promotion rule, the plan against
the floor. Then the pool's lease is taken and the controller runs under it,
through a :class:`~rollout.app.session.Session`.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from rollout import names
from rollout.app import post_rollout
from rollout.app.history import lease_summary
from rollout.app.plan import plan_for_session, refuse_over_lb
from rollout.app.session import EventSink, Reports, Session, open_journal, resolve_target
from rollout.app.workspace import Workspace
from rollout.engine.controller import RolloutResult
from rollout.engine.reap import ReapReport
from rollout.errors import ConfigError, RolloutFailed
from rollout.events import LeaseForceReleased
from rollout.model import Image
from rollout.protocols import Clock
from rollout.store.lease import alive


def run_rollout(ws: Workspace, role: str, *, version: str | None = None,
                image_id: str | None = None, overrides: Mapping[str, Any] | None = None,
                wait_lock: bool = False, junit: Path | None = None,
                metrics_file: Path | None = None, on_event: EventSink = lambda e: None,
                stop_requested: Callable[[], bool] = lambda: False,
                clock: Clock | None = None, allow_below_floor: bool = False) -> RolloutResult:
    """Roll the pool of ``role`` onto the target image.

    A plan that would leave fewer nodes in service than the pool's floor is
    refused (ConfigError, exit 2) unless ``allow_below_floor``, which lowers
    the floor to the plan's lowest step for this rollout only."""
    with Session(ws, role, overrides=overrides, clock=clock, on_event=on_event,
                 stop_requested=stop_requested,
                 reports=Reports(junit=junit, metrics_file=metrics_file)) as session:
        target = resolve_target(session.drivers.images, role, version=version,
                                image_id=image_id)
        session.check_promotion(target)
        _check_plan(session, target, allow_below_floor)
        with session.lease(wait=wait_lock):
            try:
                return session.run(target)
            except RolloutFailed:
                # A failed post-rollout window rolls the pool back, still under the lease.
                latest = session.journal.history(session.pool.env, session.pool.role, limit=1)
                if latest and latest[0].state.target.id == target.id:
                    post_rollout.roll_back_if_due(session, latest[0].state.id,
                                                  lambda image: _rollback_run(session, image))
                raise


def _check_plan(session: Session, target: Image, allow_below_floor: bool) -> None:
    """Refuse a plan the LB cannot hold, or one below the floor (unless allowed)."""
    plan = plan_for_session(session, target)
    refuse_over_lb(plan)
    if plan.breaches_floor:
        if not allow_below_floor:
            raise ConfigError(
                f"refusing to run: {plan.floor_message()}",
                hint=f"see `rollout plan --role {session.pool.role}`; bring the pool back to "
                "full strength first, or pass --allow-below-floor to accept the lower "
                "capacity",
            )
        session.override(plan.below_floor_overrides())


def _rollback_run(session: Session, image: Image) -> RolloutResult:
    """The automatic rollback after a failed post-rollout window: the image the
    pool ran before (no promotion check: it ran here), same plan checks."""
    _check_plan(session, image, allow_below_floor=False)
    return session.run(image, kind="rollback")


def resume_rollout(ws: Workspace, *, role: str | None = None, rollout_id: str | None = None,
                   wait_lock: bool = False, on_event: EventSink = lambda e: None,
                   stop_requested: Callable[[], bool] = lambda: False) -> RolloutResult:
    """Reconcile an unfinished rollout with the world, then finish it."""
    role = rollout_role(ws, role, rollout_id)
    with Session(ws, role, on_event=on_event, stop_requested=stop_requested) as session, \
            session.lease(wait=wait_lock):
        return session.resume(rollout_id)


def abort_rollout(ws: Workspace, *, role: str | None = None, rollout_id: str | None = None,
                  wait_lock: bool = False, on_event: EventSink = lambda e: None,
                  stop_requested: Callable[[], bool] = lambda: False) -> RolloutResult:
    """Stop an unfinished rollout and put its old nodes back in service."""
    role = rollout_role(ws, role, rollout_id)
    with Session(ws, role, on_event=on_event, stop_requested=stop_requested) as session, \
            session.lease(wait=wait_lock):
        return session.abort(rollout_id)


def reap_pool(ws: Workspace, role: str, *, dry_run: bool = False, wait_lock: bool = False,
              on_event: EventSink = lambda e: None) -> ReapReport:
    """Remove nodes and LB members that rollouts created but no journal owns."""
    with Session(ws, role, on_event=on_event) as session, session.lease(wait=wait_lock):
        return session.reap(dry_run=dry_run)


def pool_lease(ws: Workspace, role: str) -> dict[str, Any] | None:
    """The pool's lease as ``status`` shows it (None when free), plus
    ``alive_here``: whether the holder is a live process of this host (None
    when it runs on another host, which this host cannot tell)."""
    pool = ws.pool(role)
    with closing(open_journal(ws)) as journal:
        lease = journal.lease_status(f"{pool.env}/{pool.role}")
    if lease is None:
        return None
    here = lease.host == socket.gethostname()
    return lease_summary(lease) | {"alive_here": alive(lease.pid) if here else None}


def unlock_pool(ws: Workspace, role: str, *,
                on_event: EventSink = lambda e: None) -> LeaseForceReleased | None:
    """Release the pool's lease whoever holds it (``rollout unlock --force``),
    for an operator who knows the holder is dead. The lease's epoch goes up, so
    a holder that was only frozen is fenced out when it thaws; the release is
    journaled with who did it. None if the lease was free."""
    pool = ws.pool(role)
    key = f"{pool.env}/{pool.role}"
    by = f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}"
    with closing(open_journal(ws)) as journal:
        old = journal.force_release(key, by=by)
    if old is None:
        return None
    # The store journaled the same event, stamped by its own clock.
    event = LeaseForceReleased("", time.time(), key=key, by=by, holder=old.holder,
                               host=old.host, pid=old.pid, epoch=old.epoch + 1)
    on_event(event)
    return event


def rollout_role(ws: Workspace, role: str | None, rollout_id: str | None) -> str:
    """The pool role of a resume or abort: ``--role``, or the rollout's own."""
    if rollout_id is not None:
        names.rollout_id(rollout_id, "ROLLOUT_ID")
        with closing(open_journal(ws)) as journal:
            state = journal.get(rollout_id)
        if state.env != ws.env.name:
            raise ConfigError(
                f"rollout {rollout_id} belongs to environment {state.env!r}, not "
                f"{ws.env.name!r}", hint=f"pass --env {state.env}")
        if role is not None and role != state.role:
            raise ConfigError(f"rollout {rollout_id} is of role {state.role!r}, not {role!r}")
        role = state.role
    if role is None:
        raise ConfigError("name the pool with --role ROLE, or give a rollout ID")
    return role


__all__ = ["RolloutResult", "abort_rollout", "pool_lease", "reap_pool", "resume_rollout",
           "rollout_role", "run_rollout", "unlock_pool"]
