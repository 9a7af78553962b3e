"""A lease per environment and pool, kept in the journal's SQLite file.

The holder renews it every TTL/3 from a heartbeat thread. A second controller
gets :class:`rollout.errors.LockHeldError` at once naming the holder, or waits
with ``acquire(wait=True)``. A lease whose holder is provably dead (same host,
its PID gone or reused by another process) is taken over at once; otherwise
only after it expired. Takeover and renewal run in ``BEGIN IMMEDIATE``
transactions, so two acquirers never both win.

    with Lease(journal, f"{env}/{role}", clock=clock).acquire(wait=args.wait_lock):
        controller.run(image)
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from rollout.clock import SystemClock
from rollout.errors import JournalError, LockHeldError
from rollout.protocols import Clock
from rollout.store.journal import Journal


@dataclass(frozen=True)
class Holder:
    holder: str
    host: str
    pid: int
    pid_start: str
    acquired_at: float
    expires_at: float


def process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (field 22 of
    /proc/PID/stat), to tell a live holder from a reused PID; '' if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def alive(pid: int, pid_start: str = "") -> bool:
    """Whether process ``pid`` on this host still runs (and is the same one)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not pid_start or process_start(pid) in ("", pid_start)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


class Lease:
    """The lock of one pool. ``key`` is ``ENV/ROLE``."""

    def __init__(
        self,
        journal: Journal | Path,
        key: str,
        *,
        ttl: float = 30.0,
        clock: Clock | None = None,
        heartbeat: bool = True,
        pid: int | None = None,
        host: str | None = None,
    ) -> None:
        self.journal = journal if isinstance(journal, Journal) else Journal(journal)
        self.key = key
        self.ttl = ttl
        self.clock: Clock = clock or SystemClock()
        self.heartbeat = heartbeat
        self.pid = pid if pid is not None else os.getpid()
        self.host = host or socket.gethostname()
        self.holder = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.lost = False
        self.held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> Holder | None:
        """Who holds the lease now, if anyone (expired or not)."""
        with self.journal.write("read lease") as conn:
            row = conn.execute(
                "SELECT holder, host, pid, pid_start, acquired_at, expires_at FROM leases "
                "WHERE key=?", (self.key,),
            ).fetchone()
        return Holder(*row) if row else None

    def _try(self) -> Holder | None:
        """Take the lease if free, expired, ours or held by a dead process;
        otherwise return the live holder."""
        now = self.clock.now()
        with self.journal.write("acquire lease") as conn:
            row = conn.execute(
                "SELECT holder, host, pid, pid_start, acquired_at, expires_at FROM leases "
                "WHERE key=?", (self.key,),
            ).fetchone()
            if row is not None:
                other = Holder(*row)
                dead = other.host == self.host and not alive(other.pid, other.pid_start)
                if other.holder != self.holder and other.expires_at > now and not dead:
                    return other
            conn.execute(
                "INSERT OR REPLACE INTO leases VALUES (?,?,?,?,?,?,?)",
                (self.key, self.holder, self.host, self.pid, process_start(self.pid), now,
                 now + self.ttl),
            )
        return None

    def acquire(self, wait: bool = False, timeout: float | None = None,
                poll: float = 1.0) -> Lease:
        """Take the lease or raise LockHeldError; with ``wait``, poll until it is
        free (or ``timeout`` seconds passed on the clock)."""
        started = self.clock.now()
        while True:
            other = self._try()
            if other is None:
                break
            timed_out = timeout is not None and self.clock.now() - started >= timeout
            if not wait or timed_out:
                raise LockHeldError(
                    f"pool {self.key} is locked by {other.holder} (host {other.host}, "
                    f"pid {other.pid}) since {_when(other.acquired_at)}; the lease expires "
                    f"at {_when(other.expires_at)} unless renewed",
                    hint="wait for that controller (--wait-lock); a dead holder's lease is "
                    f"taken over at once on its host, elsewhere after the TTL ({self.ttl:g}s)",
                )
            self.clock.sleep(poll)
        self.held, self.lost = True, False
        if self.heartbeat:
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name=f"lease {self.key}",
                                            daemon=True)
            self._thread.start()
        return self

    def renew(self) -> bool:
        """Extend the lease by one TTL; False (and ``lost``) if it is not ours."""
        now = self.clock.now()
        with self.journal.write("renew lease") as conn:
            cur = conn.execute(
                "UPDATE leases SET expires_at=? WHERE key=? AND holder=?",
                (now + self.ttl, self.key, self.holder),
            )
            ours = cur.rowcount == 1
        if not ours:
            self.lost = True
        return ours

    def _beat(self) -> None:
        last_ok = self.clock.now()
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.renew():
                    return
                last_ok = self.clock.now()
            except JournalError:
                # A transient write failure is retried; past the TTL the lease may
                # be someone else's, so the controller must stop.
                if self.clock.now() - last_ok > self.ttl:
                    self.lost = True
                    return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self.held:
            with self.journal.write("release lease") as conn:
                conn.execute("DELETE FROM leases WHERE key=? AND holder=?",
                             (self.key, self.holder))
            self.held = False

    def __enter__(self) -> Lease:
        if not self.held:
            self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
