"""Is a node's systemd-nspawn alive, and is it really ours? Signals and
waits on it, and finds the node's container init even after its nspawn died.

A recorded pid counts only while it is a live (non-zombie) ``systemd-nspawn``
with the node's machine name.

Killing a node as a unit: when nspawn is SIGKILLed, the container's init and
its services keep running, re-parented to the host's PID 1, in their own PID
and network namespaces (docs/PLATFORM.md). Every node's nspawn therefore
hands its init an environment variable naming the node's directory
(:data:`MARKER`); a process outside our PID namespace carrying it is that
node's init. SIGKILL to the init of a PID namespace ends every process in
it, so killing the init kills the node.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from pathlib import Path

from rollout.backends.lab.records import LabContext, NodeRecord
from rollout.protocols import Clock

#: The variable nspawn sets in the container init's environment: the node's
#: directory under the data directory, which names both the lab and the node.
MARKER = "ROLLOUT_LAB_NODE"

_PROC = Path("/proc")


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


def marker_value(environ: bytes) -> str | None:
    """The :data:`MARKER` value in a raw ``/proc/PID/environ``, or None."""
    prefix = f"{MARKER}=".encode()
    for item in environ.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix):].decode(errors="replace")
    return None


def marked_inits() -> dict[int, str]:
    """pid -> marker value of every live process in another PID namespace
    than ours that carries the marker (a lab node's container init)."""
    ours = os.readlink("/proc/self/ns/pid")
    found: dict[int, str] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "pid") == ours:
                continue
            value = marker_value((entry / "environ").read_bytes())
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        if value is not None and proc_argv(int(entry.name)):
            found[int(entry.name)] = value
    return found


def netns_processes(name: str) -> list[int]:
    """Live processes in another PID namespace than ours that sit in the
    network namespace ``/run/netns/NAME`` (while it is mounted)."""
    try:
        inode = os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return []
    ours = os.readlink("/proc/self/ns/pid")
    found = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (os.readlink(entry / "ns" / "net") != f"net:[{inode}]"
                    or os.readlink(entry / "ns" / "pid") == ours):
                continue
        except OSError:
            continue
        if proc_argv(int(entry.name)):
            found.append(int(entry.name))
    return found


def node_inits(lab: LabContext, name: str) -> list[int]:
    """The live container processes of node ``name``, with or without its
    nspawn: its init by the marker, and (not every boot's init shows the
    marker: a restarted node's did not) whatever runs in its netns."""
    want = str(lab.node_dir(name))
    marked = {pid for pid, value in marked_inits().items() if value == want}
    return sorted(marked | set(netns_processes(name)))


def lab_inits(lab: LabContext) -> dict[str, list[int]]:
    """Node name -> live container init pids, for every node of this lab
    (this data directory), recorded or not."""
    found: dict[str, list[int]] = {}
    for pid, value in marked_inits().items():
        path = Path(value)
        if path.parent == lab.nodes_dir:
            found.setdefault(path.name, []).append(pid)
    return found


def kill_node(lab: LabContext, name: str, pid: int | None, timeout: float,
              clock: Clock) -> bool:
    """SIGKILL the node as a unit: its container init (which ends its whole
    PID namespace) and its nspawn ``pid`` if that is still ours. True once
    no process of it is left, within ``timeout``."""
    deadline = clock.now() + timeout
    while True:
        inits = node_inits(lab, name)
        nspawn = pid is not None and is_our_nspawn(pid, name)
        if not inits and not nspawn:
            return True
        if clock.now() > deadline:
            return False
        for victim in [*inits, *([pid] if nspawn and pid is not None else [])]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        clock.sleep(0.05)


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
