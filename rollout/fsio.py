"""Crash-safe file writes: readers see the old file or the whole new one.

A temporary file in the same directory is written, fsynced and renamed over the
target, then the directory is fsynced so the rename itself survives a crash.
Records, manifests, HAProxy's server state, metrics and reports all go through
:func:`write_atomic`. Files are private (0600) unless the caller says otherwise:
most of them live in the data directory (see :mod:`rollout.paths`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from rollout.paths import PRIVATE_FILE


def write_atomic(path: Path, data: str | bytes, *, mode: int = PRIVATE_FILE,
                 create_parent: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically and durably. The parent directory
    is created unless ``create_parent`` is False (then a missing one is an error)."""
    path = Path(path)
    if create_parent:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json_atomic(path: Path, data: object, *, mode: int = PRIVATE_FILE) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=mode)
