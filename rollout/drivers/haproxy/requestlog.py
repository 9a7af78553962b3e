"""The pool's recent requests, as HAProxy logs them: a unix datagram socket
the controller binds while it runs, and a bounded ring of what arrived.

The lab's HAProxy config (:func:`log_lines`) makes a pool's frontend send one
datagram per request to ``requests-BACKEND.sock`` under the lab's directory,
in a raw JSON format: the frontend, the method, the URI (path and query) and
the captured request headers, in :data:`CAPTURED` order plus the pool's
allowed ones. A datagram socket, because HAProxy never waits for a log
reader: when the controller is slow the kernel's buffer fills and lines are
dropped, and when nobody is bound (no rollout runs, or the file is stale)
HAProxy's send fails and the line is dropped too. Users' requests are never
delayed by the log.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from rollout.core.shadow import Request
from rollout.errors import DriverError

#: Request headers every logging frontend captures (the replay sends them on).
CAPTURED = ("Host", "Accept", "Accept-Encoding", "Accept-Language", "User-Agent")
#: The most a logged line may hold; longer ones are cut by HAProxy.
LINE_LENGTH = 8192
#: HAProxy's own per-header capture length.
HEADER_LENGTH = 256


def socket_path(lab_dir: Path, backend: str) -> Path:
    """Where the pool ``backend``'s frontend sends its request log."""
    return lab_dir / f"requests-{backend}.sock"


def captured(allow: Sequence[str]) -> tuple[str, ...]:
    """The headers a frontend captures: :data:`CAPTURED` and the allowed ones."""
    extra = [h for h in allow if h.lower() not in {c.lower() for c in CAPTURED}]
    return (*CAPTURED, *(h.title() for h in extra))


def log_lines(path: str, headers: Sequence[str]) -> list[str]:
    """The frontend lines that log each request to ``path`` (a checked,
    absolute path), capturing ``headers`` (checked names)."""
    fields = ",".join(f'\\"%[capture.req.hdr({i}),json(utf8s)]\\"' for i in range(len(headers)))
    fmt = (r'{\"f\":\"%f\",\"m\":\"%[capture.req.method,json(utf8s)]\",'
           r'\"u\":\"%[capture.req.uri,json(utf8s)]\",\"h\":[' + fields + "]}")
    return [
        f"    log unix@{path} len {LINE_LENGTH} format raw local0 info",
        *(f"    capture request header {h} len {HEADER_LENGTH}" for h in headers),
        f'    log-format "{fmt}"',
    ]


def parse_line(line: bytes, frontend: str, headers: Sequence[str]) -> Request | None:
    """One logged line as a Request (None: not this frontend's, or unreadable).
    A header HAProxy did not see is logged as ``-``."""
    text = line.decode("utf-8", "replace")
    start = text.find("{")
    try:
        data = json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("f") != frontend:
        return None
    method, uri, values = data.get("m"), data.get("u"), data.get("h")
    if not isinstance(method, str) or not isinstance(uri, str) or not uri.startswith("/"):
        return None
    pairs = tuple((name, value) for name, value in zip(headers, values or [], strict=False)
                  if isinstance(value, str) and value not in ("", "-"))
    return Request(method, uri, pairs)


class RequestLog:
    """Binds ``path`` and keeps the last ``capacity`` requests of ``frontend``
    while open. Nothing happens until :meth:`open`; :meth:`close` removes the
    socket file."""

    def __init__(self, path: Path, frontend: str, headers: Sequence[str],
                 capacity: int = 2000) -> None:
        self.path = path
        self.frontend = frontend
        self.headers = tuple(headers)
        self._ring: deque[Request] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        """Bind the socket (replacing a stale file: the pool's lease is held, so
        no other controller of this pool is bound to it) and start reading."""
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.path.unlink(missing_ok=True)
            sock.bind(str(self.path))
            # HAProxy runs as root in the lab, like the controller; nobody else
            # may write requests into the ring.
            os.chmod(self.path, 0o600)
        except OSError as exc:
            sock.close()
            raise DriverError(f"{self.path}: cannot bind the request log socket: "
                              f"{exc.strerror or exc}",
                              hint="check that the lab's directory exists and is writable "
                                   "(rollout lab up)") from None
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(target=self._read, args=(sock,),
                                        name=f"request-log-{self.frontend}", daemon=True)
        self._thread.start()

    def _read(self, sock: socket.socket) -> None:
        while self._sock is sock:
            try:
                line = sock.recv(LINE_LENGTH + 1024)
            except TimeoutError:
                continue
            except OSError:
                return
            req = parse_line(line, self.frontend, self.headers)
            if req is not None:
                with self._lock:
                    self._ring.append(req)

    def recent(self) -> tuple[Request, ...]:
        """The requests seen so far, oldest first."""
        with self._lock:
            return tuple(self._ring)

    def close(self) -> None:
        """Stop reading and remove the socket file (lines sent from now on are dropped)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._thread is not None:
            self._thread.join(timeout=2)
        sock.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> RequestLog:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["CAPTURED", "RequestLog", "captured", "log_lines", "parse_line", "socket_path"]
