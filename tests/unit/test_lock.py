"""The pool lease: exclusion, dead holders, TTL takeover, heartbeat."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from rollout.errors import LockHeldError
from rollout.store.journal import Journal
from rollout.store.lease import Lease, alive
from rollout.testing import FakeClock


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    clock = FakeClock()
    journal = Journal(tmp_path / "j.sqlite")
    first = Lease(journal, "lab/web", clock=clock, heartbeat=False).acquire()
    with pytest.raises(LockHeldError, match=r"lab/web is locked by .*host .*pid \d+\) since"):
        Lease(journal, "lab/web", clock=clock, heartbeat=False).acquire()
    Lease(journal, "lab/db", clock=clock, heartbeat=False).acquire()  # another pool
    first.release()
    Lease(journal, "lab/web", clock=clock, heartbeat=False).acquire()


def test_a_dead_holder_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    journal = Journal(tmp_path / "j.sqlite")
    dead = _dead_pid()
    assert not alive(dead)
    Lease(journal, "lab/web", clock=clock, heartbeat=False, pid=dead).acquire()
    taker = Lease(journal, "lab/web", clock=clock, heartbeat=False).acquire()
    assert taker.current() is not None and taker.current().holder == taker.holder  # type: ignore[union-attr]


def test_another_hosts_holder_is_taken_over_only_after_the_ttl(tmp_path: Path) -> None:
    clock = FakeClock()
    journal = Journal(tmp_path / "j.sqlite")
    other = Lease(journal, "lab/web", ttl=30, clock=clock, heartbeat=False, pid=1,
                  host="elsewhere").acquire()
    with pytest.raises(LockHeldError, match="elsewhere"):
        Lease(journal, "lab/web", clock=clock, heartbeat=False).acquire()
    clock.advance(31)
    mine = Lease(journal, "lab/web", clock=clock, heartbeat=False).acquire()
    assert other.renew() is False and other.lost  # the old holder learns it lost
    assert mine.renew() is True


def test_wait_polls_until_free_or_times_out(tmp_path: Path) -> None:
    clock = FakeClock()
    journal = Journal(tmp_path / "j.sqlite")
    Lease(journal, "lab/web", ttl=10, clock=clock, heartbeat=False, host="elsewhere",
          pid=1).acquire()
    with pytest.raises(LockHeldError):
        Lease(journal, "lab/web", clock=clock, heartbeat=False).acquire(wait=True, timeout=5)
    waiter = Lease(journal, "lab/web", clock=clock, heartbeat=False).acquire(wait=True,
                                                                              timeout=60)
    assert waiter.held and clock.slept >= 10


def test_context_manager_and_heartbeat(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    with Lease(journal, "lab/web", ttl=0.3) as lease:
        first = lease.current()
        time.sleep(0.35)  # a real heartbeat renews every TTL/3
        later = lease.current()
        assert first is not None and later is not None
        assert later.expires_at > first.expires_at and not lease.lost
    assert lease.current() is None
