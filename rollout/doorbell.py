"""The doorbell: a unix socket by which `rollout rollback` reaches the live
controller of its pool without the CLI's slow start.

Stdlib only, and nothing of rollout's heavy modules: the fast client
(:mod:`rollout.entry`) imports it before anything else. The listener side is
:mod:`rollout.engine.doorbell`.

The socket's path is derived only from what a client knows without reading
the inventory: the data directory, the environment and the role
(:func:`socket_path`). The wire format is one JSON object per line:

client -> controller::

    {"op": "rollback", "env": ..., "role": ..., "project": ..., "state": ...}

controller -> client, in order:

- ``{"accepted": true}``, or ``{"fallback": REASON}`` and the connection
  closes (the client then runs the full CLI, which decides as always);
- ``{"event": {...}, "text": ..., "style": ...}`` for every event of the
  rollout from the journaled request on (the event's ``to_dict()``, its
  text line and style);
- ``{"end": {"exit": CODE, "error": ..., "restored": [...], "wall": ...,
  "waits": {...}}}``: what ``rollout rollback`` reports and exits with.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

TYPE_CHECKING = False  # typing's import is not free at the client's start
if TYPE_CHECKING:
    from typing import Any

#: The one operation the doorbell serves.
ROLLBACK = "rollback"
#: The longest path a unix socket can bind on Linux (sun_path less its NUL).
MAX_PATH = 107
#: How long either side waits for the other's line before giving up.
HANDSHAKE_SECONDS = 2.0

#: Environment and role names, the rule of rollout.names (no '.' or '/': the
#: names are parts of the socket's file name).
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def valid_name(name: str) -> bool:
    """Whether ``name`` is a valid environment or role name."""
    return _NAME.fullmatch(name) is not None


def socket_dir(data_root: Path) -> Path:
    """Where the controllers' doorbells live (mode 0700)."""
    return data_root / "run"


def socket_path(data_root: Path, env: str, role: str) -> Path | None:
    """The doorbell of pool ``env/role`` under the data directory, or None
    when the names or the path length rule a unix socket out."""
    if not (valid_name(env) and valid_name(role)):
        return None
    path = socket_dir(data_root) / f"{env}.{role}.bell"
    return path if len(str(path)) <= MAX_PATH else None


def encode(message: dict[str, Any]) -> bytes:
    """One line of the wire format."""
    return (json.dumps(message, sort_keys=True, default=str) + "\n").encode()


def decode(line: bytes) -> dict[str, Any] | None:
    """One line read back, or None when it is not a JSON object."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


__all__ = ["HANDSHAKE_SECONDS", "MAX_PATH", "ROLLBACK", "decode", "encode", "socket_dir",
           "socket_path", "valid_name"]
