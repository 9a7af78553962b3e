"""Node records: one JSON file per lab node, written atomically.

A record is written *before* the node is started (it reserves the address)
and updated with the pid afterwards, so a crash in between leaves a record the
next run can see and reconcile, never an unrecorded machine.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from rollout import names
from rollout.config import LabSettings
from rollout.errors import DriverError
from rollout.fsio import write_atomic
from rollout.paths import PRIVATE_FILE, DataDir, private_dir


@dataclass(frozen=True)
class LabContext:
    """Where the lab keeps its state, and its network settings."""

    data: DataDir
    settings: LabSettings

    @property
    def nodes_dir(self) -> Path:
        return self.data.lab / "nodes"

    def node_dir(self, name: str) -> Path:
        return self.nodes_dir / names.name(name, "node name")

    @property
    def client_key(self) -> Path:
        """The lab's SSH client key; its .pub is every node's authorized key."""
        return self.data.lab / "ssh" / "id_ed25519"


@dataclass(frozen=True)
class NodeRecord:
    """What the lab knows about one node, persisted as record.json."""

    name: str
    address: str
    role: str
    env: str
    image_id: str
    image_version: str
    rollout_id: str | None
    created_at: float
    pid: int | None
    writable: bool
    image_dir: str
    console_log: str = ""
    started_at: float | None = None
    # Set by a fast destroy: the machine is going away and must not be listed.
    removing: bool = False
    # A data volume: a host directory bind-mounted read-write at volume_path.
    # Several records may name one directory (an old node stopped, its
    # replacement running); only one of them may run at a time.
    volume_dir: str | None = None
    volume_path: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "node record") -> NodeRecord:
        known = {f.name for f in fields(cls)}
        try:
            rec = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise DriverError(
                f"{where}: not a valid node record: {exc}",
                hint="remove the node with `rollout lab down`, or delete the file",
            ) from None
        names.name(rec.name, "node name", where)
        names.address(rec.address, where)
        return rec


def record_path(lab: LabContext, name: str) -> Path:
    return lab.node_dir(name) / "record.json"


def write_record(lab: LabContext, rec: NodeRecord) -> None:
    text = json.dumps(rec.to_json(), indent=2, sort_keys=True) + "\n"
    try:
        write_atomic(record_path(lab, rec.name), text)
    except OSError as exc:
        raise DriverError(
            f"{record_path(lab, rec.name)}: cannot write node record: {exc}"
        ) from None


def read_record(lab: LabContext, name: str) -> NodeRecord | None:
    path = record_path(lab, name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DriverError(
            f"{path}: cannot read node record: {exc}",
            hint="remove the node with `rollout lab down`, or delete the directory",
        ) from None
    if not isinstance(data, dict):
        raise DriverError(f"{path}: not a valid node record (expected a JSON object)")
    return NodeRecord.from_json(data, str(path))


def read_records(lab: LabContext) -> list[NodeRecord]:
    """Every recorded node, sorted by creation time then name."""
    if not lab.nodes_dir.is_dir():
        return []
    recs = []
    for entry in sorted(lab.nodes_dir.iterdir()):
        if entry.is_dir() and not entry.name.startswith("."):
            rec = read_record(lab, entry.name)
            if rec is not None:
                recs.append(rec)
    return sorted(recs, key=lambda r: (r.created_at, r.name))


@contextmanager
def lab_lock(lab: LabContext) -> Iterator[None]:
    """An exclusive lock on the lab's records (address allocation, network setup)."""
    private_dir(lab.data.lab)
    fd = os.open(lab.data.lab / "lock", os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
