"""What a functional session left running on the host, limited to this
session: its data directories (node inits carry their node directory, nspawns
HAProxys and Prometheus name files under it), its bridge and its subnet. Other agents'
labs on the same machine are never counted."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from pathlib import Path

from rollout.backends.lab.processes import marked_inits, proc_argv


def _under(path: str, roots: list[Path]) -> bool:
    return any(path == str(r) or path.startswith(f"{r}/") for r in roots)


def _ip_json(*args: str) -> list[dict[str, object]]:
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=False)
    try:
        parsed = json.loads(out.stdout or "[]")
    except json.JSONDecodeError:
        return []
    return parsed if isinstance(parsed, list) else []


def _pidns(pid: str) -> str | None:
    """The PID namespace of ``pid``; None when it cannot be read (this host's
    PID 1 denies it even to root)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _container_processes(roots: list[Path]) -> list[str]:
    """Processes in another PID namespace whose mounts come from under
    ``roots`` (a node's overlay of an image there, its bind-mounted keys):
    found even when the init carries no marker."""
    ours = os.readlink("/proc/self/ns/pid")
    found: list[str] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ns = os.readlink(entry / "ns" / "pid")
            if ns == ours or not proc_argv(int(entry.name)):
                continue
            # Only each namespace's init (its parent is outside): one line per node.
            ppid = (entry / "stat").read_text().rpartition(")")[2].split()[1]
            if _pidns(ppid) == ns:
                continue
            mounts = (entry / "mountinfo").read_text(errors="replace")
        except (OSError, IndexError):
            continue
        if any(f"{r}/" in mounts for r in roots):
            found.append(f"container process pid {entry.name}: "
                         f"{' '.join(proc_argv(int(entry.name)))[:120]}")
    return found


def leftovers(roots: list[Path], bridge: str, subnet: str) -> list[str]:
    """One line per thing still there: node inits, nspawns, HAProxys,
    Prometheus, netns, veths."""
    found: list[str] = []
    for pid, value in sorted(marked_inits().items()):
        if _under(value, roots):
            found.append(f"node init pid {pid} ({value})")
    found.extend(_container_processes(roots))
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = proc_argv(int(entry.name))
        if not argv:
            continue
        prog = os.path.basename(argv[0])
        # Prometheus names its files as --flag=PATH.
        paths = [a.partition("=")[2] if a.startswith("--") else a for a in argv]
        ours = any(_under(a, roots) for a in paths)
        if prog in ("systemd-nspawn", "haproxy", "prometheus") and ours:
            found.append(f"{prog} pid {entry.name}: {' '.join(argv)[:160]}")
    net = ipaddress.ip_network(subnet)
    netns = Path("/run/netns")
    for ns in sorted(netns.iterdir()) if netns.is_dir() else []:
        for link in _ip_json("-n", ns.name, "addr", "show"):
            infos = link.get("addr_info")
            for info in infos if isinstance(infos, list) else []:
                local = info.get("local") if isinstance(info, dict) else None
                if info.get("family") == "inet" and local and ipaddress.ip_address(local) in net:
                    found.append(f"netns {ns.name} ({local} in {subnet})")
    for link in _ip_json("link", "show"):
        name = str(link.get("ifname", ""))
        if name == bridge:
            found.append(f"bridge {bridge}")
        elif link.get("master") == bridge:
            found.append(f"veth {name} on bridge {bridge}")
    return found
