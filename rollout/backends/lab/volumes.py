"""Data volumes of lab pools: one host directory per slot under the data
directory's ``volumes/``, bind-mounted read-write into one running node at a
time and handed from a stopped node to its replacement."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from rollout import names
from rollout.backends.lab.processes import node_running
from rollout.backends.lab.records import LabContext, NodeRecord, read_records
from rollout.errors import DriverError
from rollout.protocols import Clock


def volume_slot_dir(lab: LabContext, env: str, role: str, slot: int) -> Path:
    """The data volume of one slot of a pool: a directory under the data dir."""
    return lab.data.volumes / f"{names.name(env, 'environment')}-{names.name(role, 'role')}-{slot}"


def allocate_volume(lab: LabContext, env: str, role: str) -> Path:
    """The lowest slot whose volume no node record names (call under lab_lock)."""
    held = {r.volume_dir for r in read_records(lab) if r.volume_dir}
    for slot in itertools.count(1):
        path = volume_slot_dir(lab, env, role, slot)
        if str(path) not in held:
            if not path.is_dir():
                path.mkdir(parents=True)
                # The volume is a directory of the node (mounted at volume_path),
                # where services that are not root may need to look: 0755, as a
                # directory made inside the node would be. Its parent stays 0700.
                os.chmod(path, 0o755)
            return path
    raise AssertionError("unreachable")


def volume_holder(lab: LabContext, rec: NodeRecord) -> NodeRecord | None:
    """Another node whose machine runs with ``rec``'s volume mounted, if any."""
    if not rec.volume_dir:
        return None
    for other in read_records(lab):
        if other.name != rec.name and other.volume_dir == rec.volume_dir and node_running(
                lab, other):
            return other
    return None


def wait_volume_free(lab: LabContext, rec: NodeRecord, clock: Clock,
                      timeout: float = 20.0) -> None:
    """A volume is mounted by one machine at a time: wait for a holder that is
    going away (a destroy in flight) to exit; refuse a holder that stays."""
    deadline = clock.now() + timeout
    while (holder := volume_holder(lab, rec)) is not None:
        if not holder.removing or clock.now() > deadline:
            raise DriverError(
                f"node {rec.name}: its volume {rec.volume_dir} is mounted by node "
                f"{holder.name}, which runs",
                hint=f"stop or destroy {holder.name} first; a volume moves only between "
                "stopped nodes",
            )
        clock.sleep(0.1)
