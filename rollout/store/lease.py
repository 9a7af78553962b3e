"""A fenced lease per environment and pool, kept in the state store.

Each grant to a new holder carries an epoch that only ever increases (per pool
key); while held, the journal checks that epoch in the same transaction as
every write of the pool's rollouts (see :mod:`rollout.store.journal`), so a
stale holder's writes are refused with :class:`rollout.errors.FencedOut`.

The holder renews it every TTL/4 from a heartbeat thread, timed on the
monotonic clock. It counts as :attr:`Lease.lost` locally once no renewal has
succeeded for TTL minus the safety margin (TTL/3 by default): a renewal sent
at time t made the lease valid until t + TTL at the latest, so stopping at
t + TTL - margin leaves the margin for clock rates and scheduling, rather
than noticing after another controller may already have taken over. Expiry
itself is judged by the store: the PostgreSQL server's clock, or this host's
clock for a SQLite file.

A second controller gets :class:`rollout.errors.LockHeldError` at once naming
the holder, or waits with ``acquire(wait=True)``. A lease whose holder is
provably dead (same host, its PID gone or reused by another process) is taken
over at once; otherwise only after it expired.

    with Lease(journal, f"{env}/{role}", ttl=pool.settings.lease_ttl).acquire(wait=w):
        controller.run(image)
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from rollout.clock import SystemClock
from rollout.errors import JournalBusy, JournalError, LockHeldError
from rollout.protocols import Clock
from rollout.store.journal import Journal
from rollout.store.lease_table import Fence, Holder, when

__all__ = ["Fence", "Holder", "Lease", "alive", "process_start"]


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


class Lease:
    """The lock of one pool. ``key`` is ``ENV/ROLE``; ``ttl`` is the pool's
    ``lease_ttl``; ``margin`` (default TTL/3) is how long before the TTL the
    lease counts as lost without a renewal; ``monotonic`` times the renewals."""

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
        margin: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal if isinstance(journal, Journal) else Journal(journal)
        self.key = key
        self.ttl = ttl
        self.margin = ttl / 3 if margin is None else margin
        self.clock: Clock = clock or SystemClock()
        self.heartbeat = heartbeat
        self.pid = pid if pid is not None else os.getpid()
        self.host = host or socket.gethostname()
        self.holder = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.held = False
        self.epoch = 0
        self._lost = False
        self._monotonic = monotonic
        self._valid_until = 0.0  # monotonic: the last renewal's send time + TTL - margin
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def fence(self) -> Fence:
        """The epoch this holder writes under."""
        return Fence(self.key, self.holder, self.epoch)

    @property
    def lost(self) -> bool:
        """True once the store refused a renewal, or when no renewal has
        succeeded for TTL minus the margin (a frozen process thaws lost)."""
        return self._lost or (self.held and self._monotonic() >= self._valid_until)

    def current(self) -> Holder | None:
        """Who holds the lease now, if anyone (expired or not)."""
        return self.journal.leases.current(self.key)

    def _try(self) -> Holder | None:
        """Take the lease if free, expired, ours or held by a dead process;
        otherwise return the live holder."""
        sent = self._monotonic()
        granted, holder = self.journal.leases.try_acquire(
            self.key, holder=self.holder, host=self.host, pid=self.pid,
            pid_start=process_start(self.pid), ttl=self.ttl, host_now=self.clock.now(),
            dead=lambda other: other.host == self.host and not alive(other.pid,
                                                                      other.pid_start),
        )
        if not granted:
            return holder
        self.epoch = holder.epoch
        self._valid_until = sent + self.ttl - self.margin
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
                    f"pid {other.pid}) since {when(other.acquired_at)} (lease epoch "
                    f"{other.epoch}); it expires at {when(other.expires_at)} unless renewed",
                    hint="wait for that controller (--wait-lock); a dead holder's lease is "
                    f"taken over at once on its host, elsewhere after the TTL ({self.ttl:g}s)",
                )
            self.clock.sleep(poll)
        self.held, self._lost = True, False
        self.journal.hold(self)
        if self.heartbeat:
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name=f"lease {self.key}",
                                            daemon=True)
            self._thread.start()
        return self

    def renew(self) -> bool:
        """Extend the lease by one TTL; False (and ``lost``) if it is not ours."""
        sent = self._monotonic()
        ours = self.journal.leases.renew(self.fence, self.ttl, self.clock.now())
        if ours:
            self._valid_until = sent + self.ttl - self.margin
        else:
            self._lost = True
        return ours

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                if not self.renew():
                    return
            except (JournalError, JournalBusy):
                # Retried at the next beat; ``lost`` turns true by itself once
                # the renewals have failed for TTL minus the margin.
                if self.lost:
                    return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self.held:
            self.journal.drop(self)
            self.held = False
            self.journal.leases.release(self.fence)

    def __enter__(self) -> Lease:
        if not self.held:
            self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
