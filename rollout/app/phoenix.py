"""``rollout phoenix``: replace nodes older than a max age with fresh nodes of
the image the pool already runs, through the same controller as a rollout.

Safe to run from cron, a systemd timer or a Jenkins cron trigger:

* it takes the pool's lease without waiting; when another controller holds
  it, the run is *skipped*;
* it skips when the pool has an unfinished rollout, when the pool is
  unhealthy (:func:`rollout.core.phoenix.pool_health_problem`), outside the
  maintenance window, and when the per-day budget is spent;
* it is idempotent: which nodes are due depends only on the observed world,
  so a second run right after the first finds nothing older than the age.

The budget's history is read from the journal: every replacement finished
by an earlier phoenix run (``RolloutState.kind == "phoenix"``) of the pool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rollout.core.phoenix import (
    DAY_SECONDS,
    MaintenanceWindow,
    PhoenixBudget,
    PhoenixDecision,
    pool_health_problem,
    select_for_phoenix,
)
from rollout.core.state import Phase, RolloutState
from rollout.engine.controller import RolloutResult
from rollout.errors import LockHeldError
from rollout.events import Event
from rollout.protocols import Clock
from rollout.store.lease import Lease

if TYPE_CHECKING:
    from rollout.app.workspace import Workspace

KIND = "phoenix"


@dataclass(frozen=True)
class PhoenixReport:
    """``status``: ``skipped`` (see ``reason``), ``nothing_due`` or ``replaced``."""

    status: str
    reason: str
    decision: PhoenixDecision | None = None
    result: RolloutResult | None = None

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": "phoenix_report", "status": self.status,
                                "reason": self.reason}
        if self.decision is not None:
            data["plan"] = self.decision.to_json()
        if self.result is not None:
            data.update(rollout_id=self.result.id, replaced=list(self.result.replaced),
                        restored=list(self.result.restored))
        return data


def phoenix_history(rollouts: Sequence[RolloutState], now: float) -> list[float]:
    """When earlier phoenix runs finished replacing nodes, within the last day."""
    times = []
    for state in rollouts:
        if state.kind != KIND:
            continue
        for rep in state.replacements:
            if rep.phase is Phase.DONE:
                at = rep.entered.get(Phase.DONE.value, state.finished_at or state.started_at)
                if now - DAY_SECONDS < at <= now:
                    times.append(at)
    return sorted(times)


def phoenix_run(ws: Workspace, role: str, *, max_age: float,
                window: MaintenanceWindow | None = None, budget: PhoenixBudget | None = None,
                on_event: Callable[[Event], None] = lambda e: None,
                stop_requested: Callable[[], bool] = lambda: False,
                clock: Clock | None = None) -> PhoenixReport:
    """One phoenix pass over the pool of ``role`` (see the module doc).

    Returns a report whose status is ``skipped`` for every reason a timer
    should just try again later; a failed replacement raises as a rollout does
    (RolloutFailed, RolloutHalted, Interrupted)."""
    from rollout.app.operations import open_session, record_evidence

    session = open_session(ws, role, clock=clock)
    pool = session.pool
    lease = Lease(session.journal, f"{pool.env}/{pool.role}", ttl=30.0)
    try:
        lease.acquire(wait=False)
    except LockHeldError as exc:
        return PhoenixReport("skipped", f"another controller holds the lock: {exc.message}")
    with lease:
        unfinished = session.journal.unfinished(pool.env, pool.role)
        if unfinished is not None:
            return PhoenixReport(
                "skipped", f"rollout {unfinished.id} is unfinished ({unfinished.status.value});"
                f" resume or abort it first (`rollout status --role {role}`)")
        provider, lb = session.drivers.provider, session.drivers.lb
        nodes, members = provider.list(), lb.members()
        problem = pool_health_problem(nodes, members, pool.settings.floor)
        if problem is not None:
            return PhoenixReport("skipped", f"the pool is unhealthy: {problem}")
        now = session.clock.now()
        history = phoenix_history(session.journal.rollouts(pool.env, pool.role), now)
        decision = select_for_phoenix(nodes, now=now, max_age=max_age, budget=budget,
                                      window=window, history=history)
        if not decision.allowed:
            return PhoenixReport("skipped", decision.reason, decision)
        if not decision.replace or decision.image_id is None:
            return PhoenixReport("nothing_due", decision.reason, decision)
        image = session.drivers.images.get(decision.image_id)
        controller = session.controller(on_event=on_event, stop_requested=stop_requested,
                                        lease=lease)
        result = controller.run(image, only=[n.name for n in decision.replace], kind=KIND)
    record_evidence(session, image, result)
    return PhoenixReport("replaced", decision.reason, decision, result)
