"""The ``rollout`` console script (and ``python -m rollout``).

``rollout rollback --role R`` within a blue-green ``scale_down_delay`` must
switch back in well under a second from the command's start, and the full
CLI's imports alone (Ansible, SQLAlchemy, Alembic, pydantic, click, rich) take
longer. So this module imports only the standard library and rollout's
stdlib-only leaves, and for ``rollback`` first rings the doorbell of the live
controller that holds the pool (:mod:`rollout.doorbell`): if it answers, it
journals the request on our behalf, switches back and streams the events,
which are printed as the full CLI prints them. In every other case (another
command, an option or value this parser does not know, no project found, no
socket, no listener, a refusal, a dropped connection) the arguments go to the
full CLI, :func:`rollout.cli.main.main`, unchanged.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from rollout.doorbell import HANDSHAKE_SECONDS, ROLLBACK, decode, encode, socket_path
from rollout.errors import ExitCode
from rollout.paths import default_data_dir, find_project

# Neither typing nor dataclasses: their imports are a good part of a start
# that must stay short on a loaded host.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

#: The group's options that take a value, and those of ``rollback``.
_GROUP_VALUES = ("--project", "--data-dir", "--state", "--env", "--output")
_ROLLBACK_VALUES = ("--role", "--env", "--output", "--vault-password-file", "--vault-id")
_ROLLBACK_FLAGS = ("--wait-lock", "--no-progress")
_OUTPUTS = ("text", "json")


class Ask:
    """What a ``rollout rollback`` command line asks, resolved as the full CLI
    would resolve it."""

    __slots__ = ("data_dir", "env", "output", "project", "role", "state")

    def __init__(self, *, role: str, env: str, output: str, data_dir: Path, project: Path,
                 state: str | None) -> None:
        self.role = role
        self.env = env
        self.output = output
        self.data_dir = data_dir
        self.project = project
        self.state = state  # --state, else ROLLOUT_STATE_URL, else None

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ask) and other._fields() == self._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return "Ask(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    def request(self) -> dict[str, Any]:
        """The doorbell request (the controller checks every field)."""
        return {"op": ROLLBACK, "env": self.env, "role": self.role,
                "project": str(self.project), "state": self.state}


def _options(args: Sequence[str], values: Sequence[str], flags: Sequence[str],
             ) -> tuple[dict[str, str], list[str]] | None:
    """Parse leading options (``--opt V``, ``--opt=V``, flags) up to the first
    argument; None on anything else (the full CLI then reports it)."""
    found: dict[str, str] = {}
    rest = list(args)
    while rest and rest[0].startswith("-"):
        token = rest.pop(0)
        name, eq, value = token.partition("=")
        if name in flags and not eq:
            found[name] = ""
        elif name in values:
            if not eq:
                if not rest:
                    return None
                value = rest.pop(0)
            found[name] = value  # repeated: the last wins, as with click
        else:
            return None
    return found, rest


def _project(given: str | None, cwd: Path) -> Path | None:
    if given:
        return (cwd / given).resolve()
    return find_project(cwd)


def parse(argv: Sequence[str], environ: Mapping[str, str], cwd: Path) -> Ask | None:
    """The rollback ``argv`` asks for, or None: not a ``rollback`` this fast
    path can resolve without the inventory."""
    group = _options(argv, _GROUP_VALUES, ())
    if group is None:
        return None
    top, rest = group
    if not rest or rest[0] != ROLLBACK:
        return None
    sub = _options(rest[1:], _ROLLBACK_VALUES, _ROLLBACK_FLAGS)
    if sub is None or sub[1]:
        return None
    opts = sub[0]
    role = opts.get("--role")
    env = opts.get("--env") or top.get("--env") or environ.get("ROLLOUT_ENV") or "lab"
    output = opts.get("--output") or top.get("--output") or "text"
    project = _project(top.get("--project") or environ.get("ROLLOUT_PROJECT"), cwd)
    if not role or output not in _OUTPUTS or project is None:
        return None
    data = top.get("--data-dir") or environ.get("ROLLOUT_DATA_DIR") or str(default_data_dir())
    state = top.get("--state") or environ.get("ROLLOUT_STATE_URL") or None
    return Ask(role=role, env=env, output=output, data_dir=(cwd / data).absolute(),
               project=project, state=state)


class _Lines:
    """The controller's answers, one JSON object per line, within a deadline."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = b""
        self.deadline = time.monotonic() + HANDSHAKE_SECONDS

    def next(self) -> dict[str, Any] | None:
        """The next answer; None when the connection ended or timed out."""
        while b"\n" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0:
                return None
            self.conn.settimeout(left)
            try:
                chunk = self.conn.recv(65536)
            except OSError:
                return None
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return decode(line)


def ring(ask: Ask) -> int | None:
    """Ring the doorbell of the pool ``ask`` names and print what comes back
    as ``rollout rollback`` prints it; the exit code, or None if the full CLI
    must handle the command (nothing printed yet in that case, unless the
    controller stopped mid-way)."""
    path = socket_path(ask.data_dir, ask.env, ask.role)
    if path is None:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(HANDSHAKE_SECONDS)
        try:
            conn.connect(str(path))
            conn.sendall(encode(ask.request()))
        except OSError:
            return None  # no socket, or a stale one with no listener
        lines = _Lines(conn)
        answer = lines.next()
        if answer is None or answer.get("accepted") is not True:
            return None
        # The controller's patience with its own switch (drain, LB rise and a
        # lease's lifetime), as the full CLI waits for it.
        lines.deadline = time.monotonic() + float(answer.get("patience", 600.0))
        while (message := lines.next()) is not None:
            if "end" in message:
                return _end(ask, message["end"])
            _print_event(ask, message)
        return None  # the controller stopped before the end: the full CLI carries on
    finally:
        conn.close()


def _print_event(ask: Ask, message: Mapping[str, Any]) -> None:
    if ask.output == "json":
        data = dict(message["event"])
        data.setdefault("ts", round(time.time(), 3))
        print(json.dumps(data, sort_keys=True, default=str), flush=True)
    elif message.get("text") is not None:
        print(message["text"], flush=True)


def _end(ask: Ask, end: Mapping[str, Any]) -> int:
    if end.get("error"):
        print(f"rollout: {end['error']}", file=sys.stderr)
        return int(end["exit"])
    if ask.output == "text" and end.get("result") is not None:
        # The switch is done: the full CLI's renderer may take its time now.
        from rollout.cli.rollouts import report_end

        report_end(ask.output, end["result"])
    return int(end["exit"])


def main(argv: list[str] | None = None) -> None:
    """Run ``rollout ARGV``: the fast rollback, else the full CLI."""
    args = sys.argv[1:] if argv is None else argv
    ask = parse(args, os.environ, Path.cwd())
    if ask is not None:
        try:
            code = ring(ask)
        except KeyboardInterrupt:
            print("rollout: interrupted", file=sys.stderr)
            sys.exit(ExitCode.INTERRUPTED)
        if code is not None:
            sys.exit(code)
    # Imported here, not at the top: its import is what the fast path avoids.
    from rollout.cli.main import main as full_cli

    full_cli(args)


__all__ = ["Ask", "main", "parse", "ring"]
