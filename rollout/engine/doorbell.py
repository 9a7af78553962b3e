"""The listening side of the doorbell (:mod:`rollout.doorbell`): how a live
controller hears `rollout rollback` at once and answers it with the events.

A :class:`Doorbell` binds the pool's unix socket (mode 0600, in a 0700
directory of the data directory) and accepts connections on a thread. A
connection counts only from the same user or root (the kernel's
``SO_PEERCRED``, not anything the client says); its request must name the
same environment, role, project and explicit state store as this controller,
else it is refused with a ``fallback`` answer and the client runs the full
CLI. An accepted request waits as a :class:`Ring` for the controller's loop
(which :meth:`Doorbell.wait` wakes at once): the loop journals the
``rollback_requested`` event on the client's behalf and decides as for a
request journaled by the CLI. From then on every event reaches the client,
then the end (:meth:`Doorbell.finish`). :meth:`Doorbell.close` removes the
socket; a socket left by a killed controller has no listener, so the client
falls back and the next controller replaces it.

``wait`` waits on real time: a controller on a virtual clock gets no doorbell.
"""

from __future__ import annotations

import os
import pwd
import socket
import struct
import threading
from pathlib import Path
from typing import Any

from rollout.core.state import RolloutStatus
from rollout.doorbell import HANDSHAKE_SECONDS, ROLLBACK, decode, encode
from rollout.engine.result import rollback_outcome
from rollout.errors import RolloutError
from rollout.events import Event
from rollout.paths import PRIVATE_FILE, private_dir
from rollout.store.journal import Journal

#: How often the accepting thread looks whether the doorbell closed.
ACCEPT_TICK = 0.2
#: How long a send to a client may block the controller before it is dropped.
SEND_SECONDS = 1.0
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_allowed(peer_uid: int, own_uid: int) -> bool:
    """Whether a client running as ``peer_uid`` may ring a controller running
    as ``own_uid``: the same user, or root."""
    return peer_uid in (own_uid, 0)


def peer_credentials(conn: socket.socket) -> tuple[int, int]:
    """The (pid, uid) of the process at the other end, as the kernel says."""
    pid, uid, _gid = _CREDENTIALS.unpack(
        conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size))
    return pid, uid


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class Ring:
    """One accepted request: who rang, and the connection to answer on."""

    def __init__(self, bell: Doorbell, conn: socket.socket, by: str) -> None:
        self._bell = bell
        self._conn = conn
        self.by = by  # user@host:pid, from the connection's credentials

    def accept(self, patience: float) -> None:
        """Say yes; the events from now on go to this client, which waits
        ``patience`` seconds for the end."""
        if self._bell.send(self._conn, {"accepted": True, "patience": patience}):
            self._bell.subscribe(self._conn)

    def refuse(self, reason: str) -> None:
        """Say no: the client runs the full CLI, which decides as always."""
        self._bell.send(self._conn, {"fallback": reason})
        self._conn.close()


class Doorbell:
    """A pool's doorbell while one controller holds the pool."""

    def __init__(self, path: Path, expect: dict[str, Any], *, uid: int | None = None) -> None:
        self.path = path
        #: What a request must say (env, role, project, state) to be this pool.
        self.expect = expect
        self.uid = os.geteuid() if uid is None else uid
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._rung = threading.Event()
        self._lock = threading.Lock()
        self._sending = threading.Lock()  # events come from worker threads too
        self._rings: list[Ring] = []
        self._subscribers: list[socket.socket] = []

    # --- the socket -----------------------------------------------------------------

    def start(self) -> bool:
        """Bind and listen; False (no doorbell) when another listener answers
        on the path or the socket cannot be made."""
        try:
            private_dir(self.path.parent)
            if self.path.exists() and _answers(self.path):
                return False
            self.path.unlink(missing_ok=True)  # stale: its controller is gone
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(self.path))
            os.chmod(self.path, PRIVATE_FILE)
            sock.listen(8)
            sock.settimeout(ACCEPT_TICK)
        except OSError:
            return False
        self._sock = sock
        self._inode = self.path.stat().st_ino
        self._thread = threading.Thread(target=self._accept, name="doorbell", daemon=True)
        self._thread.start()
        return True

    def close(self) -> None:
        """Stop listening, refuse what waits, drop the clients, remove the socket."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join()
        for ring in self.take():
            ring.refuse("the controller stopped")
        with self._lock:
            subscribers, self._subscribers = self._subscribers, []
        for conn in subscribers:
            conn.close()
        if self._sock is not None:
            self._sock.close()
            try:
                if self.path.stat().st_ino == self._inode:
                    self.path.unlink()
            except OSError:
                pass

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self._greet(conn)
            except OSError:
                conn.close()

    def _greet(self, conn: socket.socket) -> None:
        pid, uid = peer_credentials(conn)
        if not peer_allowed(uid, self.uid):
            conn.close()  # another user: not even an answer
            return
        conn.settimeout(HANDSHAKE_SECONDS)
        request = decode(_read_line(conn))
        wanted = {"op": ROLLBACK, **self.expect}
        if request is None or any(request.get(k) != v for k, v in wanted.items()):
            self.send(conn, {"fallback": "not this controller's pool or request"})
            conn.close()
            return
        conn.settimeout(SEND_SECONDS)
        ring = Ring(self, conn, f"{_user(uid)}@{socket.gethostname()}:{pid}")
        with self._lock:
            self._rings.append(ring)
            self._rung.set()

    # --- the controller's side ------------------------------------------------------

    def take(self) -> list[Ring]:
        """The requests that came in since the last call."""
        with self._lock:
            rings, self._rings = self._rings, []
            self._rung.clear()
        return rings

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds`` of real time, or less if a request comes in."""
        self._rung.wait(seconds)

    def publish(self, event: Event) -> None:
        """Send ``event`` to every accepted client."""
        self._broadcast({"event": event.to_dict(), "text": event.text(),
                         "style": event.style})

    def finish(self, journal: Journal, rollout_id: str, now: float) -> None:
        """Send every accepted client what `rollout rollback` reports for the
        rollout, once it stopped running; one still running (the controller
        stopped before it ended) gets no end, and its client runs the full CLI."""
        if not self._subscribers:
            return
        try:
            state = journal.get(rollout_id)
            if state.status is RolloutStatus.RUNNING:
                return
            result = rollback_outcome(state, journal.wait_totals(rollout_id), now)
            end: dict[str, Any] = {"exit": 0, "error": None, "result": result.to_dict()}
        except RolloutError as exc:
            end = {"exit": int(exc.exit_code), "error": str(exc)}
        self._broadcast({"end": end})

    def subscribe(self, conn: socket.socket) -> None:
        with self._lock:
            self._subscribers.append(conn)

    def send(self, conn: socket.socket, message: dict[str, Any]) -> bool:
        try:
            conn.sendall(encode(message))
            return True
        except OSError:
            conn.close()
            return False

    def _broadcast(self, message: dict[str, Any]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        with self._sending:
            gone = [conn for conn in subscribers if not self.send(conn, message)]
        if gone:
            with self._lock:
                self._subscribers = [c for c in self._subscribers if c not in gone]


def _answers(path: Path) -> bool:
    """Whether a listener answers on ``path`` (False: a stale socket file)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(HANDSHAKE_SECONDS)
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _read_line(conn: socket.socket, limit: int = 4096) -> bytes:
    data = b""
    while b"\n" not in data and len(data) < limit:
        chunk = conn.recv(limit)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


__all__ = ["Doorbell", "Ring", "peer_allowed", "peer_credentials"]
