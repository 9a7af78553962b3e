"""A SQLite journal whose write lock another process keeps (frozen mid-write):
the error names that process and says it is stopped, instead of calling the
journal unusable; once the holder is gone the same open works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout.errors import ExitCode, JournalBusy
from rollout.store.file_locks import busy_error, write_lock_holders
from rollout.store.journal import Journal
from rollout.store.lease import Lease

# Holds a write transaction on the file, says so, then stops itself.
HOLDER = """
import os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE leases SET epoch = epoch")
print("holding", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
conn.execute("COMMIT")
"""


Frozen = tuple[Path, "subprocess.Popen[str]"]


@pytest.fixture
def frozen_writer(tmp_path: Path) -> Iterator[Frozen]:
    path = tmp_path / "journal.sqlite"
    Journal(path).close()  # the schema, so the holder can write a row
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    try:
        yield path, proc
    finally:
        proc.kill()
        proc.wait()


def test_a_frozen_writer_is_named_on_open(frozen_writer: Frozen) -> None:
    path, proc = frozen_writer
    with pytest.raises(JournalBusy) as caught:
        Journal(path, busy_timeout=0.3)
    error = caught.value
    assert f"pid {proc.pid}" in error.message and "STOPPED" in error.message
    assert f"kill -CONT {proc.pid}" in (error.hint or "")
    assert "move it aside" not in error.message + (error.hint or "")
    assert error.exit_code is ExitCode.LOCKED


def test_a_frozen_writer_is_named_on_a_write(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    journal = Journal(path, busy_timeout=0.3)
    try:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        try:
            with pytest.raises(JournalBusy, match=f"pid {proc.pid}"):
                Lease(journal, "lab/web", ttl=5, heartbeat=False).acquire()
        finally:
            proc.kill()
            proc.wait()
        # The holder is gone (its lock with it): the same write goes through.
        lease = Lease(journal, "lab/web", ttl=5, heartbeat=False).acquire()
        assert lease.epoch == 1
        lease.release()
    finally:
        journal.close()


def test_holders_are_read_from_proc_locks(frozen_writer: Frozen) -> None:
    path, proc = frozen_writer
    holders = write_lock_holders(path)
    assert [h.pid for h in holders] == [proc.pid]
    assert holders[0].stopped
    os.kill(proc.pid, signal.SIGCONT)
    proc.wait(timeout=10)
    # Negative control: the holder committed and exited, so nobody holds it.
    assert write_lock_holders(path) == []


def test_an_unknown_holder_still_gets_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"")
    locks = tmp_path / "locks"
    locks.write_text("1: FLOCK  ADVISORY  WRITE 1 fe:00:1 0 EOF\n")
    error = busy_error(path, "save state", proc_locks=locks)
    assert "locked by another process" in error.message and "save state" in error.message
