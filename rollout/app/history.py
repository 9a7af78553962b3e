"""``rollout status``, ``history`` and ``show``: what the journal says, as JSON-ready
dicts (the CLI prints them as a document or as text). Read-only: the journal is
opened for the query and closed again."""

from __future__ import annotations

import time
from contextlib import closing
from typing import Any

from rollout import names
from rollout.app.session import open_journal
from rollout.app.workspace import Workspace
from rollout.core.rollback import rollback_to
from rollout.core.state import RolloutState
from rollout.events import AnalysisMeasured
from rollout.store.lease_table import LeaseStatus


def paused_summary(state: RolloutState, now: float) -> dict[str, Any] | None:
    """How long a rollout has been paused and why, for ``status``; None when
    it is not paused (``holding`` says a pause was asked for)."""
    gate = state.gate
    if gate.held_since is None:
        return {"since": None, "waited": 0.0, "reason": "`rollout pause` asked; holds at "
                "the next step boundary"} if gate.hold else None
    return {"since": gate.held_since, "waited": round(now - gate.held_since, 1),
            "reason": gate.held_by}


def rollout_summary(state: RolloutState) -> dict[str, Any]:
    """One rollout in a line: its pool, status, target and phase counts."""
    phases: dict[str, int] = {}
    for rep in state.replacements:
        phases[rep.phase.value] = phases.get(rep.phase.value, 0) + 1
    return {
        "id": state.id, "env": state.env, "role": state.role, "status": state.status.value,
        "target_image": state.target.id, "target_version": state.target.version,
        "started_at": state.started_at, "finished_at": state.finished_at,
        "replacements": len(state.replacements), "phases": phases, "message": state.message,
        "paused": paused_summary(state, time.time()) if state.status.unfinished else None,
    }


def pool_status(ws: Workspace, role: str | None = None) -> list[dict[str, Any]]:
    """Each pool's unfinished rollout (if any), lease holder and last rollout.
    ``lock`` is None when the pool is free, else the holder, its host and PID,
    the lease epoch, and the expiry judged by the store's clock (``expires_in``
    is negative for an expired lease nobody has taken over yet)."""
    pools = [ws.pool(role)] if role else list(ws.env.pools.values())
    rows: list[dict[str, Any]] = []
    with closing(open_journal(ws)) as journal:
        for pool in pools:
            unfinished = journal.unfinished(pool.env, pool.role)
            last = journal.history(pool.env, pool.role, limit=1)
            lease = journal.lease_status(f"{pool.env}/{pool.role}")
            rows.append({
                "env": pool.env, "role": pool.role,
                "unfinished": rollout_summary(unfinished) if unfinished else None,
                "last": rollout_summary(last[0].state) if last else None,
                "lock": None if lease is None else lease_summary(lease),
                "state": journal.display_url,
            })
    return rows


def lease_summary(lease: LeaseStatus) -> dict[str, Any]:
    """A pool's lease as ``status`` shows it."""
    return {"holder": lease.holder, "host": lease.host, "pid": lease.pid,
            "epoch": lease.epoch, "acquired_at": lease.acquired_at,
            "expires_at": lease.expires_at, "expires_in": round(lease.expires_in, 3),
            "expired": lease.expired}


def rollout_history(ws: Workspace, role: str | None = None,
                    limit: int = 20) -> list[dict[str, Any]]:
    """Past rollouts of the environment (of ``role``), newest first."""
    if role:
        ws.pool(role)
    with closing(open_journal(ws)) as journal:
        records = journal.history(ws.env.name, role, limit=limit)
    return [rollout_summary(r.state) | {"pid": r.pid, "host": r.host,
                                        "rollback_to": rollback_to(r.state)}
            for r in records]


def rollout_detail(ws: Workspace, rollout_id: str) -> dict[str, Any]:
    """One rollout: its replacements, every recorded step, its waits and overhead."""
    names.rollout_id(rollout_id, "ROLLOUT_ID")
    with closing(open_journal(ws)) as journal:
        state = journal.get(rollout_id)
        steps = journal.steps(rollout_id)
        waits = journal.wait_totals(rollout_id)
        overhead = journal.overhead(rollout_id)
        measured = [e for e in journal.events(rollout_id) if isinstance(e, AnalysisMeasured)]
    return rollout_summary(state) | {
        "replacements": [{
            "index": r.index, "batch": r.batch, "old": r.old_name, "new": r.new_name,
            "phase": r.phase.value, "error": r.error, "relaunches": r.relaunches,
            "restore_reason": r.restore_reason.value if r.restore_reason else None,
            "drain_timed_out": r.drain_timed_out} for r in state.replacements],
        "steps": [{"kind": s.kind, "node": s.node, "started_at": s.started_at,
                   "ok": s.ok, "duration": s.duration, "error": s.error,
                   "detail": s.detail} for s in steps],
        "waits": waits, "overhead": overhead,
        "analysis": [{"analysis": m.analysis, "at": m.measured_at, "outcome": m.outcome,
                      "result": m.result, "baseline": m.baseline, "detail": m.detail}
                     for m in measured],
    }


__all__ = ["lease_summary", "pool_status", "rollout_detail", "rollout_history", "rollout_summary"]
