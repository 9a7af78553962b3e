"""Operator requests: what people ask of a running rollout from another
process (``rollout pause``, ``rollout continue``), queued in the store.

Anyone may queue a request (no lease: the point is to reach the controller
that holds it); the controller of the rollout reads the open ones on every
pass, folds them into its state, journals that, and then marks them
consumed. Applying a request twice does what applying it once does, so a
crash between the two writes is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, select, update

from rollout.store.database import Database
from rollout.store.schema import operator_requests


class RequestKind(StrEnum):
    PAUSE = "pause"
    CONTINUE = "continue"


@dataclass(frozen=True)
class OperatorRequest:
    id: int
    rollout_id: str
    kind: RequestKind
    at: float
    by: str


class OperatorRequests:
    """The request half of :class:`rollout.store.journal.Journal`."""

    _db: Database

    def request(self, rollout_id: str, kind: RequestKind, *, by: str, at: float) -> int:
        """Queue a request for the controller of ``rollout_id``; its id."""
        def write(conn: Connection) -> int:
            row = conn.execute(operator_requests.insert().returning(operator_requests.c.id)
                               .values(rollout_id=rollout_id, kind=kind.value, at=at, by=by))
            return int(row.scalar_one())

        return self._db.transact("queue request", write)

    def open_requests(self, rollout_id: str) -> list[OperatorRequest]:
        """Requests for ``rollout_id`` not consumed yet, oldest first."""
        query = (select(operator_requests).where(operator_requests.c.rollout_id == rollout_id,
                                                 operator_requests.c.consumed.is_(None))
                 .order_by(operator_requests.c.id))
        rows = self._db.transact("read", lambda c: list(c.execute(query).mappings()),
                                 write=False)
        return [OperatorRequest(r["id"], r["rollout_id"], RequestKind(r["kind"]), r["at"],
                                r["by"]) for r in rows]

    def consume(self, requests: Sequence[OperatorRequest], at: float) -> None:
        """Mark ``requests`` done (after their effect was journaled)."""
        if not requests:
            return

        def write(conn: Connection) -> None:
            conn.execute(update(operator_requests)
                         .where(operator_requests.c.id.in_([r.id for r in requests]))
                         .values(consumed=at))

        self._db.transact("consume requests", write)
