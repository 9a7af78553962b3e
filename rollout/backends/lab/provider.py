"""The lab provider: a pool's nodes are systemd-nspawn machines on this host.

Implements :class:`rollout.protocols.Provider` on top of ``rollout.backends.lab.nodes``.
Node states come from the node records plus a check that the recorded pid is
really that node's systemd-nspawn:

| record                 | nspawn alive | listed as |
|------------------------|--------------|-----------|
| present                | yes          | RUNNING   |
| present                | no           | STOPPED   |
| present, ``removing``  | any          | REMOVING (destroyed; finish_removal ends it) |
| present, ``writable``  | any          | not listed (a bake's builder)                |
| absent                 |              | not listed (GONE) |

Removal takes two steps, both journaled by the core: :meth:`LabProvider.destroy`
marks the record and asks nspawn for a clean poweroff, and returns at once;
:meth:`LabProvider.finish_removal` waits (bounded) for nspawn to exit and
deletes the netns, veth, keys and record. ``list`` and ``readiness`` only read.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from rollout import names
from rollout.backends.lab import nodes, orphans
from rollout.backends.lab.records import LabContext, NodeRecord, read_record, write_record
from rollout.config import Pool
from rollout.drivers.probe import ProbeError, http_get, tcp_open
from rollout.errors import DriverError, NotFoundError
from rollout.model import LaunchSpec, Node, NodeState, Readiness, SshTarget
from rollout.protocols import ImageStore, Provider

# Serialises cleanups in this process: a finish_removal and a launch of the
# same name may run on two of the controller's workers.
_cleanup_lock = threading.Lock()


class LabProvider(Provider):
    """Starts and stops the nspawn nodes of one pool (role in an environment)."""

    def __init__(self, lab: LabContext, pool: Pool, images: ImageStore) -> None:
        self.lab = lab
        self.pool = pool
        self.images = images

    # -- helpers ---------------------------------------------------------------

    def _mine(self, rec: NodeRecord) -> bool:
        # Writable nodes are bakes' builders of this role, never pool members.
        return rec.role == self.pool.role and rec.env == self.pool.env and not rec.writable

    def _node(self, rec: NodeRecord) -> Node:
        running = nodes.node_running(self.lab, rec)
        state = NodeState.RUNNING if running else NodeState.STOPPED
        if rec.removing:
            state = NodeState.REMOVING
        labels = {"image_dir": rec.image_dir}
        if rec.volume_dir:
            labels["volume"] = rec.volume_dir
        if rec.rollout_id:
            labels["rollout_id"] = rec.rollout_id
        return Node(
            name=rec.name,
            address=rec.address,
            role=rec.role,
            env=rec.env,
            image_id=rec.image_id,
            image_version=rec.image_version,
            state=state,
            created_at=rec.created_at,
            target=rec.address,
            rollout_id=rec.rollout_id,
            labels=labels,
        )

    def _record(self, node: Node) -> NodeRecord:
        rec = read_record(self.lab, names.name(node.name, "node name"))
        if rec is None or not self._mine(rec) or rec.removing:
            raise NotFoundError(
                f"node {node.name}: not a node of pool {self.pool.role} in {self.pool.env} "
                f"({self.lab.nodes_dir})"
            )
        return rec

    # -- Provider --------------------------------------------------------------

    def list(self) -> list[Node]:
        """The pool's nodes, those being removed included (REMOVING). Read-only."""
        return [self._node(rec) for rec in nodes.list_nodes(self.lab) if self._mine(rec)]

    def launch(self, spec: LaunchSpec) -> Node:
        names.name(spec.name, "node name")
        if spec.role != self.pool.role or spec.env != self.pool.env:
            raise DriverError(
                f"node {spec.name}: spec is for {spec.role}/{spec.env}, this provider "
                f"serves {self.pool.role}/{self.pool.env}"
            )
        with _cleanup_lock:
            existing = read_record(self.lab, spec.name)
            if existing is not None and existing.removing:
                # A destroy of this name is still being cleaned up in the background:
                # finish it now, or its cleanup would tear down the new node's netns.
                nodes.remove_node(self.lab, spec.name)
                existing = None
        if existing is not None:
            return self._node(existing)
        if not spec.image.location:
            raise NotFoundError(f"image {spec.image.id}: has no location (image directory)")
        rec = nodes.start_node(
            self.lab,
            spec.name,
            Path(spec.image.location),
            role=spec.role,
            env=spec.env,
            image_id=spec.image.id,
            image_version=spec.image.version,
            rollout_id=spec.rollout_id,
            volume_path=self.pool.settings.volume,
            volume_dir=self._handed_over(spec),
        )
        return self._node(rec)

    def _handed_over(self, spec: LaunchSpec) -> Path | None:
        """The volume of ``spec.volume_from``, which must be stopped; None when
        the pool keeps no volume or the old node had none (a fresh slot)."""
        if self.pool.settings.volume is None or spec.volume_from is None:
            return None
        old = read_record(self.lab, names.name(spec.volume_from, "node name"))
        if old is None or not old.volume_dir:
            return None
        if nodes.node_running(self.lab, old):
            raise DriverError(
                f"node {spec.name}: cannot take the volume of {old.name}: {old.name} still "
                "runs",
                hint="the old node must be stopped before its volume moves (strategy in_place)",
            )
        return Path(old.volume_dir)

    def readiness(self, node: Node) -> Readiness:
        """One cheap probe: TCP 22, then one ssh call, then one HTTP GET; each
        step has a total deadline (0.5 s, 10 s, 2 s), so a node that answers
        byte by byte cannot hold the observe loop."""
        rec = read_record(self.lab, node.name)
        if rec is None or rec.removing or not nodes.node_running(self.lab, rec):
            return Readiness(False, "the node's systemd-nspawn is not running")
        try:
            tcp_open(rec.address, 22, timeout=0.5)
        except ProbeError as exc:
            return Readiness(False, f"ssh port not open yet: {exc}")
        target = nodes.ssh_target(self.lab, rec.name)
        proc = nodes.ssh_run(
            target,
            "systemctl is-system-running; systemctl --failed --no-legend --plain | cut -d' ' -f1",
            timeout=10.0,
        )
        if proc.returncode == 255:
            return Readiness(False, f"ssh failed: {proc.stderr.strip()}")
        lines = proc.stdout.split()
        state = lines[0] if lines else "unknown"
        if state != "running":
            failed = " ".join(lines[1:])
            detail = f"systemd is {state}" + (f"; failed units: {failed}" if failed else "")
            # "degraded" means boot finished with a failed unit: waiting won't help.
            return Readiness(False, detail, ssh=True, systemd=state,
                             failed=state in ("degraded", "maintenance", "stopping"))
        settings = self.pool.settings
        try:
            status = http_get(rec.address, settings.service_port, settings.health_path, 2.0,
                              read_body=False).status
        except ProbeError as exc:
            return Readiness(False, str(exc), ssh=True, systemd=state)
        # Ready means HTTP answers at all; whether it answers *correctly* is the
        # smoke gate's verdict, which names the failing check.
        return Readiness(True, f"ready (GET {settings.health_path}: HTTP {status})", ssh=True,
                         systemd=state, http=True)

    def stop(self, node: Node) -> None:
        self._record(node)
        nodes.stop_node(self.lab, node.name)

    def start(self, node: Node) -> Node:
        self._record(node)
        return self._node(nodes.restart_node(self.lab, node.name))

    def destroy(self, node: Node) -> None:
        """Mark the node removing and SIGTERM its nspawn (a clean poweroff), and
        return at once: it is listed REMOVING until :meth:`finish_removal`."""
        rec = read_record(self.lab, names.name(node.name, "node name"))
        if rec is None or not self._mine(rec):
            return
        if not rec.removing:
            rec = replace(rec, removing=True)
            write_record(self.lab, rec)
        nodes.signal_node(rec)

    def finish_removal(self, node: Node) -> None:
        """Wait (bounded: the poweroff, then SIGKILL) until the node's nspawn has
        exited, then delete its netns, veth, keys and record. Idempotent; a
        node that is not being removed is left alone."""
        with _cleanup_lock:
            rec = read_record(self.lab, names.name(node.name, "node name"))
            if rec is not None and self._mine(rec) and rec.removing:
                nodes.remove_node(self.lab, rec.name)

    def orphans(self) -> dict[str, str]:
        """This lab's nodes that have no record but still run or hold a netns
        (of any pool: nothing owns them; see :mod:`rollout.backends.lab.orphans`)."""
        return orphans.find_orphans(self.lab)

    def remove_orphan(self, name: str) -> None:
        with _cleanup_lock:
            orphans.remove_orphan(self.lab, name)

    def ssh(self, node: Node) -> SshTarget:
        return nodes.ssh_target(self.lab, names.name(node.name, "node name"))
