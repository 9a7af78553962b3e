"""Who holds a SQLite journal's write lock, for the message when it is busy.

A SQLite store is one file on one host. A writer holds the file's write lock
(in WAL mode, a POSIX lock on the ``-shm`` file) for the length of its
transaction; if that process is frozen mid-transaction (SIGSTOP, a debugger,
a VM pause), nobody else can write the file until it runs again or ends, and
no lease can change that: the lease lives in the same file. So instead of the
driver's bare "database is locked", the error names the process from
``/proc/locks`` and whether it is stopped, and says what to do. Several
controllers that must survive one of them freezing share a PostgreSQL store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rollout.errors import JournalBusy

_PROC_LOCKS = Path("/proc/locks")


@dataclass(frozen=True)
class LockHolder:
    pid: int
    command: str
    stopped: bool

    def describe(self) -> str:
        state = "STOPPED (SIGSTOP or a debugger)" if self.stopped else "running"
        return f"pid {self.pid} ({self.command or '?'}, {state})"


def is_locked_error(text: str) -> bool:
    """Whether a SQLite error message says the file is locked by another writer."""
    return "database is locked" in text or "database table is locked" in text


def write_lock_holders(path: Path, proc_locks: Path = _PROC_LOCKS) -> list[LockHolder]:
    """The other processes holding a WRITE lock on the journal ``path`` or its
    ``-shm``/``-wal`` files, as /proc/locks lists them (empty if unknown)."""
    ids = set()
    for name in (path, Path(f"{path}-shm"), Path(f"{path}-wal")):
        try:
            st = name.stat()
        except OSError:
            continue
        ids.add((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
    try:
        lines = proc_locks.read_text().splitlines()
    except OSError:
        return []
    pids: list[int] = []
    for line in lines:
        fields = line.split()
        # "1: POSIX  ADVISORY  WRITE 7149 fe:00:2154970 120 120"
        if len(fields) < 6 or fields[1] != "POSIX" or fields[3] != "WRITE":
            continue
        try:
            pid = int(fields[4])
            major, minor, inode = fields[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        if key in ids and pid != os.getpid() and pid not in pids:
            pids.append(pid)
    return [_holder(pid) for pid in pids]


def _holder(pid: int) -> LockHolder:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except OSError:
        command = ""
    stopped = False
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                stopped = line.split()[1] in ("T", "t")
    except OSError:
        pass
    return LockHolder(pid, command[:120], stopped)


def busy_error(path: Path, op: str, proc_locks: Path = _PROC_LOCKS) -> JournalBusy:
    """The error for a journal whose write lock another process kept past the
    busy timeout: who holds it, and what to do. Nothing was written."""
    holders = write_lock_holders(path, proc_locks)
    if not holders:
        who = "another process (not found in /proc/locks: it may have just let go)"
    else:
        who = ", ".join(h.describe() for h in holders)
    if any(h.stopped for h in holders):
        stopped = " ".join(str(h.pid) for h in holders if h.stopped)
        hint = (f"the holder is frozen mid-write: continue it (kill -CONT {stopped}) or end it, "
                "then run again; a thawed holder whose lease ran out stops by itself (exit 3). "
                "Controllers that must take over from a frozen one need a PostgreSQL store "
                "(see the README's section on shared state)")
    else:
        hint = "run again once that command has finished; nothing was changed"
    return JournalBusy(f"{path}: the journal is locked by {who}; cannot {op}", hint=hint)
