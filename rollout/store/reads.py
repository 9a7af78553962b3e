"""Reading the journal back: rollouts, their steps, events and waits (what
``status``, ``history``, ``show``, ``plan``'s ETAs and ``reap`` need).

:class:`JournalReads` is the read half of :class:`rollout.store.journal.Journal`;
every query runs in a read-only transaction of the journal's database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.engine import RowMapping

from rollout.core.state import Replacement, RolloutState, RolloutStatus
from rollout.errors import (
    JournalUnusable,
    NotFoundError,
)
from rollout.events import Event, from_dict
from rollout.store import codec
from rollout.store.database import Database
from rollout.store.schema import events, replacements, rollouts, steps, waits


@dataclass(frozen=True)
class Step:
    """One recorded side effect: the intent, and the outcome once known."""

    id: int
    rollout_id: str | None
    index: int | None
    kind: str
    node: str
    started_at: float
    finished_at: float | None
    ok: bool | None  # None: the intent was recorded, the outcome never was
    error: str | None
    duration: float | None
    detail: str = ""
    epoch: int | None = None  # the lease epoch it was written under


@dataclass(frozen=True)
class Record:
    """A rollout as ``history`` lists it: the state and who ran it."""

    state: RolloutState
    pid: int | None
    host: str | None


class JournalReads:
    """Queries over the journal's tables. The journal sets ``_db`` (its
    database), ``where`` (where it is, for messages) and the caches that
    :meth:`_load` fills for later fenced writes."""

    _db: Database
    _pools: dict[str, str]
    _saved: dict[str, tuple[str, dict[int, Replacement]]]

    @property
    def where(self) -> str:
        raise NotImplementedError

    def _rows(self, query: Select[Any]) -> list[RowMapping]:
        return self._db.transact("read", lambda c: list(c.execute(query).mappings()),
                                 write=False)

    def get(self, rollout_id: str) -> RolloutState:
        rows = self._rows(select(rollouts).where(rollouts.c.id == rollout_id))
        if not rows:
            raise NotFoundError(f"{self.where}: no rollout {rollout_id!r}",
                                hint="list rollouts with `rollout history`")
        return self._load(rows[0])

    def unfinished(self, env: str, role: str) -> RolloutState | None:
        """The pool's running, halted or interrupted rollout, if any."""
        statuses = [s.value for s in RolloutStatus if s.unfinished]
        rows = self._rows(select(rollouts).where(
            rollouts.c.env == env, rollouts.c.role == role, rollouts.c.status.in_(statuses),
        ).order_by(rollouts.c.started_at.desc(), rollouts.c.seq.desc()).limit(1))
        return self._load(rows[0]) if rows else None

    def history(self, env: str | None = None, role: str | None = None,
                limit: int = 20) -> list[Record]:
        """The newest rollouts first."""
        query = select(rollouts)
        if env is not None:
            query = query.where(rollouts.c.env == env)
        if role is not None:
            query = query.where(rollouts.c.role == role)
        rows = self._rows(query.order_by(rollouts.c.started_at.desc(), rollouts.c.seq.desc())
                          .limit(limit))
        return [Record(self._load(r), r["pid"], r["host"]) for r in rows]

    def rollouts(self, env: str, role: str) -> list[RolloutState]:
        """Every rollout of the pool, oldest first (for reap)."""
        rows = self._rows(select(rollouts).where(rollouts.c.env == env, rollouts.c.role == role)
                          .order_by(rollouts.c.started_at, rollouts.c.seq))
        return [self._load(r) for r in rows]

    def steps(self, rollout_id: str | None) -> list[Step]:
        rows = self._rows(select(steps).where(steps.c.rollout_id.is_not_distinct_from(
            rollout_id)).order_by(steps.c.id))
        return [Step(r["id"], r["rollout_id"], r["idx"], r["kind"], r["node"], r["started_at"],
                     r["finished_at"], None if r["ok"] is None else bool(r["ok"]), r["error"],
                     r["duration"], r["detail"], r["epoch"]) for r in rows]

    def events(self, rollout_id: str | None) -> list[Event]:
        """A rollout's events; with None, the pool-level ones (forced unlocks)."""
        rows = self._rows(select(events.c.body).where(
            events.c.rollout_id.is_not_distinct_from(rollout_id)).order_by(events.c.id))
        return [from_dict(json.loads(r["body"])) for r in rows]

    def requested(self, rollout_id: str, kind: str) -> bool:
        """Whether the rollout's events hold one of ``kind`` (a request another
        process journaled, such as ``rollback_requested``)."""
        rows = self._rows(select(events.c.id).where(
            events.c.rollout_id == rollout_id, events.c.kind == kind).limit(1))
        return bool(rows)

    def wait_totals(self, rollout_id: str) -> dict[str, float]:
        """Seconds spent in each kind of irreducible wait (boot, smoke, lb_rise,
        drain, soak), summed over the rollout's replacements."""
        rows = self._rows(select(waits.c.kind, func.sum(waits.c.seconds).label("s"))
                          .where(waits.c.rollout_id == rollout_id).group_by(waits.c.kind))
        return {r["kind"]: float(r["s"]) for r in rows}

    def wait_samples(self, kind: str, env: str, role: str, limit: int = 50) -> list[float]:
        """Recent waits of one kind in a pool, newest first: input for ETAs."""
        rows = self._rows(select(waits.c.seconds).join(rollouts, rollouts.c.id ==
                                                       waits.c.rollout_id)
                          .where(waits.c.kind == kind, rollouts.c.env == env,
                                 rollouts.c.role == role)
                          .order_by(waits.c.id.desc()).limit(limit))
        return [float(r["seconds"]) for r in rows]

    def overhead(self, rollout_id: str,
                 kinds: tuple[str, ...] = ("boot", "smoke", "lb_rise", "drain", "soak"),
                 ) -> float | None:
        """Wall time ÷ the sum of the irreducible waits (goal ≤ 1.10), or None
        while the rollout runs or when it waited for nothing."""
        state = self.get(rollout_id)
        total = sum(v for k, v in self.wait_totals(rollout_id).items() if k in kinds)
        if state.finished_at is None or total <= 0:
            return None
        return (state.finished_at - state.started_at) / total

    def _load(self, row: RowMapping) -> RolloutState:
        reps = self._rows(select(replacements).where(replacements.c.rollout_id == row["id"])
                          .order_by(replacements.c.idx))
        try:
            state = codec.rollout_state(row, reps)
        except (KeyError, TypeError, ValueError) as exc:
            raise JournalUnusable(
                f"{self.where}: rollout {row['id']} cannot be read back ({exc!r})",
                hint="the journal was written by another version or edited by hand",
            ) from None
        self._pools[state.id] = f"{state.env}/{state.role}"
        self._saved[state.id] = (codec.state_json(state),
                                 {r.index: r for r in state.replacements})
        return state
