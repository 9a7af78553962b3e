"""A TCP server on loopback that answers one byte at a time, for probe tests.

Each connection gets ``answer`` (by default a complete, empty 200 answer) at
one byte per ``interval`` seconds once the request has arrived, then the
server closes it. A probe with only a per-read timeout never times out against
it and reports 200 after about 19 s; a probe with a total deadline must give up
on time.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

SLOW_ANSWER = b"HTTP/1.1 200 OK\r\n\r\n"


class SlowServer:
    """``with SlowServer() as server:`` listens on ``server.port`` until exit."""

    def __init__(self, *, answer: bytes = SLOW_ANSWER, interval: float = 1.0,
                 host: str = "127.0.0.1") -> None:
        self.answer = answer
        self.interval = interval
        self._listener = socket.create_server((host, 0))
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> SlowServer:
        thread = threading.Thread(target=self._accept, name="slow-server", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=self.interval + 1.0)

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._dribble, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _dribble(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5.0)
            conn.recv(65536)  # the request
            for i in range(len(self.answer)):
                if self._stop.wait(self.interval):
                    return
                conn.sendall(self.answer[i:i + 1])
