"""How one line reaches HAProxy's runtime API: a unix socket, TCP, or SSH.

Every command opens a fresh connection (non-interactive mode: HAProxy answers
one line, then closes); a command over the unix socket costs about 0.05 ms
here, so a persistent ``prompt`` session would save next to nothing, and after
a seamless reload (``-x sock -sf PID``) it stays attached to the OLD process,
which answers with stale state until it exits (measured on 2.6.12).

SSH keeps ONE fabric connection and ONE session channel open, running a tiny
python3 relay on the LB host (Ansible-managed hosts have python3) that opens a
fresh unix-socket connection per line, so it stays reload-safe. Measured on
loopback: a socat per command costs about 125 ms even on a raw channel (sshd
leaves Nagle on for non-interactive sessions, and each of the several small
packets of a channel open/exec/close waits for a 40 ms delayed ACK), a fabric
``Connection.run`` about 210 ms; one answer through the relay is one write, so
a command costs well under a millisecond plus the network round trip.
"""

from __future__ import annotations

import shlex
import socket
import time
from typing import Any, Protocol

from rollout.errors import DriverError, TransientError

_CHUNK = 65536


class Transport(Protocol):
    """Sends one command line, returns HAProxy's whole answer."""

    url: str

    def send(self, line: str) -> str: ...

    def close(self) -> None: ...


def _remaining(deadline: float, url: str, line: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TransientError(
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
            raise TransientError(
                f"HAProxy runtime {self.url}: no answer to {line!r} within {self._timeout:g}s",
                hint="HAProxy may be stalled or overloaded; check its process and log",
            ) from None
        except OSError as exc:
            # Refused or missing: HAProxy is down or restarting, which may pass.
            raise TransientError(
                f"HAProxy runtime {self.url}: cannot talk to the socket: {exc.strerror or exc}",
                hint="is HAProxy running, with 'stats socket ... level admin' at this address?",
            ) from None

    def close(self) -> None:
        """Nothing stays open between commands."""


# The relay: reads command lines on stdin; answers each with b"0" + HAProxy's
# answer + NUL, or b"1" + the socket error + NUL. HAProxy's text never holds NUL.
_RELAY = """
import socket, sys
path, timeout = sys.argv[1], float(sys.argv[2])
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(timeout)
            conn.connect(path)
            conn.sendall(line)
            parts = []
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                parts.append(data)
        out.write(b"0" + b"".join(parts) + b"\\0")
    except OSError as exc:
        out.write(b"1" + str(exc).encode() + b"\\0")
    out.flush()
"""


class SshTransport:
    """The runtime socket of an HAProxy on another host, reached over SSH.

    Not thread-safe: one relay channel carries one command at a time. The host
    key is verified against ``known_hosts`` (or the user's known_hosts file).
    """

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
        self._remote = f"python3 -c {shlex.quote(_RELAY)} {shlex.quote(socket_path)} {timeout:g}"
        self._key = ssh_key
        self._known_hosts = known_hosts
        self._timeout = timeout
        self._conn: Any = None  # fabric.Connection, opened on first use
        self._chan: Any = None  # the relay's paramiko Channel
        self._buf = b""

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
            conn.client.get_transport().sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, paramiko.SSHException) as exc:
            conn.close()
            # A network error may pass; a refused key or host key will not.
            kind = TransientError if isinstance(exc, OSError) else DriverError
            raise kind(
                f"HAProxy runtime {self.url}: cannot connect over SSH: {exc}",
                hint="check the host, the key (ssh_key) and that the host key is in known_hosts",
            ) from None
        self._conn = conn
        return conn

    def _channel(self) -> Any:
        import paramiko

        chan = self._chan
        if chan is not None and not chan.closed and not chan.exit_status_ready():
            return chan
        self._drop_channel()
        transport = self._connection().client.get_transport()
        try:
            chan = transport.open_session(timeout=self._timeout)
            chan.settimeout(self._timeout)
            chan.exec_command(self._remote)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self.close()
            raise DriverError(
                f"HAProxy runtime {self.url}: cannot start the relay over SSH: {exc}"
            ) from None
        self._chan, self._buf = chan, b""
        return chan

    def _drop_channel(self) -> None:
        if self._chan is not None:
            self._chan.close()
        self._chan, self._buf = None, b""

    def _relay_died(self, chan: Any) -> DriverError:
        err = b""
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(_CHUNK)
        status = chan.exit_status if chan.exit_status_ready() else None
        self._drop_channel()
        detail = err.decode(errors="replace").strip()[-300:] or f"exit status {status}"
        return DriverError(
            f"HAProxy runtime {self.url}: the relay on the LB host stopped: {detail}",
            hint="the LB host needs python3 (as for Ansible); check the SSH user's shell",
        )

    def send(self, line: str) -> str:
        import paramiko

        deadline = time.monotonic() + self._timeout
        chan = self._channel()
        try:
            chan.settimeout(_remaining(deadline, self.url, line))
            chan.sendall(line.encode() + b"\n")
            while b"\0" not in self._buf:
                chan.settimeout(_remaining(deadline, self.url, line))
                data = chan.recv(_CHUNK)
                if not data:
                    raise self._relay_died(chan)
                self._buf += data
        except TimeoutError:
            # A late answer would be read as the next command's: start afresh.
            self._drop_channel()
            raise TransientError(
                f"HAProxy runtime {self.url}: no answer to {line!r} within {self._timeout:g}s",
                hint="HAProxy or the SSH link may be stalled",
            ) from None
        except DriverError:
            self._drop_channel()
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self.close()
            raise TransientError(f"HAProxy runtime {self.url}: SSH I/O failed: {exc}") from None
        frame, _, self._buf = self._buf.partition(b"\0")
        text = frame[1:].decode(errors="replace")
        if frame[:1] != b"0":
            raise TransientError(
                f"HAProxy runtime {self.url}: cannot talk to the socket on the LB host: {text}",
                hint="is HAProxy running there, with its stats socket at this path?",
            )
        return text

    def close(self) -> None:
        """Stop the relay and close the one SSH connection."""
        self._drop_channel()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
