"""Is a node's systemd-nspawn alive, and is it really ours? Signals and
waits on it. A recorded pid counts only while it is a live (non-zombie)
``systemd-nspawn`` with the node's machine name."""

from __future__ import annotations

import itertools
import os
import signal
from pathlib import Path

from rollout.backends.lab.records import LabContext, NodeRecord
from rollout.protocols import Clock


def proc_argv(pid: int) -> list[str]:
    """argv of a live (non-zombie) process, or [] when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
            return []
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def is_our_nspawn(pid: int, name: str) -> bool:
    argv = proc_argv(pid)
    if not argv or os.path.basename(argv[0]) != "systemd-nspawn":
        return False
    pairs = itertools.pairwise(argv)
    return any(a == "-M" and b == name for a, b in pairs) or f"--machine={name}" in argv


def node_running(lab: LabContext, rec: NodeRecord) -> bool:
    """True when the recorded pid is alive AND is this node's systemd-nspawn."""
    return rec.pid is not None and is_our_nspawn(rec.pid, rec.name)


def wait_gone(pid: int, name: str, timeout: float, clock: Clock) -> bool:
    deadline = clock.now() + timeout
    while is_our_nspawn(pid, name):
        if clock.now() > deadline:
            return False
        clock.sleep(0.05)
    return True


def signal_node(rec: NodeRecord) -> bool:
    """Send SIGTERM (a clean poweroff) to the node's nspawn, if it is ours and alive."""
    if rec.pid is None or not is_our_nspawn(rec.pid, rec.name):
        return False
    try:
        os.kill(rec.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True
