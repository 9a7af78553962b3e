"""A client for HAProxy's admin runtime API (the "stats socket" CLI).

Reach it by URL::

    unix:///var/lib/rollout/lab/haproxy.sock
    tcp://127.0.0.1:9999
    ssh://root@lb.example:22/run/haproxy/admin.sock   (runs socat on the LB host)

The API is line-based and ``;`` chains commands, so every name and address that
goes into a line is validated with :mod:`rollout.names` first, and a raw line
holding a newline, ``;`` or a control character is refused before anything is
sent. HAProxy answers errors in plain text ("No such server."); these become
:class:`~rollout.errors.DriverError` naming the socket, backend and server.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from types import TracebackType
from typing import Literal, NoReturn
from urllib.parse import unquote, urlsplit

from rollout import names
from rollout.drivers.haproxy.parse import (
    ServerStateRow,
    StatRow,
    parse_servers_state,
    parse_show_stat,
)
from rollout.drivers.haproxy.transport import SocketTransport, SshTransport, Transport
from rollout.errors import ConfigError, DriverError
from rollout.model import Admin

ServerState = Literal["ready", "drain", "maint"]
ServerHealth = Literal["up", "stopping", "down"]

# First lines HAProxy 2.6 answers when a command fails (management guide and
# recorded answers). Success answers never start like this.
_ERROR_ANSWER = re.compile(
    r"^(No such|Unknown command|Can't|Cannot|Permission denied|Invalid|Require|Missing|"
    r"Unexpected|Not enough|Too many|Unable|Failed|'[^']*' expects)",
)
_ADDR_OK = re.compile(r"^(IP changed from|no need to change the addr)")
_WORD_BAD = re.compile(r"[\x00-\x20;\x7f]")


def _check_line(line: str) -> str:
    """A runtime API line: single-space separated words, none holding
    whitespace, ';' or a control character (each would start a new command)."""
    if not isinstance(line, str) or not line:
        raise ConfigError("HAProxy runtime: empty command line")
    for word in line.split(" "):
        if not word or _WORD_BAD.search(word):
            raise ConfigError(
                f"HAProxy runtime: refusing command line {line!r}: an argument is empty or "
                "holds whitespace, ';' or a control character",
                hint="validate names with rollout.names before building a command",
            )
    return line


class HAProxyRuntime:
    """Commands for one HAProxy process, over one transport.

    Each call is a single bounded exchange: a refused or missing socket, a
    timeout and an error answer all raise ``DriverError``.
    """

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        ssh_key: str | None = None,
        known_hosts: str | None = None,
        timeout: float = 5.0,
        allow_remote_tcp: bool = False,
    ) -> HAProxyRuntime:
        """Build a runtime from ``unix://``, ``tcp://`` or ``ssh://`` (see module doc).
        Nothing is connected until the first command. ``tcp://`` to another
        host is refused unless ``allow_remote_tcp``: the admin API would cross
        the network unencrypted and unauthenticated (use ``ssh://``)."""
        if not timeout > 0:
            raise ConfigError(f"HAProxy runtime {url}: timeout must be > 0 (got {timeout!r})")
        if not isinstance(url, str) or _WORD_BAD.search(url):
            raise ConfigError(f"HAProxy runtime URL {url!r} holds whitespace, ';' or controls")
        parts = urlsplit(url)
        if parts.scheme == "unix":
            path = unquote(parts.netloc + parts.path)
            if not path.startswith("/"):
                raise ConfigError(
                    f"HAProxy runtime URL {url!r}: the socket path must be absolute",
                    hint="write unix:///path/to/admin.sock (three slashes)",
                )
            return cls(SocketTransport(url, socket.AF_UNIX, path, timeout))
        if parts.scheme == "tcp":
            try:
                host, port = parts.hostname, parts.port
            except ValueError:
                host, port = None, None
            if not host or port is None or parts.path not in ("", "/"):
                raise ConfigError(
                    f"HAProxy runtime URL {url!r}: expected tcp://HOST:PORT",
                    hint="e.g. tcp://127.0.0.1:9999 for 'stats socket ipv4@127.0.0.1:9999'",
                )
            remote = names.remote_tcp_host(url)
            if remote is not None and not allow_remote_tcp:
                raise ConfigError(
                    f"HAProxy runtime URL {url!r}: {remote} is not this host, and tcp:// "
                    "sends the admin API unencrypted and unauthenticated",
                    hint="use ssh://user@host/path/to/socket, or set "
                    "haproxy.allow_remote_tcp: true if the network is trusted",
                )
            return cls(
                SocketTransport(
                    url, socket.AF_INET6 if ":" in host else socket.AF_INET, (host, port), timeout
                )
            )
        if parts.scheme == "ssh":
            try:
                host, port = parts.hostname, parts.port or 22
            except ValueError:
                host, port = None, 22
            path = unquote(parts.path)
            if not host or not parts.username or not path.startswith("/") or path == "/":
                raise ConfigError(
                    f"HAProxy runtime URL {url!r}: expected ssh://USER@HOST[:PORT]/path/to/socket",
                    hint="e.g. ssh://root@10.0.0.5/run/haproxy/admin.sock",
                )
            return cls(
                SshTransport(
                    url,
                    host=host,
                    user=parts.username,
                    port=port,
                    socket_path=path,
                    ssh_key=ssh_key,
                    known_hosts=known_hosts,
                    timeout=timeout,
                )
            )
        raise ConfigError(
            f"HAProxy runtime URL {url!r}: unknown scheme {parts.scheme!r}",
            hint="use unix:///path, tcp://host:port or ssh://user@host/path",
        )

    @property
    def url(self) -> str:
        return self._transport.url

    def close(self) -> None:
        """Close a kept SSH connection (a no-op for unix and TCP)."""
        self._transport.close()

    def __enter__(self) -> HAProxyRuntime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- raw -------------------------------------------------------------

    def command(self, line: str) -> str:
        """Send one validated line; return the answer. An answer that HAProxy
        uses for errors ("No such server.", "Unknown command ...") raises."""
        answer = self._transport.send(_check_line(line))
        self._raise_if_error(line, answer)
        return answer

    def _raise_if_error(self, line: str, answer: str, where: str = "") -> None:
        first = answer.strip().splitlines()[0] if answer.strip() else ""
        if _ERROR_ANSWER.match(first):
            self._fail(line, first, where)

    def _fail(self, line: str, answer: str, where: str) -> NoReturn:
        raise DriverError(
            f"HAProxy runtime {self.url}: {line!r} failed{where}: {answer.strip()[:300]}",
            hint="check the backend and server names against the HAProxy config",
        )

    def _quiet(self, line: str, where: str) -> None:
        """Commands that answer nothing on success: any text is an error."""
        answer = self._transport.send(_check_line(line))
        if answer.strip():
            self._fail(line, answer, where)

    @staticmethod
    def _server(backend: str, server: str) -> tuple[str, str]:
        b = names.backend(backend, "HAProxy runtime: backend")
        s = names.backend(server, "HAProxy runtime: server")
        return f"{b}/{s}", f" (backend {b!r}, server {s!r})"

    # -- reading ---------------------------------------------------------

    def show_stat(self, backend: str) -> list[StatRow]:
        """The server rows of ``backend`` (type 4 = servers only)."""
        b = names.backend(backend, "HAProxy runtime: backend")
        line = f"show stat {b} 4 -1"
        answer = self._transport.send(_check_line(line))
        self._raise_if_error(line, answer, f" (backend {b!r})")
        return [r for r in parse_show_stat(answer) if r.pxname == b]

    def servers_state_text(self, backend: str | None = None) -> str:
        """Raw ``show servers state`` text, as the server-state-file wants it."""
        line = "show servers state"
        where = ""
        if backend is not None:
            b = names.backend(backend, "HAProxy runtime: backend")
            line, where = f"{line} {b}", f" (backend {b!r})"
        answer = self._transport.send(_check_line(line))
        self._raise_if_error(line, answer, where)
        if not answer.lstrip().startswith("1"):
            self._fail(line, answer or "(empty answer)", where)
        return answer

    def show_servers_state(self, backend: str | None = None) -> list[ServerStateRow]:
        return parse_servers_state(self.servers_state_text(backend))

    def show_info(self) -> dict[str, str]:
        """``show info`` as a dict (Pid, Version, Uptime_sec, ...)."""
        info: dict[str, str] = {}
        for row in self.command("show info").splitlines():
            key, sep, value = row.partition(":")
            if sep:
                info[key.strip()] = value.strip()
        return info

    # -- changing a server slot -----------------------------------------

    def set_server_addr(self, backend: str, server: str, addr: str, port: int) -> None:
        ref, where = self._server(backend, server)
        a = names.address(addr, f"HAProxy runtime: address for {ref}")
        p = names.port(port, f"HAProxy runtime: port for {ref}")
        line = f"set server {ref} addr {a} port {p}"
        answer = self._transport.send(_check_line(line))
        if not _ADDR_OK.match(answer.strip()):
            self._fail(line, answer or "(empty answer)", where)

    def set_server_state(self, backend: str, server: str, state: ServerState | Admin) -> None:
        ref, where = self._server(backend, server)
        value = str(state.value if isinstance(state, Admin) else state)
        if value not in ("ready", "drain", "maint"):
            raise ConfigError(
                f"HAProxy runtime: state for {ref} must be ready, drain or maint (got {state!r})"
            )
        self._quiet(f"set server {ref} state {value}", where)

    def set_server_health(self, backend: str, server: str, health: ServerHealth) -> None:
        """Force the health; with checks on it lasts until the next check result."""
        ref, where = self._server(backend, server)
        if health not in ("up", "stopping", "down"):
            raise ConfigError(
                f"HAProxy runtime: health for {ref} must be up, stopping or down (got {health!r})"
            )
        self._quiet(f"set server {ref} health {health}", where)

    def set_server_states(self, changes: Sequence[tuple[str, str, Admin]]) -> None:
        """Several ``set server B/S state X`` (backend, server, admin) in ONE
        exchange: HAProxy runs ';'-separated commands of a line one after the
        other in the same CLI session, without serving requests in between
        on a loaded process for long (the blue-green switch)."""
        lines = []
        for backend, server, admin in changes:
            ref, _ = self._server(backend, server)
            lines.append(_check_line(f"set server {ref} state {Admin(admin).value}"))
        if not lines:
            return
        line = "; ".join(lines)
        answer = self._transport.send(line)
        if answer.strip():
            self._fail(line, answer, " (one batch)")

    def set_weight(self, backend: str, server: str, weight: int | None) -> None:
        """``set weight``: an absolute weight 0..256, or None for the weight the
        config gave the server (``100%`` is relative to that initial weight)."""
        ref, where = self._server(backend, server)
        if weight is None:
            value = "100%"
        elif isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 256:
            raise ConfigError(f"HAProxy runtime: weight for {ref} must be 0..256 (got {weight!r})")
        else:
            value = str(weight)
        self._quiet(f"set weight {ref} {value}", where)

    def enable_health(self, backend: str, server: str) -> None:
        ref, where = self._server(backend, server)
        self._quiet(f"enable health {ref}", where)

    def disable_health(self, backend: str, server: str) -> None:
        ref, where = self._server(backend, server)
        self._quiet(f"disable health {ref}", where)
