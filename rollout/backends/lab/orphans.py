"""Nodes of this lab that have no record any more, but left something behind:
a container init still running (its nspawn died and an earlier removal missed
it) or a network namespace with its veth.

A record-less leftover belongs to no pool: nothing lists it, nothing owns it,
so ``rollout reap`` of any lab pool and ``lab down`` remove it. It is told
apart from other labs' leftovers on this host by the marker its init carries
(the node's directory under this data directory, see
:mod:`rollout.backends.lab.processes`) or by its host-side veth, whose name
hashes this lab's bridge with the node's name.

A node's record is written before its network or its nspawn is set up, and
removed after both are gone, so a node being launched or removed is never
taken for one of these (the check and the removal hold the lab lock, as a
launch does while it records its node).
"""

from __future__ import annotations

from pathlib import Path

from rollout import names
from rollout.backends.lab import network, nodes, processes
from rollout.backends.lab.records import LabContext, lab_lock, read_record
from rollout.errors import ConfigError


def _netns_names() -> list[str]:
    try:
        return sorted(p.name for p in network.NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def _our_netns(lab: LabContext, name: str) -> bool:
    """A netns of this lab's bridge: its host-side veth exists."""
    try:
        names.name(name, "node name")
    except ConfigError:  # not a name we give a node
        return False
    host, _ = network.veth_names(lab.settings.bridge, name)
    return Path("/sys/class/net", host).exists()


def find_orphans(lab: LabContext) -> dict[str, str]:
    """Node name -> what is left of it, for this lab's nodes without a record."""
    found: dict[str, str] = {}
    for name, pids in sorted(processes.lab_inits(lab).items()):
        if read_record(lab, name) is None:
            found[name] = f"container init pid(s) {', '.join(map(str, sorted(pids)))}"
    for name in _netns_names():
        if name in found or read_record(lab, name) is not None:
            continue
        if _our_netns(lab, name):
            left = processes.netns_processes(name)
            found[name] = (f"network namespace with pid(s) {', '.join(map(str, left))}"
                           if left else "empty network namespace and its veth")
    return found


def remove_orphan(lab: LabContext, name: str) -> None:
    """Kill and remove a record-less node (idempotent, bounded); a node that has
    a record meanwhile (a launch of that name) is left alone."""
    with lab_lock(lab):
        if read_record(lab, names.name(name, "node name")) is not None:
            return
        nodes.remove_node(lab, name)
