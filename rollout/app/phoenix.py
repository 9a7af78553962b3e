"""``rollout phoenix``: replace nodes older than a max age with fresh nodes of
the image the pool already runs, through the same controller as a rollout.

Safe to run from cron, a systemd timer or a Jenkins cron trigger:

* it takes the pool's lease without waiting; when another controller holds
  it, the run is *skipped*;
* it skips when the pool has an unfinished rollout, when the pool is
  unhealthy (:func:`rollout.core.phoenix.pool_health_problem`, against the
  core's floor), outside the maintenance window, and when the per-day budget
  is spent;
* it is idempotent: which nodes are due depends only on the observed world,
  so a second run right after the first finds nothing older than the age.

The decisions are the core's (:mod:`rollout.core.phoenix`); the budget's
history is read from the journal: every replacement finished by an earlier
phoenix run of the pool. A run that replaced nodes ends like a rollout (the
session's post-run path: evidence, provider hook).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from rollout.app.session import Session
from rollout.app.workspace import Workspace
from rollout.core.batches import floor
from rollout.core.phoenix import (
    KIND,
    MaintenanceWindow,
    PhoenixBudget,
    PhoenixDecision,
    PhoenixStatus,
    parse_max_age,
    parse_window,
    phoenix_history,
    pool_health_problem,
    select_for_phoenix,
)
from rollout.engine.controller import RolloutResult
from rollout.errors import LockHeldError
from rollout.events import Event
from rollout.protocols import Clock


@dataclass(frozen=True)
class PhoenixReport:
    """How the run ended (``status``), and why (``reason``)."""

    status: PhoenixStatus
    reason: str
    decision: PhoenixDecision | None = None
    result: RolloutResult | None = None

    @property
    def skipped(self) -> bool:
        return self.status is PhoenixStatus.SKIPPED

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": "phoenix_report", "status": self.status.value,
                                "reason": self.reason}
        if self.decision is not None:
            data["plan"] = self.decision.to_json()
        if self.result is not None:
            data.update(rollout_id=self.result.id, replaced=list(self.result.replaced),
                        restored=list(self.result.restored))
        return data


def phoenix_run(ws: Workspace, role: str, *, max_age: float,
                window: MaintenanceWindow | None = None, budget: PhoenixBudget | None = None,
                on_event: Callable[[Event], None] = lambda e: None,
                stop_requested: Callable[[], bool] = lambda: False,
                clock: Clock | None = None) -> PhoenixReport:
    """One phoenix pass over the pool of ``role`` (see the module doc).

    Returns a report whose status is ``skipped`` for every reason a timer
    should just try again later; a failed replacement raises as a rollout does
    (RolloutFailed, RolloutHalted, Interrupted)."""
    skipped = PhoenixStatus.SKIPPED
    with Session(ws, role, clock=clock, on_event=on_event,
                 stop_requested=stop_requested) as session, ExitStack() as held:
        pool = session.pool
        try:
            held.enter_context(session.lease(wait=False))
        except LockHeldError as exc:
            return PhoenixReport(skipped, f"another controller holds the lock: {exc.message}")
        unfinished = session.journal.unfinished(pool.env, pool.role)
        if unfinished is not None:
            return PhoenixReport(
                skipped, f"rollout {unfinished.id} is unfinished ({unfinished.status.value});"
                f" resume or abort it first (`rollout status --role {role}`)")
        nodes, members = session.drivers.provider.list(), session.drivers.lb.members()
        problem = pool_health_problem(nodes, members, floor(pool.settings))
        if problem is not None:
            return PhoenixReport(skipped, f"the pool is unhealthy: {problem}")
        now = session.clock.now()
        history = phoenix_history(session.journal.rollouts(pool.env, pool.role), now)
        decision = select_for_phoenix(nodes, now=now, max_age=max_age, budget=budget,
                                      window=window, history=history)
        if not decision.allowed:
            return PhoenixReport(skipped, decision.reason, decision)
        if not decision.replace or decision.image_id is None:
            return PhoenixReport(PhoenixStatus.NOTHING_DUE, decision.reason, decision)
        image = session.drivers.images.get(decision.image_id)
        result = session.run(image, only=[n.name for n in decision.replace], kind=KIND)
        return PhoenixReport(PhoenixStatus.REPLACED, decision.reason, decision, result)


__all__ = ["MaintenanceWindow", "PhoenixBudget", "PhoenixReport", "PhoenixStatus",
           "parse_max_age", "parse_window", "phoenix_history", "phoenix_run"]
