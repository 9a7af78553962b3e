"""The ``leases`` table: grants with epochs, renewals, releases, the fence check.

A pool key's row is never deleted: a release blanks the holder and keeps the
epoch, so the epoch of a key only ever increases. Every grant to a new holder
raises it by one, and so does a forced release, which fences the old holder
out even before anybody else takes the lease.

Expiry is judged by :meth:`Database.now_sql`: the PostgreSQL server's clock,
or the host clock on SQLite. On PostgreSQL the fence check reads the lease
row ``FOR SHARE``: a takeover (which updates the row) waits for a fenced
write in flight to commit, and a fenced write after the takeover sees the new
epoch, so no write of the old epoch can land after the new epoch's first one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from rollout.errors import FencedOut
from rollout.events import LeaseForceReleased
from rollout.store.database import Database
from rollout.store.schema import events, leases


@dataclass(frozen=True)
class Holder:
    """Who holds a lease (expired or not)."""

    holder: str
    host: str
    pid: int
    pid_start: str
    acquired_at: float
    expires_at: float
    epoch: int = 0


@dataclass(frozen=True)
class Fence:
    """What a fenced write proves it still holds: this epoch of this key."""

    key: str
    holder: str
    epoch: int


@dataclass(frozen=True)
class LeaseStatus:
    """A lease as ``rollout status`` shows it. ``now`` is the store's clock
    (the PostgreSQL server's), so ``expires_in`` needs no clock of ours."""

    key: str
    holder: str
    host: str
    pid: int
    epoch: int
    acquired_at: float
    expires_at: float
    now: float

    @property
    def expires_in(self) -> float:
        """Seconds until it expires unless renewed; negative once expired."""
        return self.expires_at - self.now

    @property
    def expired(self) -> bool:
        return self.expires_at <= self.now


def when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


_COLUMNS = (leases.c.holder, leases.c.host, leases.c.pid, leases.c.pid_start,
            leases.c.acquired_at, leases.c.expires_at, leases.c.epoch)


def _holder(row: Row[Any]) -> Holder:
    return Holder(row.holder, row.host, row.pid, row.pid_start, row.acquired_at,
                  row.expires_at, row.epoch)


class LeaseTable:
    """The lease rows of one store."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _row(self, conn: Connection, key: str, host_now: float,
             lock: bool) -> Row[Any] | None:
        query = select(*_COLUMNS, self._db.now_sql(host_now).label("now")).where(
            leases.c.key == key)
        return conn.execute(query.with_for_update() if lock else query).first()

    def current(self, key: str) -> Holder | None:
        """The holder of ``key`` now, if anyone (expired or not)."""
        row = self._db.transact("read lease", lambda c: self._row(c, key, 0.0, False),
                                write=False)
        return _holder(row) if row is not None and row.holder else None

    def status(self, key: str, host_now: float) -> LeaseStatus | None:
        """Holder, host, PID, epoch and expiry of ``key``'s lease; None if free."""
        row = self._db.transact("read lease", lambda c: self._row(c, key, host_now, False),
                                write=False)
        if row is None or not row.holder:
            return None
        return LeaseStatus(key, row.holder, row.host, row.pid, row.epoch, row.acquired_at,
                           row.expires_at, float(row.now))

    def try_acquire(self, key: str, *, holder: str, host: str, pid: int, pid_start: str,
                    ttl: float, host_now: float,
                    dead: Callable[[Holder], bool]) -> tuple[bool, Holder]:
        """Grant ``key`` if it is free, expired, already ours or ``dead(holder)``:
        ``(True, our grant)``; else ``(False, the live holder)``."""

        def attempt(conn: Connection) -> tuple[bool, Holder]:
            conn.execute(self._db.insert(leases).values(
                key=key, holder="", host="", pid=0, pid_start="", acquired_at=0.0,
                expires_at=0.0, epoch=0).on_conflict_do_nothing(index_elements=["key"]))
            row = self._row(conn, key, host_now, True)
            assert row is not None
            other = _holder(row)
            now = float(row.now)
            if other.holder not in ("", holder) and other.expires_at > now and not dead(other):
                return False, other
            epoch = other.epoch if other.holder == holder else other.epoch + 1
            conn.execute(update(leases).where(leases.c.key == key).values(
                holder=holder, host=host, pid=pid, pid_start=pid_start, acquired_at=now,
                expires_at=now + ttl, epoch=epoch))
            return True, Holder(holder, host, pid, pid_start, now, now + ttl, epoch)

        return self._db.transact("acquire lease", attempt)

    def renew(self, fence: Fence, ttl: float, host_now: float) -> bool:
        """Extend the lease by ``ttl`` from now; False if it is not ours any more."""
        def attempt(conn: Connection) -> bool:
            result = conn.execute(update(leases).where(
                leases.c.key == fence.key, leases.c.holder == fence.holder,
                leases.c.epoch == fence.epoch,
            ).values(expires_at=self._db.now_sql(host_now) + ttl))
            return result.rowcount == 1

        return self._db.transact("renew lease", attempt)

    def release(self, fence: Fence) -> None:
        """Give the lease up (if still ours); the row keeps the epoch."""
        self._db.transact("release lease", lambda conn: conn.execute(
            update(leases).where(leases.c.key == fence.key, leases.c.holder == fence.holder,
                                 leases.c.epoch == fence.epoch)
            .values(holder="", host="", pid=0, pid_start="", expires_at=0.0)))

    def force_release(self, key: str, by: str, host_now: float) -> Holder | None:
        """Release ``key`` whoever holds it, raising its epoch so the old holder
        is fenced out, and journal who did it. Returns the old holder (None if
        the lease was free: nothing is written then)."""

        def attempt(conn: Connection) -> Holder | None:
            row = self._row(conn, key, host_now, True)
            if row is None or not row.holder:
                return None
            old = _holder(row)
            conn.execute(update(leases).where(leases.c.key == key).values(
                holder="", host="", pid=0, pid_start="", expires_at=0.0, epoch=old.epoch + 1))
            event = LeaseForceReleased("", float(row.now), key=key, by=by, holder=old.holder,
                                       host=old.host, pid=old.pid, epoch=old.epoch + 1)
            conn.execute(events.insert().values(rollout_id=None, at=event.at, kind=event.kind,
                                                body=event.to_json()))
            return old

        return self._db.transact("force-release lease", attempt)


def check_fence(conn: Connection, fence: Fence) -> None:
    """In the caller's transaction: raise FencedOut unless ``fence`` still holds."""
    row = conn.execute(select(*_COLUMNS).where(leases.c.key == fence.key)
                       .with_for_update(read=True)).first()
    if row is not None and row.holder == fence.holder and row.epoch == fence.epoch:
        return
    if row is not None and row.holder:
        now = (f"{row.holder} (host {row.host}, pid {row.pid}) holds it since "
               f"{when(row.acquired_at)} at epoch {row.epoch}")
    elif row is not None and row.epoch > fence.epoch:
        now = f"it was released (epoch {row.epoch}), by an operator or a newer holder"
    else:
        now = "nobody holds it"
    raise FencedOut(
        f"pool {fence.key}: this controller ({fence.holder}) lost its lease (epoch "
        f"{fence.epoch}): {now}; it stopped before acting",
        hint=f"check `rollout status --role {fence.key.rsplit('/', 1)[-1]}`; the current "
        "holder carries on, or `rollout resume` continues once the pool is free",
    )
