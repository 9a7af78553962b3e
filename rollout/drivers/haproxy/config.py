"""The text of the lab's HAProxy configuration, and the state file for reloads.

Each pool gets a frontend and a backend of FIXED server slots
(``server-template``), filled and emptied at runtime with ``set server ... addr``
and ``state``. A pool with ``blue_green.preview`` also gets a preview frontend
on its own port and a preview backend with the same slots (the driver mirrors
the idle side into it: rollout.drivers.haproxy.lb). Dynamic ``add server``
entries are lost on a reload; slots are not, provided ``show servers state``
is saved to the state file first (:func:`save_server_state`).

An EMPTY slot points at 127.0.0.1 port 1: a refused port, so a slot that is
READY by mistake fails fast instead of reaching something else. Slots are
declared with a placeholder FQDN and ``init-addr last,127.0.0.1`` because
HAProxy 2.6 restores a server's address from the state file only for servers
declared by name ("last"); for an IP it keeps the configured address and a
reload would send every slot back to the placeholder (measured on 2.6.12; see
haproxy/haproxy#3265). No resolvers section is configured, so the name is
never looked up.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rollout import names
from rollout.drivers.haproxy.parse import MAINT_BITS, OP_STOPPED, parse_servers_state
from rollout.drivers.haproxy.requestlog import captured, log_lines
from rollout.drivers.haproxy.requestlog import socket_path as request_log_path
from rollout.errors import ConfigError, DriverError
from rollout.fsio import write_atomic

if TYPE_CHECKING:
    from rollout.config import Pool
    from rollout.drivers.haproxy.runtime import HAProxyRuntime

EMPTY_ADDRESS = "127.0.0.1"
EMPTY_PORT = 1
# Never resolved (no resolvers, and init-addr does not list libc); ".invalid"
# is reserved (RFC 2606) so it could not resolve anyway.
EMPTY_FQDN = "empty-slot.invalid"

_HEALTH_PATH = re.compile(r"^/[A-Za-z0-9._~%/:@!$&*+,=?-]*$")


def is_empty(addr: str, port: int | None) -> bool:
    """Does a slot with this address and port hold no node?"""
    return addr == EMPTY_ADDRESS and port == EMPTY_PORT


@dataclass(frozen=True)
class BackendSpec:
    """What the config needs to know about one pool's backend."""

    name: str
    frontend_address: str
    frontend_port: int
    slots: int
    slot_prefix: str = "node"
    service_port: int = 80
    health_path: str = "/healthz"
    check_interval: float = 0.5  # seconds
    rise: int = 2
    fall: int = 2
    # A failed connection is retried (and, with redispatch, sent to another
    # server) before the client sees an error: kind to users, and it hides
    # failures from a load test; both are pool settings so a test can turn
    # them off.
    retries: int = 3
    redispatch: bool = True
    # The dark-launch gate reads the frontend's requests from a log socket
    # (rollout.drivers.haproxy.requestlog); these headers are captured.
    request_log: bool = False
    log_headers: tuple[str, ...] = ()
    # blue_green.preview: the preview frontend's port and its backend.
    preview_backend: str | None = None
    preview_port: int | None = None

    def validated(self) -> BackendSpec:
        """Self, after checking every value that goes into the config text."""
        where = f"HAProxy backend {self.name!r}"
        names.backend(self.name, where)
        names.backend(self.slot_prefix, f"{where}: slot_prefix")
        names.address(self.frontend_address, f"{where}: frontend_address")
        names.port(self.frontend_port, f"{where}: frontend_port")
        names.port(self.service_port, f"{where}: service_port")
        if self.preview_backend is not None:
            names.backend(self.preview_backend, f"{where}: preview_backend")
            if self.preview_backend == self.name:
                raise ConfigError(f"{where}: preview_backend must differ from the backend")
            if self.preview_port is None:
                raise ConfigError(f"{where}: a preview_backend needs a preview_port")
            names.port(self.preview_port, f"{where}: preview_port")
        if (
            isinstance(self.slots, bool)
            or not isinstance(self.slots, int)
            or not (1 <= self.slots <= 1000)
        ):
            raise ConfigError(f"{where}: slots must be 1 to 1000 (got {self.slots!r})")
        if not _HEALTH_PATH.fullmatch(self.health_path):
            raise ConfigError(
                f"{where}: health_path {self.health_path!r} must start with '/' and hold only "
                "URL characters (no spaces, quotes, '#' or backslashes)"
            )
        if not (self.check_interval > 0 and math.isfinite(self.check_interval)):
            raise ConfigError(f"{where}: check_interval must be > 0 (got {self.check_interval!r})")
        for key, value in (("rise", self.rise), ("fall", self.fall)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}: {key} must be a whole number ≥ 1 (got {value!r})")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or not (
                0 <= self.retries <= 10):
            raise ConfigError(f"{where}: retries must be 0 to 10 (got {self.retries!r})")
        return self


def backend_spec(pool: Pool) -> BackendSpec:
    """The backend of a pool whose load balancer is HAProxy."""
    hap = pool.settings.haproxy
    if hap is None:
        raise ConfigError(
            f"{pool.source}: pool {pool.role!r} has no 'rollout.haproxy' settings",
            hint="add rollout.haproxy.backend and frontend_port",
        )
    preview = pool.settings.blue_green.preview and hap.preview_backend is not None
    return BackendSpec(
        name=hap.backend,
        frontend_address=hap.frontend_address,
        frontend_port=hap.frontend_port,
        slots=hap.slots,
        slot_prefix=hap.slot_prefix,
        service_port=pool.settings.service_port,
        health_path=pool.settings.health_path,
        check_interval=hap.check_interval,
        rise=hap.rise,
        fall=hap.fall,
        retries=hap.retries,
        redispatch=hap.redispatch,
        request_log=pool.settings.shadow.enabled,
        log_headers=captured(pool.settings.shadow.allow_headers),
        preview_backend=hap.preview_backend if preview else None,
        preview_port=hap.preview_frontend_port if preview else None,
    ).validated()


def _plain_path(path: Path, what: str) -> str:
    text = str(path)
    if not path.is_absolute() or re.search(r"[\s;#'\"\\]", text):
        raise ConfigError(
            f"HAProxy config: {what} {text!r} must be an absolute path without spaces, "
            "quotes, '#', ';' or backslashes"
        )
    return text


def _tcp_admin(value: str) -> str:
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(f"HAProxy config: tcp_admin {value!r} must be ADDRESS:PORT")
    addr = names.address(host.strip("[]"), "HAProxy config: tcp_admin")
    port = names.port(int(port_text), "HAProxy config: tcp_admin")
    if not ipaddress.ip_address(addr).is_loopback:
        # The TCP runtime API has no authentication at all.
        raise ConfigError(
            f"HAProxy config: tcp_admin {value!r} is not a loopback address",
            hint="an admin socket gives full control without a password; keep it on 127.0.0.1",
        )
    family = "ipv6" if ":" in addr else "ipv4"
    return f"{family}@{addr}:{port}" if family == "ipv4" else f"{family}@[{addr}]:{port}"


#: Every slot's configured weight: large enough that a canary's share of
#: traffic can be set in steps of about 1 % (a weight of 1 could not express
#: 10 % beside three old nodes), small enough that a canary beside a few old
#: nodes stays within HAProxy's largest weight, 256.
SLOT_WEIGHT = 100


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def render_config(
    backends: Sequence[BackendSpec],
    *,
    socket_path: Path,
    state_file: Path,
    tcp_admin: str | None = None,
    metrics_port: int | None = None,
    request_log_dir: Path | None = None,
) -> str:
    """The whole haproxy.cfg for these backends. Pure: writes nothing.
    ``metrics_port``: serve HAProxy's built-in Prometheus exporter on
    127.0.0.1:PORT/metrics (Debian builds HAProxy with it). ``request_log_dir``:
    where the frontends of backends with ``request_log`` send their requests
    (one datagram socket each, see rollout.drivers.haproxy.requestlog)."""
    specs = [spec.validated() for spec in backends]
    seen: dict[str, str] = {}
    if metrics_port is not None:
        seen[f"bind 127.0.0.1:{metrics_port}"] = "the metrics frontend"
    for spec in specs:
        keys = [f"backend {spec.name}", f"bind {spec.frontend_address}:{spec.frontend_port}"]
        if spec.preview_backend is not None:
            keys += [f"backend {spec.preview_backend}",
                     f"bind {spec.frontend_address}:{spec.preview_port}"]
        for key in keys:
            if key in seen:
                raise ConfigError(f"HAProxy config: {key} appears twice ({seen[key]})")
            seen[key] = spec.name
    sock = _plain_path(socket_path, "socket_path")
    state = _plain_path(state_file, "state_file")
    out = [
        "# Written by rollout. Changes here are overwritten on the next render.",
        "global",
        f"    stats socket {sock} mode 600 level admin expose-fd listeners",
    ]
    if tcp_admin is not None:
        out.append(f"    stats socket {_tcp_admin(tcp_admin)} level admin")
    out += [
        "    stats timeout 30s",
        f"    server-state-file {state}",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 3s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout http-request 10s",
        "    timeout queue 10s",
        "    timeout check 2s",
        "    load-server-state-from-file global",
        # Nodes tell LB traffic from local checks (smoke runs on the node) by it.
        "    option forwardfor",
    ]
    if metrics_port is not None:
        port = names.port(metrics_port, "HAProxy config: metrics_port")
        out += [
            "",
            "frontend fe_rollout_metrics",
            f"    bind 127.0.0.1:{port}",
            "    no log",
            "    http-request use-service prometheus-exporter if { path /metrics }",
            "    http-request return status 404",
        ]
    for spec in specs:
        out += [
            "",
            f"frontend fe_{spec.name}",
            f"    bind {spec.frontend_address}:{spec.frontend_port}",
            f"    default_backend {spec.name}",
        ]
        if spec.request_log and request_log_dir is not None:
            path = _plain_path(request_log_path(request_log_dir, spec.name), "request log")
            out += log_lines(path, spec.log_headers)
        out += _backend_lines(spec, spec.name)
        if spec.preview_backend is not None:
            # Its own frontend (never the main one's traffic) and slots that
            # mirror the main backend's, with the same checks.
            out += [
                "",
                f"frontend fe_{spec.preview_backend}",
                f"    bind {spec.frontend_address}:{spec.preview_port}",
                f"    default_backend {spec.preview_backend}",
            ]
            out += _backend_lines(spec, spec.preview_backend)
    return "\n".join(out) + "\n"


def _backend_lines(spec: BackendSpec, name: str) -> list[str]:
    inter = _ms(spec.check_interval)
    return [
        "",
        f"backend {name}",
        f"    retries {spec.retries}",
        "    option redispatch" if spec.redispatch else "    no option redispatch",
        f"    option httpchk GET {spec.health_path}",
        "    http-check expect status 200",
        f"    server-template {spec.slot_prefix} 1-{spec.slots} {EMPTY_FQDN}:{EMPTY_PORT}"
        f" init-addr last,{EMPTY_ADDRESS} check inter {inter} fastinter {inter}"
        f" downinter {inter} rise {spec.rise} fall {spec.fall} weight {SLOT_WEIGHT}"
        " disabled",
    ]


def save_server_state(runtime: HAProxyRuntime, state_file: Path) -> None:
    """Write ``show servers state`` to ``state_file`` atomically, before a reload.

    A crash mid-write leaves the previous file, never a truncated one: HAProxy
    would skip servers missing from a short file and start them from the config
    (every slot empty and in MAINT). After the reload, call
    :func:`restore_down_servers` with the same file.
    """
    text = runtime.servers_state_text()
    try:
        write_atomic(state_file, text, mode=0o600, create_parent=False)
    except OSError as exc:
        raise DriverError(
            f"{state_file}: cannot write the HAProxy server state: {exc.strerror or exc}",
            hint="check that the directory exists and is writable; do not reload without it",
        ) from None


_CHECK_ENABLED = 0x04  # srv_check_state: CHK_ST_ENABLED


def restore_down_servers(runtime: HAProxyRuntime, state_file: Path) -> list[str]:
    """Right after a reload: force health DOWN on the servers the saved state
    saw DOWN. Returns them as ``backend/server``.

    HAProxy 2.6 restores addresses and admin states from the state file but
    starts every checked server as "UP 1/2": a node that was failing its checks
    gets traffic again until ``fall`` checks fail (measured). Its own checks
    bring a forced-down server back UP after ``rise`` passes if it recovered.
    """
    try:
        rows = parse_servers_state(state_file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DriverError(
            f"{state_file}: cannot read the saved HAProxy server state: {exc.strerror or exc}"
        ) from None
    forced: list[str] = []
    for row in rows:
        if (
            row.srv_op_state == OP_STOPPED
            and not row.srv_admin_state & MAINT_BITS
            and row.srv_check_state & _CHECK_ENABLED
        ):
            runtime.set_server_health(row.be_name, row.srv_name, "down")
            forced.append(f"{row.be_name}/{row.srv_name}")
    return forced
