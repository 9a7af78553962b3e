"""How one line reaches HAProxy's runtime API: a unix socket, TCP, or SSH.

Every command opens a fresh connection (non-interactive mode: HAProxy answers
one line, then closes). A persistent ``prompt`` session would save about 0.2 ms,
but after a seamless reload (``-x sock -sf PID``) it stays attached to the OLD
process, which answers with stale state until it exits: measured on 2.6.12.

SSH keeps ONE fabric connection open and runs ``socat stdio UNIX-CONNECT:PATH``
on a raw session channel per command; that skips invoke's runner threads,
which cost about 100 ms per ``Connection.run``.
"""

from __future__ import annotations

import shlex
import socket
import time
from typing import Any, Protocol

from rollout.errors import DriverError

_CHUNK = 65536


class Transport(Protocol):
    """Sends one command line, returns HAProxy's whole answer."""

    url: str

    def send(self, line: str) -> str: ...

    def close(self) -> None: ...


def _remaining(deadline: float, url: str, line: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DriverError(
            f"HAProxy runtime {url}: no complete answer to {line!r} within the timeout",
            hint="HAProxy may be stalled or overloaded; check its process and log",
        )
    return left


def _exchange(sock: socket.socket, line: str, url: str, deadline: float) -> str:
    """Send ``line`` and read until HAProxy closes the connection."""
    sock.settimeout(_remaining(deadline, url, line))
    sock.sendall(line.encode() + b"\n")
    chunks: list[bytes] = []
    while True:
        sock.settimeout(_remaining(deadline, url, line))
        data = sock.recv(_CHUNK)
        if not data:
            return b"".join(chunks).decode(errors="replace")
        chunks.append(data)


class SocketTransport:
    """A unix (``unix:///path``) or TCP (``tcp://host:port``) stats socket."""

    def __init__(self, url: str, family: socket.AddressFamily, address: Any, timeout: float):
        self.url = url
        self._family = family
        self._address = address
        self._timeout = timeout

    def send(self, line: str) -> str:
        deadline = time.monotonic() + self._timeout
        try:
            with socket.socket(self._family, socket.SOCK_STREAM) as sock:
                sock.settimeout(self._timeout)
                sock.connect(self._address)
                return _exchange(sock, line, self.url, deadline)
        except TimeoutError:
            raise DriverError(
                f"HAProxy runtime {self.url}: no answer to {line!r} within {self._timeout:g}s",
                hint="HAProxy may be stalled or overloaded; check its process and log",
            ) from None
        except OSError as exc:
            raise DriverError(
                f"HAProxy runtime {self.url}: cannot talk to the socket: {exc.strerror or exc}",
                hint="is HAProxy running, with 'stats socket ... level admin' at this address?",
            ) from None

    def close(self) -> None:
        """Nothing stays open between commands."""


class SshTransport:
    """The runtime socket of an HAProxy on another host, reached over SSH."""

    def __init__(
        self,
        url: str,
        *,
        host: str,
        user: str,
        port: int,
        socket_path: str,
        ssh_key: str | None,
        known_hosts: str | None,
        timeout: float,
    ) -> None:
        self.url = url
        self._host, self._user, self._port = host, user, port
        self._remote = f"socat stdio UNIX-CONNECT:{shlex.quote(socket_path)}"
        self._key = ssh_key
        self._known_hosts = known_hosts
        self._timeout = timeout
        self._conn: Any = None  # fabric.Connection, opened on first use

    def _connection(self) -> Any:
        conn = self._conn
        if conn is not None and conn.is_connected:
            return conn
        # Imported here: fabric pulls in paramiko and invoke (~150 ms), which
        # unix and TCP users never need.
        import fabric
        import paramiko

        kwargs: dict[str, Any] = {
            "timeout": self._timeout,
            "banner_timeout": self._timeout,
            "auth_timeout": self._timeout,
            "allow_agent": False,
            "look_for_keys": self._key is None,
        }
        if self._key:
            kwargs["key_filename"] = self._key
        config = fabric.Config(overrides={"load_ssh_configs": False})
        conn = fabric.Connection(
            self._host, user=self._user, port=self._port, connect_kwargs=kwargs, config=config
        )
        # fabric accepts any host key by default; we verify it instead.
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            if self._known_hosts:
                conn.client.load_host_keys(self._known_hosts)
            else:
                conn.client.load_system_host_keys()
            conn.open()
        except (OSError, paramiko.SSHException) as exc:
            raise DriverError(
                f"HAProxy runtime {self.url}: cannot connect over SSH: {exc}",
                hint="check the host, the key (ssh_key) and that the host key is in known_hosts",
            ) from None
        self._conn = conn
        return conn

    def send(self, line: str) -> str:
        import paramiko

        deadline = time.monotonic() + self._timeout
        conn = self._connection()
        try:
            channel = conn.client.get_transport().open_session(timeout=self._timeout)
        except (OSError, EOFError, paramiko.SSHException):
            # The kept connection died (sshd restarted, network blip): reconnect once.
            self.close()
            conn = self._connection()
            try:
                channel = conn.client.get_transport().open_session(timeout=self._timeout)
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise DriverError(
                    f"HAProxy runtime {self.url}: SSH channel failed: {exc}"
                ) from None
        try:
            channel.settimeout(_remaining(deadline, self.url, line))
            channel.exec_command(self._remote)
            channel.sendall(line.encode() + b"\n")
            out: list[bytes] = []
            while True:
                channel.settimeout(_remaining(deadline, self.url, line))
                data = channel.recv(_CHUNK)
                if not data:
                    break
                out.append(data)
            if not channel.status_event.wait(_remaining(deadline, self.url, line)):
                raise TimeoutError
            status = channel.exit_status
            err = b""
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(_CHUNK)
        except TimeoutError:
            raise DriverError(
                f"HAProxy runtime {self.url}: no answer to {line!r} within {self._timeout:g}s",
                hint="HAProxy or the SSH link may be stalled",
            ) from None
        except (OSError, paramiko.SSHException) as exc:
            raise DriverError(f"HAProxy runtime {self.url}: SSH I/O failed: {exc}") from None
        finally:
            channel.close()
        if status != 0:
            detail = err.decode(errors="replace").strip() or f"exit status {status}"
            raise DriverError(
                f"HAProxy runtime {self.url}: remote socat failed: {detail}",
                hint="is socat installed on the LB host, and does the socket path exist?",
            )
        return b"".join(out).decode(errors="replace")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
