"""Parsers over output recorded from a real HAProxy 2.6, config rendering, and
the refusal of names that could inject runtime commands."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from rollout.drivers.haproxy.config import (
    EMPTY_ADDRESS,
    EMPTY_PORT,
    BackendSpec,
    backend_spec,
    is_empty,
    render_config,
    save_server_state,
)
from rollout.drivers.haproxy.parse import (
    admin_from_bits,
    health_from_stat,
    member,
    parse_servers_state,
    parse_show_stat,
)
from rollout.drivers.haproxy.runtime import HAProxyRuntime
from rollout.errors import ConfigError, DriverError
from rollout.inventory import load_environment
from rollout.model import Admin, Health, Member

FIXTURES = Path(__file__).parent / "fixtures" / "haproxy"
PROJECT = Path(__file__).resolve().parents[2]


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def members_of(situation: str) -> dict[str, Member]:
    stats = {r.svname: r for r in parse_show_stat(fixture(f"{situation}.stat.txt"))}
    out = {}
    for state in parse_servers_state(fixture(f"{situation}.state.txt")):
        empty = is_empty(state.srv_addr, state.srv_port)
        out[state.srv_name] = member(stats[state.srv_name], state, empty=empty)
    return out


class RecordingTransport:
    """Stands in for the socket: keeps what reached it, answers ``reply``."""

    url = "unix:///test/admin.sock"

    def __init__(self, reply: str = "") -> None:
        self.reply = reply
        self.sent: list[str] = []

    def send(self, line: str) -> str:
        self.sent.append(line)
        return self.reply

    def close(self) -> None:
        pass


# -- show stat / show servers state over the recordings ------------------------

# slot, target, admin, health, sessions, total, 5xx, chkfail, chkdown, port
MIXED = [
    ("node1", "127.0.0.2", Admin.READY, Health.UP, 2, 2, 0, 0, 1, 18180),
    ("node2", "127.0.0.3", Admin.READY, Health.DOWN, 0, 0, 0, 0, 1, 18180),
    ("node3", "127.0.0.5", Admin.DRAIN, Health.UP, 2, 2, 0, 0, 1, 18180),
    ("node4", "127.0.0.6", Admin.MAINT, Health.UNKNOWN, 0, 0, 0, 0, 2, 18180),
    ("node5", "127.0.0.7", Admin.READY, Health.UNKNOWN, 2, 2, 0, 0, 0, 18180),
    ("node6", "127.0.0.8", Admin.READY, Health.UP, 2, 2, 0, 1, 1, 18180),
    ("node7", "127.0.0.9", Admin.READY, Health.DOWN, 0, 0, 0, 0, 1, 18180),
    ("node8", "127.0.0.4", Admin.READY, Health.UNKNOWN, 0, 0, 0, 0, 0, 18180),
    ("node9", "", Admin.MAINT, Health.UNKNOWN, 0, 0, 0, 0, 0, 1),
    ("node10", "", Admin.MAINT, Health.UNKNOWN, 0, 0, 0, 0, 0, 1),
]

SETTLED = [
    ("node1", "127.0.0.2", Admin.READY, Health.UP, 0, 3, 1, 0, 1, 18180),
    ("node3", "127.0.0.5", Admin.DRAIN, Health.UP, 0, 2, 0, 0, 1, 18180),
    ("node5", "127.0.0.7", Admin.READY, Health.UNKNOWN, 0, 4, 2, 0, 0, 18180),
    ("node6", "127.0.0.8", Admin.READY, Health.DOWN, 0, 4, 2, 2, 2, 18180),
    ("node7", "127.0.0.9", Admin.READY, Health.UP, 0, 0, 0, 0, 1, 18180),
    ("node8", "127.0.0.4", Admin.READY, Health.UP, 0, 1, 1, 0, 0, 18180),
]


@pytest.mark.parametrize(
    ("situation", "row"),
    [("mixed", row) for row in MIXED] + [("settled", row) for row in SETTLED],
    ids=lambda v: v if isinstance(v, str) else v[0],
)
def test_recorded_members(situation: str, row: tuple[object, ...]) -> None:
    slot, target, admin, health, scur, stot, h5xx, chkfail, chkdown, port = row
    got = members_of(situation)[str(slot)]
    assert got == Member(
        slot=str(slot),
        target=str(target),
        admin=admin,  # type: ignore[arg-type]
        health=health,  # type: ignore[arg-type]
        sessions=scur,  # type: ignore[arg-type]
        total_sessions=stot,  # type: ignore[arg-type]
        http_5xx=h5xx,  # type: ignore[arg-type]
        check_failures=chkfail,  # type: ignore[arg-type]
        check_downs=chkdown,  # type: ignore[arg-type]
        port=port,  # type: ignore[arg-type]
        weight=1,  # the recordings' config gave no weight: HAProxy's default
        normal_weight=1,
    )


def test_empty_backend_is_all_free_slots() -> None:
    members = members_of("empty")
    assert len(members) == 10
    assert {(m.target, m.admin, m.health, m.port) for m in members.values()} == {
        ("", Admin.MAINT, Health.UNKNOWN, EMPTY_PORT)
    }


def test_only_the_in_service_members_of_the_recording() -> None:
    in_service = sorted(m.slot for m in members_of("mixed").values() if m.in_service)
    assert in_service == ["node1", "node6"]


def test_stat_status_agrees_with_admin_bits() -> None:
    """Where show stat says MAINT or DRAIN, the bit mapping says the same."""
    for situation in ("empty", "mixed", "settled"):
        stats = {r.svname: r for r in parse_show_stat(fixture(f"{situation}.stat.txt"))}
        for state in parse_servers_state(fixture(f"{situation}.state.txt")):
            status = stats[state.srv_name].status
            admin = admin_from_bits(state.srv_admin_state)
            assert (status == "MAINT") == (admin is Admin.MAINT), state
            if status.startswith("DRAIN"):
                assert admin is Admin.DRAIN


def test_full_show_stat_keeps_frontend_and_backend_rows() -> None:
    rows = parse_show_stat(fixture("mixed.full_stat.txt"))
    assert (rows[0].pxname, rows[0].svname) == ("fe_web", "FRONTEND")
    assert rows[-1].svname == "BACKEND"
    assert rows[-1].scur == 8


def test_show_stat_is_read_by_header_not_position() -> None:
    text = "# svname,status,pxname,scur,extra_new_column\nnode1,UP,web,7,x\n"
    (row,) = parse_show_stat(text)
    assert (row.pxname, row.svname, row.status, row.scur, row.stot) == ("web", "node1", "UP", 7, 0)


def test_servers_state_is_read_by_header_not_position() -> None:
    text = (
        "1\n# srv_port srv_name be_name srv_addr srv_admin_state srv_op_state\n"
        "8080 node2 web 10.0.0.9 8 2\n"
    )
    (row,) = parse_servers_state(text)
    assert (row.srv_name, row.srv_addr, row.srv_port, row.srv_admin_state) == (
        "node2",
        "10.0.0.9",
        8080,
        8,
    )


@pytest.mark.parametrize(
    "text", ["", "No such proxy.\n", "Unknown command, but maybe ...\n", "web,node1,0\n"]
)
def test_show_stat_without_header_raises(text: str) -> None:
    with pytest.raises(DriverError, match="show stat"):
        parse_show_stat(text)


@pytest.mark.parametrize(
    "text", ["", "Can't find backend.\n", "2\n# be_id\n", "1\nno header\n", "1\n# be_id be_name\n"]
)
def test_servers_state_malformed_raises(text: str) -> None:
    with pytest.raises(DriverError, match="show servers state"):
        parse_servers_state(text)


@pytest.mark.parametrize(
    ("bits", "admin"),
    [
        (0x00, Admin.READY),
        (0x04, Admin.READY),  # CMAINT alone: a "disabled" template slot put in service
        (0x40, Admin.READY),  # HMAINT: FQDN set at runtime, not maintenance
        (0x01, Admin.MAINT),
        (0x05, Admin.MAINT),
        (0x02, Admin.MAINT),
        (0x20, Admin.MAINT),
        (0x08, Admin.DRAIN),
        (0x0C, Admin.DRAIN),
        (0x10, Admin.DRAIN),
        (0x09, Admin.MAINT),  # maintenance wins over drain
    ],
)
def test_admin_from_bits(bits: int, admin: Admin) -> None:
    assert admin_from_bits(bits) is admin


@pytest.mark.parametrize(
    ("status", "check", "health"),
    [
        ("UP", "L7OK", Health.UP),
        ("UP 1/2", "L7STS", Health.UP),  # going down, still routed to
        ("UP 1/2", "INI", Health.UNKNOWN),  # left MAINT, never checked
        ("DRAIN", "L7OK", Health.UP),
        ("DRAIN 1/2", "L4CON", Health.UP),
        ("DOWN", "L7STS", Health.DOWN),
        ("DOWN 1/2", "L7OK", Health.DOWN),  # going up, not there yet
        ("DOWN", "INI", Health.DOWN),
        ("NOLB", "L7OKC", Health.DOWN),
        ("MAINT", "", Health.UNKNOWN),
        ("MAINT (resolution)", "", Health.UNKNOWN),
        ("no check", "", Health.UNKNOWN),
        ("", "", Health.UNKNOWN),
    ],
)
def test_health_from_stat(status: str, check: str, health: Health) -> None:
    assert health_from_stat(status, check) is health


# -- config rendering ----------------------------------------------------------

WEB = BackendSpec(
    name="web",
    frontend_address="127.0.0.1",
    frontend_port=8080,
    slots=8,
    slot_prefix="node",
    service_port=80,
    health_path="/healthz",
    check_interval=0.5,
    rise=2,
    fall=3,
)


def render(*specs: BackendSpec, tcp_admin: str | None = None) -> str:
    return render_config(
        specs or (WEB,),
        socket_path=Path("/var/lib/rollout/lab/haproxy.sock"),
        state_file=Path("/var/lib/rollout/lab/haproxy.state"),
        tcp_admin=tcp_admin,
    )


def test_render_config_has_the_required_lines() -> None:
    lines = [line.strip() for line in render().splitlines()]
    for expected in [
        "stats socket /var/lib/rollout/lab/haproxy.sock mode 600 level admin expose-fd listeners",
        "server-state-file /var/lib/rollout/lab/haproxy.state",
        "load-server-state-from-file global",
        "mode http",
        "option redispatch",
        "retries 3",
        "option httpchk GET /healthz",
        "http-check expect status 200",
        "frontend fe_web",
        "bind 127.0.0.1:8080",
        "default_backend web",
        "backend web",
        "server-template node 1-8 empty-slot.invalid:1 init-addr last,127.0.0.1 check "
        "inter 500ms fastinter 500ms downinter 500ms rise 2 fall 3 weight 100 disabled",
    ]:
        assert expected in lines
    assert not any(line.startswith("add server") for line in lines)
    assert not any("ipv4@" in line for line in lines)


def test_retries_and_redispatch_are_per_backend_and_can_be_turned_off() -> None:
    strict = replace(WEB, name="strict", frontend_port=8081, retries=0, redispatch=False)
    text = render(WEB, strict)
    web, rest = text.split("backend web\n", 1)[1].split("backend strict\n", 1)
    assert "    retries 3\n    option redispatch\n" in web
    assert "    retries 0\n    no option redispatch\n" in rest
    with pytest.raises(ConfigError, match="retries must be 0 to 10"):
        replace(WEB, retries=11).validated()


def test_render_config_tcp_admin_and_two_pools() -> None:
    api = BackendSpec("api", "127.0.0.1", 8081, slots=2, health_path="/ready", service_port=9000)
    text = render(WEB, api, tcp_admin="127.0.0.1:18101")
    assert "stats socket ipv4@127.0.0.1:18101 level admin" in text
    assert "server-template node 1-2 empty-slot.invalid:1" in text
    assert "option httpchk GET /ready" in text


@pytest.mark.parametrize(
    "change",
    [
        {"name": "web\nshutdown"},
        {"name": "a;b"},
        {"name": "a b"},
        {"slot_prefix": "n ode"},
        {"health_path": "/health z"},
        {"health_path": "/h#x"},
        {"health_path": "healthz"},
        {"frontend_address": "localhost"},
        {"frontend_port": 0},
        {"service_port": 70000},
        {"slots": 0},
        {"rise": 0},
        {"check_interval": 0},
    ],
    ids=str,
)
def test_render_config_refuses_bad_values(change: dict[str, object]) -> None:
    spec = BackendSpec(**{**WEB.__dict__, **change})
    with pytest.raises(ConfigError):
        render(spec)


def test_render_config_refuses_twice_the_same_port_or_backend() -> None:
    with pytest.raises(ConfigError, match="twice"):
        render(WEB, BackendSpec(**{**WEB.__dict__, "name": "other"}))
    with pytest.raises(ConfigError, match="twice"):
        render(WEB, BackendSpec(**{**WEB.__dict__, "frontend_port": 9999}))


@pytest.mark.parametrize("tcp_admin", ["10.0.0.1:9999", "127.0.0.1", "127.0.0.1:x", "a b:1"])
def test_render_config_refuses_bad_tcp_admin(tcp_admin: str) -> None:
    with pytest.raises(ConfigError, match="tcp_admin"):
        render(tcp_admin=tcp_admin)


def test_render_config_refuses_relative_or_odd_paths() -> None:
    with pytest.raises(ConfigError, match="socket_path"):
        render_config([WEB], socket_path=Path("rel.sock"), state_file=Path("/x/state"))
    with pytest.raises(ConfigError, match="state_file"):
        render_config([WEB], socket_path=Path("/x/s.sock"), state_file=Path("/x/st ate"))


def test_backend_spec_from_the_lab_inventory() -> None:
    pool = load_environment(PROJECT, "lab").pool("web")
    spec = backend_spec(pool)
    assert (spec.name, spec.frontend_port, spec.slots, spec.service_port) == ("web", 8080, 8, 80)
    assert spec.slot_prefix == "node"
    assert "server-template node 1-8" in render(spec)


def test_is_empty() -> None:
    assert is_empty(EMPTY_ADDRESS, EMPTY_PORT)
    assert not is_empty(EMPTY_ADDRESS, 80)
    assert not is_empty("10.231.0.5", EMPTY_PORT)


def test_save_server_state_writes_the_answer_atomically(tmp_path: Path) -> None:
    answer = fixture("mixed.state.txt")
    runtime = HAProxyRuntime(RecordingTransport(answer))
    target = tmp_path / "haproxy.state"
    target.write_text("old\n")
    save_server_state(runtime, target)
    assert target.read_text() == answer
    assert os.listdir(tmp_path) == ["haproxy.state"]


def test_save_server_state_refuses_an_error_answer(tmp_path: Path) -> None:
    runtime = HAProxyRuntime(RecordingTransport("Permission denied\n"))
    target = tmp_path / "haproxy.state"
    target.write_text("old\n")
    with pytest.raises(DriverError, match="Permission denied"):
        save_server_state(runtime, target)
    assert target.read_text() == "old\n"


def test_save_server_state_into_a_missing_directory(tmp_path: Path) -> None:
    runtime = HAProxyRuntime(RecordingTransport(fixture("empty.state.txt")))
    with pytest.raises(DriverError, match="cannot write"):
        save_server_state(runtime, tmp_path / "nope" / "haproxy.state")


# -- nothing unsafe reaches the socket ----------------------------------------

BAD_NAMES = ["web\nshutdown", "a;b", "a b", "", "web\tx", "web\r"]


@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
def test_bad_names_are_refused_before_anything_is_sent(bad: str) -> None:
    transport = RecordingTransport()
    runtime = HAProxyRuntime(transport)
    calls: list[Callable[[], object]] = [
        lambda: runtime.set_server_state(bad, "node1", "ready"),
        lambda: runtime.set_server_state("web", bad, "maint"),
        lambda: runtime.set_server_addr(bad, "node1", "10.0.0.1", 80),
        lambda: runtime.set_server_addr("web", "node1", bad, 80),
        lambda: runtime.enable_health("web", bad),
        lambda: runtime.disable_health(bad, "node1"),
        lambda: runtime.set_server_health("web", bad, "down"),
        lambda: runtime.show_stat(bad),
        lambda: runtime.show_servers_state(bad),
    ]
    if " " not in bad:  # a raw line cannot tell "a b" from two words
        calls.append(lambda: runtime.command(f"show stat {bad} 4 -1"))
    for call in calls:
        with pytest.raises(ConfigError):
            call()
    assert transport.sent == []


@pytest.mark.parametrize(
    "line", ["show info; shutdown", "show info\nshutdown", "show  info", "show info ", "\x00"]
)
def test_raw_lines_that_could_inject_are_refused(line: str) -> None:
    transport = RecordingTransport()
    with pytest.raises(ConfigError):
        HAProxyRuntime(transport).command(line)
    assert transport.sent == []


def test_bad_state_health_and_port_are_refused() -> None:
    transport = RecordingTransport()
    runtime = HAProxyRuntime(transport)
    with pytest.raises(ConfigError):
        runtime.set_server_state("web", "node1", "up")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        runtime.set_server_health("web", "node1", "ready")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        runtime.set_server_addr("web", "node1", "10.0.0.1", 0)
    assert transport.sent == []


@pytest.mark.parametrize(
    ("reply", "call"),
    [
        ("No such server.\n\n", lambda r: r.set_server_state("web", "node9", "ready")),
        ("No such backend.\n\n", lambda r: r.enable_health("web", "node9")),
        (
            "Invalid addr '1.2.3.4' by 'stats socket command'\n",
            lambda r: r.set_server_addr("web", "node9", "1.2.3.4", 80),
        ),
        ("No such proxy.\n\n", lambda r: r.show_stat("web")),
        ("Can't find backend.\n\n", lambda r: r.show_servers_state("web")),
    ],
)
def test_error_answers_raise_naming_socket_backend_and_server(reply: str, call: object) -> None:
    runtime = HAProxyRuntime(RecordingTransport(reply))
    with pytest.raises(DriverError) as caught:
        call(runtime)  # type: ignore[operator]
    text = str(caught.value)
    assert "unix:///test/admin.sock" in text
    assert "backend 'web'" in text
    assert reply.split("\n")[0][:10] in text


def test_unknown_command_raises() -> None:
    runtime = HAProxyRuntime(RecordingTransport("Unknown command, but maybe one of these\n"))
    with pytest.raises(DriverError, match="'frob' failed: Unknown command"):
        runtime.command("frob")


def test_success_answers_do_not_raise() -> None:
    transport = RecordingTransport(
        "IP changed from '127.0.0.1' to '10.0.0.1', port changed from '1' to '80' by "
        "'stats socket command'\n\n"
    )
    HAProxyRuntime(transport).set_server_addr("web", "node1", "10.0.0.1", 80)
    transport.reply = "\n"
    HAProxyRuntime(transport).set_server_state("web", "node1", Admin.DRAIN)
    assert transport.sent == [
        "set server web/node1 addr 10.0.0.1 port 80",
        "set server web/node1 state drain",
    ]


# -- URLs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "unix:///var/lib/rollout/lab/haproxy.sock",
        "tcp://127.0.0.1:18101",
        "tcp://[::1]:18101",
        "ssh://root@10.0.0.5/run/haproxy/admin.sock",
        "ssh://admin@lb.example:2222/run/haproxy/admin.sock",
    ],
)
def test_from_url_accepts(url: str) -> None:
    assert HAProxyRuntime.from_url(url).url == url


@pytest.mark.parametrize(
    "url",
    [
        "unix://relative.sock",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:99999",
        "ssh://10.0.0.5/run/haproxy.sock",
        "ssh://root@10.0.0.5",
        "http://127.0.0.1:80",
        "unix:///x.sock;shutdown",
        "unix:///x .sock",
    ],
)
def test_from_url_refuses(url: str) -> None:
    with pytest.raises(ConfigError):
        HAProxyRuntime.from_url(url)
