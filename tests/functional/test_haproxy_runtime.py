"""HAProxyRuntime and HAProxyLoadBalancer against a REAL haproxy on loopback.

Each test starts its own haproxy (foreground, ``-db``) from ``render_config``
and stops it by PID. Backends are threaded HTTP servers in this process on
127.0.0.2-9:18180; ``/healthz`` answers 200 or 500, ``/slow`` blocks until
released. Ports: frontend 18110, TCP admin 18101, a throwaway sshd on 2299.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import pytest

from rollout.app.workspace import Workspace
from rollout.config import Pool, PoolSettings
from rollout.drivers.haproxy.config import (
    EMPTY_PORT,
    BackendSpec,
    render_config,
    restore_down_servers,
    save_server_state,
)
from rollout.drivers.haproxy.lb import HAProxyLoadBalancer
from rollout.drivers.haproxy.runtime import HAProxyRuntime
from rollout.errors import DriverError
from rollout.model import Admin, Health, Member, Node, NodeState

pytestmark = pytest.mark.functional

FRONTEND_PORT = 18110
TCP_ADMIN = "127.0.0.1:18101"
SSH_PORT = 2299
REPO = Path(__file__).resolve().parents[2]
SERVICE_PORT = 18180

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 10.0) -> T:
    """Poll ``probe`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Backend:
    """One HTTP server standing in for a node."""

    def __init__(self, host: str, healthy: bool = True) -> None:
        self.host = host
        self.healthy = healthy
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code = 200
                if self.path == "/healthz" and not outer.healthy:
                    code = 500
                elif self.path == "/slow":
                    outer.release.wait(20)
                body = f"{host}\n".encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 64

            def handle_error(self, request: object, address: object) -> None:
                pass  # health checks close early; that is not an error here

        self.server = Server((host, SERVICE_PORT), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def node(self) -> Node:
        return Node(
            f"n{self.host.rsplit('.', 1)[1]}",
            self.host,
            "web",
            "lab",
            "img",
            "1",
            NodeState.RUNNING,
            0.0,
        )

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class HAProxy:
    """A real haproxy process we started, and its config."""

    def __init__(self, workdir: Path, spec: BackendSpec, tcp_admin: str | None = None) -> None:
        self.workdir = workdir
        self.socket = workdir / "admin.sock"
        self.state = workdir / "haproxy.state"
        self.config = workdir / "haproxy.cfg"
        self.config.write_text(
            render_config(
                [spec], socket_path=self.socket, state_file=self.state, tcp_admin=tcp_admin
            )
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        self.spec = spec
        self.start()

    def _spawn(self, *extra: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"haproxy-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            ["haproxy", "-db", "-f", str(self.config), *extra], stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        proc = self._spawn()
        wait_for("haproxy to answer", lambda: self._answers(proc.pid))

    def _answers(self, pid: int) -> bool:
        try:
            return self.runtime().show_info().get("Pid") == str(pid)
        except DriverError:
            return False

    def runtime(self, timeout: float = 2.0) -> HAProxyRuntime:
        return HAProxyRuntime.from_url(f"unix://{self.socket}", timeout=timeout)

    def reload(self) -> list[str]:
        """Seamless reload: save the state, ``-x SOCKET -sf OLDPID``, then
        force DOWN what was DOWN. Returns the servers forced down."""
        old = self.procs[-1]
        save_server_state(self.runtime(), self.state)
        new = self._spawn("-x", str(self.socket), "-sf", str(old.pid))
        wait_for("the new haproxy to answer", lambda: self._answers(new.pid))
        forced = restore_down_servers(self.runtime(), self.state)
        wait_for("the old haproxy to exit", lambda: old.poll() is not None)
        return forced

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)


def spec(check_interval: float = 0.2, slots: int = 4) -> BackendSpec:
    return BackendSpec(
        name="web",
        frontend_address="127.0.0.1",
        frontend_port=FRONTEND_PORT,
        slots=slots,
        slot_prefix="node",
        service_port=SERVICE_PORT,
        health_path="/healthz",
        check_interval=check_interval,
        rise=2,
        fall=2,
    )


@pytest.fixture
def backends() -> Iterator[dict[str, Backend]]:
    made: dict[str, Backend] = {}
    yield made
    for backend in made.values():
        backend.stop()


def backend(made: dict[str, Backend], host: str, healthy: bool = True) -> Backend:
    made[host] = Backend(host, healthy)
    return made[host]


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Callable[..., HAProxy]]:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    started: list[HAProxy] = []

    def start(**kwargs: object) -> HAProxy:
        tcp_admin = kwargs.pop("tcp_admin", None)
        proc = HAProxy(tmp_path, spec(**kwargs), tcp_admin)  # type: ignore[arg-type]
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def lb_of(hap: HAProxy) -> HAProxyLoadBalancer:
    return HAProxyLoadBalancer(
        hap.runtime(), "web", service_port=SERVICE_PORT, slots=hap.spec.slots
    )


def slot_of(lb: HAProxyLoadBalancer, target: str) -> Member:
    (found,) = [m for m in lb.members() if m.target == target]
    return found


def get(path: str = "/") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{FRONTEND_PORT}{path}", timeout=10) as r:
            return r.status, r.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


# -- the load balancer ---------------------------------------------------------


def test_add_is_up_only_after_rise_checks(
    haproxy: Callable[..., HAProxy], backends: dict[str, Backend]
) -> None:
    hap = haproxy(check_interval=0.5)
    lb = lb_of(hap)
    node = backend(backends, "127.0.0.2").node()
    started = time.monotonic()
    added = lb.add(node)
    assert (added.slot, added.target, added.admin, added.port) == (
        "node1",
        "127.0.0.2",
        Admin.READY,
        SERVICE_PORT,
    )
    assert added.health is not Health.UP
    seen: list[Health] = []

    def is_up() -> bool:
        seen.append(slot_of(lb, "127.0.0.2").health)
        return seen[-1] is Health.UP

    wait_for("node1 UP", is_up)
    elapsed = time.monotonic() - started
    # rise 2 at inter 500ms: the first check runs at once, the second 500ms later.
    assert elapsed >= 0.45, elapsed
    assert Health.DOWN in seen
    print(f"\nadd -> members() UP: {elapsed * 1000:.0f} ms (inter 500ms rise 2)")
    assert get() == (200, "127.0.0.2")
    assert lb.add(node).slot == "node1"  # idempotent
    assert [m.target for m in lb.members()] == ["127.0.0.2", "", "", ""]


def test_add_of_a_failing_node_stays_down(
    haproxy: Callable[..., HAProxy], backends: dict[str, Backend]
) -> None:
    hap = haproxy()
    lb = lb_of(hap)
    lb.add(backend(backends, "127.0.0.3", healthy=False).node())
    deadline = time.monotonic() + 1.5  # 7 check intervals
    while time.monotonic() < deadline:
        member = slot_of(lb, "127.0.0.3")
        assert member.health is Health.DOWN, member
        time.sleep(0.05)
    assert slot_of(lb, "127.0.0.3").check_failures == 0  # never UP, so no UP->DOWN fails
    assert get()[0] == 503  # and no client reached it


def test_drain_counts_sessions_until_zero_then_maint(
    haproxy: Callable[..., HAProxy], backends: dict[str, Backend]
) -> None:
    hap = haproxy()
    lb = lb_of(hap)
    a, b = backend(backends, "127.0.0.4"), backend(backends, "127.0.0.5")
    lb.add(a.node())
    wait_for("a UP", lambda: slot_of(lb, a.host).health is Health.UP)
    result: list[tuple[int, str]] = []
    slow = threading.Thread(target=lambda: result.append(get("/slow")))
    slow.start()
    wait_for("a slow session", lambda: slot_of(lb, a.host).sessions == 1)
    lb.add(b.node())
    wait_for("b UP", lambda: slot_of(lb, b.host).health is Health.UP)

    lb.set_admin(a.node(), Admin.DRAIN)
    drained = slot_of(lb, a.host)
    assert (drained.admin, drained.sessions) == (Admin.DRAIN, 1)
    assert {get()[1] for _ in range(6)} == {b.host}  # new requests avoid a
    a.release.set()
    slow.join(10)
    assert result == [(200, a.host)]  # the in-flight request finished normally
    wait_for("a drained", lambda: slot_of(lb, a.host).sessions == 0)

    lb.set_admin(a.node(), Admin.MAINT)
    assert slot_of(lb, a.host).admin is Admin.MAINT
    lb.set_admin(a.node(), Admin.READY)  # back: not UP until checked again
    assert slot_of(lb, a.host).health is not Health.UP
    wait_for("a UP again", lambda: slot_of(lb, a.host).in_service)


def test_maint_then_remove_frees_the_slot(
    haproxy: Callable[..., HAProxy], backends: dict[str, Backend]
) -> None:
    hap = haproxy()
    lb = lb_of(hap)
    a, b = backend(backends, "127.0.0.6"), backend(backends, "127.0.0.7")
    lb.add(a.node())
    wait_for("a UP", lambda: slot_of(lb, a.host).in_service)
    lb.set_admin(a.node(), Admin.MAINT)
    assert get()[0] == 503
    lb.remove(a.node())
    lb.remove(a.node())  # idempotent
    first = lb.members()[0]
    assert (first.slot, first.target, first.admin, first.port) == (
        "node1",
        "",
        Admin.MAINT,
        EMPTY_PORT,
    )
    stat = {r.svname: r for r in hap.runtime().show_stat("web")}["node1"]
    assert stat.status == "MAINT"
    assert lb.add(b.node()).slot == "node1"  # the freed slot is reused
    wait_for("b UP", lambda: slot_of(lb, b.host).in_service)
    assert get() == (200, b.host)


def test_full_backend_and_unknown_server_raise(
    haproxy: Callable[..., HAProxy], backends: dict[str, Backend]
) -> None:
    hap = haproxy(slots=1)
    lb = lb_of(hap)
    lb.add(backend(backends, "127.0.0.8").node())
    with pytest.raises(DriverError, match=r"no free slot in backend web \(slots: 1\)"):
        lb.add(backend(backends, "127.0.0.9").node())
    runtime = hap.runtime()
    with pytest.raises(DriverError, match=r"\(backend 'web', server 'node7'\): No such server"):
        runtime.set_server_state("web", "node7", "ready")
    with pytest.raises(DriverError, match=r"admin.sock.*No such backend"):
        runtime.enable_health("api", "node1")
    with pytest.raises(DriverError, match="No such proxy"):
        runtime.show_stat("api")
    with pytest.raises(DriverError, match="Unknown command"):
        runtime.command("frobnicate")


def test_reload_keeps_addresses_and_admin_states(
    haproxy: Callable[..., HAProxy], backends: dict[str, Backend]
) -> None:
    hap = haproxy(slots=5)
    lb = lb_of(hap)
    hosts = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
    a, b, c, d = (backend(backends, h, healthy=h != "127.0.0.5") for h in hosts)
    for one in (a, b, c, d):
        lb.add(one.node())
    wait_for("a, b, c UP", lambda: sum(m.in_service for m in lb.members()) == 3)
    lb.set_admin(b.node(), Admin.DRAIN)
    lb.set_admin(c.node(), Admin.MAINT)
    before = [(m.slot, m.target, m.admin, m.port, m.health) for m in lb.members()]
    old_pid = hap.runtime().show_info()["Pid"]

    forced = hap.reload()

    after = [(m.slot, m.target, m.admin, m.port, m.health) for m in lb.members()]
    assert hap.runtime().show_info()["Pid"] != old_pid
    assert forced == ["web/node4"]
    assert after == before
    assert before == [
        ("node1", a.host, Admin.READY, SERVICE_PORT, Health.UP),
        ("node2", b.host, Admin.DRAIN, SERVICE_PORT, Health.UP),
        ("node3", c.host, Admin.MAINT, SERVICE_PORT, Health.UNKNOWN),
        ("node4", d.host, Admin.READY, SERVICE_PORT, Health.DOWN),
        ("node5", "", Admin.MAINT, EMPTY_PORT, Health.UNKNOWN),
    ]
    wait_for("a in service after reload", lambda: slot_of(lb, a.host).in_service)
    assert get() == (200, a.host)


def test_render_config_passes_haproxy_check(tmp_path: Path) -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        render_config(
            [spec(slots=16)],
            socket_path=tmp_path / "s.sock",
            state_file=tmp_path / "state",
            tcp_admin=TCP_ADMIN,
        )
    )
    check = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


# -- transports ----------------------------------------------------------------


def median_ms(runtime: HAProxyRuntime, n: int = 200) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        runtime.command("show info")
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def test_tcp_transport(haproxy: Callable[..., HAProxy], backends: dict[str, Backend]) -> None:
    hap = haproxy(tcp_admin=TCP_ADMIN)
    tcp = HAProxyRuntime.from_url(f"tcp://{TCP_ADMIN}")
    lb = HAProxyLoadBalancer(tcp, "web", service_port=SERVICE_PORT, slots=4)
    lb.add(backend(backends, "127.0.0.5").node())
    assert lb.members() == lb_of(hap).members()  # same world over either transport
    unix_ms, tcp_ms = median_ms(hap.runtime()), median_ms(tcp)
    print(f"\nmedian 'show info': unix {unix_ms:.2f} ms, tcp {tcp_ms:.2f} ms (n=200)")
    assert unix_ms < 20 and tcp_ms < 20


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A throwaway sshd on 127.0.0.1:2299: (client key, known_hosts)."""
    if shutil.which("socat") is None or not Path("/usr/sbin/sshd").exists():
        pytest.skip("needs socat and openssh-server")
    d = tmp_path / "ssh"
    d.mkdir()
    for name in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True
        )
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    host_pub = (d / "host.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{SSH_PORT} {host_pub[0]} {host_pub[1]}\n")
    (d / "sshd_config").write_text(
        f"Port {SSH_PORT}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPidFile none\nMaxSessions 50\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
        stderr=(d / "sshd.log").open("wb"),
    )

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", SSH_PORT)) == 0

    try:
        wait_for("sshd to listen", listening, timeout=5)
        yield str(d / "client"), str(d / "known_hosts")
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(5)


def test_ssh_transport(
    haproxy: Callable[..., HAProxy], backends: dict[str, Backend], sshd: tuple[str, str]
) -> None:
    key, known_hosts = sshd
    hap = haproxy()
    url = f"ssh://root@127.0.0.1:{SSH_PORT}{hap.socket}"
    with HAProxyRuntime.from_url(url, ssh_key=key, known_hosts=known_hosts) as ssh:
        lb = HAProxyLoadBalancer(ssh, "web", service_port=SERVICE_PORT, slots=4)
        node = backend(backends, "127.0.0.6").node()
        lb.add(node)
        wait_for("UP over ssh", lambda: slot_of(lb, node.address).in_service)
        lb.set_admin(node, Admin.DRAIN)
        assert slot_of(lb_of(hap), node.address).admin is Admin.DRAIN  # seen over unix
        with pytest.raises(DriverError, match="No such server"):
            ssh.set_server_state("web", "node9", "maint")
        ssh_ms = median_ms(ssh)
        print(f"\nmedian 'show info' over ssh: {ssh_ms:.2f} ms (n=200, one connection)")
        # The kept relay connects per command, so it follows a reload.
        old_pid = ssh.show_info()["Pid"]
        hap.reload()
        assert ssh.show_info()["Pid"] == str(hap.procs[-1].pid) != old_pid
        assert slot_of(lb, node.address).admin is Admin.DRAIN

    missing = HAProxyRuntime.from_url(
        f"ssh://root@127.0.0.1:{SSH_PORT}/nonexistent.sock", ssh_key=key, known_hosts=known_hosts
    )
    with missing, pytest.raises(DriverError, match="cannot talk to the socket on the LB host"):
        missing.command("show info")
    stalled_path, stop_stalled = stalled_socket(Path(key).parent)
    stalled = HAProxyRuntime.from_url(
        f"ssh://root@127.0.0.1:{SSH_PORT}{stalled_path}",
        ssh_key=key,
        known_hosts=known_hosts,
        timeout=1.0,
    )
    try:
        started = time.monotonic()
        with pytest.raises(DriverError, match="no answer"):
            stalled.command("show info")
        assert time.monotonic() - started < 2.0
    finally:
        stalled.close()
        stop_stalled()
    empty = Path(known_hosts).with_name("empty_known_hosts")
    empty.write_text("")
    stranger = HAProxyRuntime.from_url(url, ssh_key=key, known_hosts=str(empty))
    with stranger, pytest.raises(DriverError, match="cannot connect over SSH"):
        stranger.command("show info")


def stalled_socket(directory: Path) -> tuple[Path, Callable[[], None]]:
    """A unix socket that accepts connections and never answers."""
    path = directory / "stalled.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()

    def stop() -> None:
        server.close()
        for conn in held:
            conn.close()

    return path, stop


def test_stalled_socket_raises_within_the_timeout(tmp_path: Path) -> None:
    path, stop = stalled_socket(tmp_path)
    runtime = HAProxyRuntime.from_url(f"unix://{path}", timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(DriverError, match=r"stalled.sock.*(no answer|no complete answer)"):
            runtime.command("show info")
        elapsed = time.monotonic() - started
        assert 0.45 <= elapsed < 1.5, elapsed
    finally:
        stop()


def test_missing_and_refused_sockets_raise(tmp_path: Path) -> None:
    with pytest.raises(DriverError, match=r"nope.sock: cannot talk to the socket"):
        HAProxyRuntime.from_url(f"unix://{tmp_path}/nope.sock").command("show info")
    with pytest.raises(DriverError, match=r"tcp://127.0.0.1:18199: cannot talk"):
        HAProxyRuntime.from_url("tcp://127.0.0.1:18199").command("show info")


def test_an_ssh_runtime_url_uses_the_pools_key_and_known_hosts(
    haproxy: Callable[..., HAProxy], sshd: tuple[str, str], tmp_path: Path
) -> None:
    """haproxy.ssh_key and haproxy.known_hosts reach the SSH transport that
    the lab backend builds (the lab's sshd knows only this key, and its host key
    is only in this known_hosts)."""
    key, known_hosts = sshd
    hap = haproxy()
    settings = PoolSettings.model_validate({
        "pool_size": 3, "service_port": SERVICE_PORT,
        "haproxy": {"backend": "web", "frontend_port": FRONTEND_PORT, "slots": 4,
                    "runtime": f"ssh://root@127.0.0.1:{SSH_PORT}{hap.socket}",
                    "ssh_key": key, "known_hosts": known_hosts},
    })
    pool = Pool(env="lab", role="web", settings=settings, source=tmp_path / "web.yml")
    ws = Workspace.open(REPO, "lab", tmp_path / "data")
    lb = ws.backend(pool).load_balancer(pool)
    try:
        assert [m.slot for m in lb.members()] == ["node1", "node2", "node3", "node4"]
    finally:
        lb.runtime.close()
