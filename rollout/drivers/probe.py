"""Network probes with a TOTAL deadline: a TCP connect and an HTTP GET.

The readiness probes and the smoke gate's HTTP checks run inside the
controller's observe loop, so a probe must end by its deadline whatever the
peer does. A socket timeout alone bounds each read, not the call: a server
that sends one header byte per second keeps ``http.client`` reading for as long
as it likes. Here every read gets only the time left before the deadline, and
a probe that runs out raises :class:`ProbeError` ("no complete answer within
2s").

:func:`http_get` lets :mod:`http.client` parse the answer (status line,
headers, chunked or sized bodies) from a reader that enforces the deadline.
"""

from __future__ import annotations

import http.client
import io
import socket
import time
from dataclasses import dataclass
from typing import Any

from rollout.errors import DriverError

#: At most this much of a body is read (an HTTP check looks for a substring).
BODY_LIMIT = 65536


class ProbeError(DriverError):
    """A probe got no (complete) answer: refused, reset, or out of time."""


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: str


def _left(deadline: float, what: str, timeout: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ProbeError(f"{what}: no complete answer within {timeout:.3g}s")
    return left


class _DeadlineReader(io.RawIOBase):
    """A socket's bytes, each read limited to the time left before the deadline."""

    def __init__(self, sock: socket.socket, deadline: float, what: str, timeout: float) -> None:
        self._sock, self._deadline, self._what, self._timeout = sock, deadline, what, timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(_left(self._deadline, self._what, self._timeout))
        return self._sock.recv_into(buffer)


class _Replay:
    """What :class:`http.client.HTTPResponse` reads from: ``makefile`` only."""

    def __init__(self, reader: _DeadlineReader) -> None:
        self._reader = reader

    def makefile(self, *_args: Any, **_kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(self._reader)


def _connect(host: str, port: int, deadline: float, what: str,
             timeout: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=_left(deadline, what, timeout))
    except TimeoutError:
        raise ProbeError(f"{what}: no connection within {timeout:.3g}s") from None
    except OSError as exc:
        raise ProbeError(f"{what}: {exc.strerror or exc}") from None


def tcp_open(host: str, port: int, timeout: float) -> None:
    """Connect to ``host:port`` and close at once; ProbeError when that fails
    or takes longer than ``timeout`` seconds."""
    what = f"tcp {_hostport(host, port)}"
    _connect(host, port, time.monotonic() + timeout, what, timeout).close()


def http_get(host: str, port: int, path: str, timeout: float, *,
             read_body: bool = True, user_agent: str = "rollout-probe") -> HttpAnswer:
    """GET ``http://host:port/path``: its status and (up to :data:`BODY_LIMIT`
    bytes of) its body, all within ``timeout`` seconds in total. Any status is
    an answer; no complete answer in time, or none at all, is a ProbeError.
    ``read_body=False`` stops after the headers (the body is then empty)."""
    if not path.startswith("/") or any(c in path for c in " \r\n\t"):
        raise ProbeError(f"http {path!r}: the path must start with '/' and hold no whitespace")
    where = _hostport(host, port)
    what = f"GET http://{where}{path}"
    deadline = time.monotonic() + timeout
    sock = _connect(host, port, deadline, what, timeout)
    try:
        request = (f"GET {path} HTTP/1.1\r\nHost: {where}\r\nUser-Agent: {user_agent}\r\n"
                   "Accept: */*\r\nConnection: close\r\n\r\n").encode("ascii")
        sock.settimeout(_left(deadline, what, timeout))
        sock.sendall(request)
        response = http.client.HTTPResponse(
            _Replay(_DeadlineReader(sock, deadline, what, timeout)),  # type: ignore[arg-type]
            method="GET",
        )
        response.begin()
        body = response.read(BODY_LIMIT) if read_body else b""
        return HttpAnswer(response.status, body.decode("utf-8", "replace"))
    except TimeoutError:
        raise ProbeError(f"{what}: no complete answer within {timeout:.3g}s") from None
    except (OSError, http.client.HTTPException) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ProbeError(f"{what}: {type(exc).__name__}: {detail}") from None
    finally:
        sock.close()


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
