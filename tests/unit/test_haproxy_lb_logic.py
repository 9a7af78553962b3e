"""Slot logic of HAProxyLoadBalancer against a small in-memory HAProxy.

``FakeHAProxy`` answers the runtime lines the way HAProxy 2.6 did in the
recordings (tests/unit/fixtures/haproxy): a server leaving MAINT is assumed UP
without a check ("UP" + check "INI"), "health down" makes it DOWN, and
"disable health" shows "no check". Real checks are in the functional tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from rollout.drivers.haproxy.config import EMPTY_ADDRESS, EMPTY_PORT
from rollout.drivers.haproxy.lb import HAProxyLoadBalancer, free_slot, slot_number, slots_of
from rollout.drivers.haproxy.runtime import HAProxyRuntime
from rollout.errors import ConfigError, DriverError
from rollout.model import Admin, Health, Member, Node, NodeState
from rollout.protocols import LoadBalancer

FMAINT, CMAINT, FDRAIN = 0x01, 0x04, 0x08


@dataclass
class Slot:
    addr: str = EMPTY_ADDRESS
    port: int = EMPTY_PORT
    bits: int = FMAINT | CMAINT
    up: bool = False
    checks: bool = True
    checked: bool = False


class FakeHAProxy:
    url = "unix:///fake/admin.sock"

    def __init__(self, backend: str = "web", slots: int = 3) -> None:
        self.backend = backend
        self.slots = {f"node{i}": Slot() for i in range(1, slots + 1)}

    def close(self) -> None:
        pass

    def _slot(self, ref: str) -> Slot | str:
        backend, _, name = ref.partition("/")
        if backend != self.backend:
            return "No such backend.\n\n"
        return self.slots.get(name) or "No such server.\n\n"

    def send(self, line: str) -> str:
        words = line.split(" ")
        if words[:2] == ["show", "stat"]:
            return self._stat()
        if words[:3] == ["show", "servers", "state"]:
            return self._state()
        slot = self._slot(words[2])
        if isinstance(slot, str):
            return slot
        if words[0] == "set" and words[3] == "addr":
            slot.addr, slot.port = words[4], int(words[6])
            return "IP changed from ... by 'stats socket command'\n\n"
        if words[0] == "set" and words[3] == "state":
            leaving_maint = bool(slot.bits & FMAINT)
            if words[4] == "maint":
                slot.bits = (slot.bits | FMAINT) & ~FDRAIN
                slot.up = False
            else:
                slot.bits &= ~FMAINT
                slot.bits = slot.bits | FDRAIN if words[4] == "drain" else slot.bits & ~FDRAIN
                if leaving_maint:  # HAProxy assumes UP, no check has run
                    slot.up, slot.checked = True, False
            return "\n"
        if words[0] == "set" and words[3] == "health":
            slot.up = words[4] == "up"
            return "\n"
        if words[0] in ("enable", "disable") and words[1] == "health":
            slot.checks = words[0] == "enable"
            return "\n"
        return "Unknown command\n"

    def pass_checks(self) -> None:
        """Every checked, non-MAINT slot passes ``rise`` checks."""
        for slot in self.slots.values():
            if slot.checks and not slot.bits & FMAINT:
                slot.up, slot.checked = True, True

    def _stat(self) -> str:
        rows = ["# pxname,svname,scur,stot,status,check_status,hrsp_5xx,addr"]
        for name, s in self.slots.items():
            if s.bits & FMAINT:
                status = "MAINT"
            elif not s.checks:
                status = "no check"
            elif s.up:
                status = "DRAIN" if s.bits & FDRAIN else "UP"
            else:
                status = "DOWN"
            check = "L7OK" if s.checked else "INI"
            rows.append(f"{self.backend},{name},0,0,{status},{check},0,{s.addr}:{s.port}")
        return "\n".join(rows) + "\n\n"

    def _state(self) -> str:
        rows = [
            "1",
            "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_port",
        ]
        for i, (name, s) in enumerate(self.slots.items(), 1):
            op = 2 if s.up else 0
            rows.append(f"3 {self.backend} {i} {name} {s.addr} {op} {s.bits} {s.port}")
        return "\n".join(rows) + "\n\n"


def node(name: str, address: str) -> Node:
    return Node(name, address, "web", "lab", "img", "1.0", NodeState.RUNNING, 0.0)


@pytest.fixture
def fake() -> FakeHAProxy:
    return FakeHAProxy()


@pytest.fixture
def lb(fake: FakeHAProxy) -> HAProxyLoadBalancer:
    return HAProxyLoadBalancer(HAProxyRuntime(fake), "web", service_port=8080, slots=3)


def states(lb: HAProxyLoadBalancer) -> list[tuple[str, str, Admin, Health]]:
    return [(m.slot, m.target, m.admin, m.health) for m in lb.members()]


# -- pure helpers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("slot", "prefix", "number"),
    [
        ("node3", "node", 3),
        ("node12", "node", 12),
        ("node0", "node", None),
        ("nodex", "node", None),
        ("web1", "node", None),
        ("n.1", "n.", 1),
        ("nod1", "node", None),
    ],
)
def test_slot_number(slot: str, prefix: str, number: int | None) -> None:
    assert slot_number(slot, prefix) == number


def m(slot: str, target: str, admin: Admin) -> Member:
    return Member(slot=slot, target=target, admin=admin, health=Health.UNKNOWN)


def test_free_slot_is_the_first_empty_one_in_maint() -> None:
    members = [
        m("node1", "10.0.0.1", Admin.READY),
        m("node2", "", Admin.READY),  # empty but READY: someone is using it, skip
        m("node3", "10.0.0.3", Admin.MAINT),  # parked old node, not free
        m("node4", "", Admin.MAINT),
        m("node5", "", Admin.MAINT),
    ]
    assert free_slot(members) == members[3]
    assert free_slot(members[:3]) is None


def test_slots_of_never_matches_the_empty_target() -> None:
    members = [m("node1", "", Admin.MAINT), m("node2", "10.0.0.2", Admin.READY)]
    assert slots_of(members, "") == []
    assert slots_of(members, "10.0.0.2") == [members[1]]


# -- the load balancer, outcome by outcome ------------------------------------


def test_fresh_backend_is_all_empty(lb: HAProxyLoadBalancer) -> None:
    assert isinstance(lb, LoadBalancer)
    assert states(lb) == [(f"node{i}", "", Admin.MAINT, Health.UNKNOWN) for i in (1, 2, 3)]


def test_add_fills_the_first_slot_and_is_not_up_before_a_check(
    lb: HAProxyLoadBalancer, fake: FakeHAProxy
) -> None:
    got = lb.add(node("a", "10.231.0.11"))
    assert (got.slot, got.target, got.admin, got.health, got.port) == (
        "node1",
        "10.231.0.11",
        Admin.READY,
        Health.DOWN,
        8080,
    )
    fake.pass_checks()
    assert states(lb)[0] == ("node1", "10.231.0.11", Admin.READY, Health.UP)


def test_add_is_idempotent(lb: HAProxyLoadBalancer, fake: FakeHAProxy) -> None:
    lb.add(node("a", "10.231.0.11"))
    fake.pass_checks()
    again = lb.add(node("a", "10.231.0.11"))
    assert (again.slot, again.health) == ("node1", Health.UP)
    assert [s[1] for s in states(lb)] == ["10.231.0.11", "", ""]


def test_add_finishes_a_slot_left_in_maint(lb: HAProxyLoadBalancer, fake: FakeHAProxy) -> None:
    # A crash after "set addr": the slot holds the node but is still MAINT.
    fake.slots["node2"].addr, fake.slots["node2"].port = "10.231.0.12", 8080
    got = lb.add(node("b", "10.231.0.12"))
    assert (got.slot, got.admin, got.health) == ("node2", Admin.READY, Health.DOWN)
    assert [s[1] for s in states(lb)] == ["", "10.231.0.12", ""]


def test_add_to_a_full_backend_names_it(lb: HAProxyLoadBalancer) -> None:
    for i in (1, 2, 3):
        lb.add(node(f"n{i}", f"10.231.0.{i}"))
    with pytest.raises(DriverError, match=r"no free slot in backend web \(slots: 3\)"):
        lb.add(node("n4", "10.231.0.4"))


def test_drain_maint_and_back_to_ready(lb: HAProxyLoadBalancer, fake: FakeHAProxy) -> None:
    a = node("a", "10.231.0.11")
    lb.add(a)
    fake.pass_checks()
    lb.set_admin(a, Admin.DRAIN)
    assert states(lb)[0] == ("node1", "10.231.0.11", Admin.DRAIN, Health.UP)
    lb.set_admin(a, Admin.MAINT)
    assert states(lb)[0] == ("node1", "10.231.0.11", Admin.MAINT, Health.UNKNOWN)
    lb.set_admin(a, Admin.MAINT)  # idempotent
    lb.set_admin(a, Admin.READY)  # back from MAINT: DOWN until checked again
    assert states(lb)[0] == ("node1", "10.231.0.11", Admin.READY, Health.DOWN)
    fake.pass_checks()
    assert lb.members()[0].in_service


def test_set_admin_of_an_unknown_node(lb: HAProxyLoadBalancer) -> None:
    with pytest.raises(DriverError, match=r"node 'ghost' \(10.9.9.9\) is in no slot"):
        lb.set_admin(node("ghost", "10.9.9.9"), Admin.DRAIN)


def test_remove_frees_the_slot_and_is_idempotent(
    lb: HAProxyLoadBalancer, fake: FakeHAProxy
) -> None:
    a, b = node("a", "10.231.0.11"), node("b", "10.231.0.12")
    lb.add(a)
    lb.add(b)
    fake.pass_checks()
    lb.remove(a)
    lb.remove(a)
    assert states(lb) == [
        ("node1", "", Admin.MAINT, Health.UNKNOWN),
        ("node2", "10.231.0.12", Admin.READY, Health.UP),
        ("node3", "", Admin.MAINT, Health.UNKNOWN),
    ]
    assert fake.slots["node1"].checks is False
    # The freed slot is reused first.
    assert lb.add(node("c", "10.231.0.13")).slot == "node1"


def test_node_target_must_be_an_address(lb: HAProxyLoadBalancer) -> None:
    with pytest.raises(ConfigError, match="load-balancer target"):
        lb.add(node("a", "10.0.0.1;shutdown"))


def test_members_of_a_backend_without_our_slots() -> None:
    lb = HAProxyLoadBalancer(
        HAProxyRuntime(FakeHAProxy()), "web", service_port=80, slot_prefix="srv", slots=3
    )
    with pytest.raises(DriverError, match=r"no slots named srv1\.\.srv3"):
        lb.members()


def test_only_configured_slot_count_is_used() -> None:
    lb = HAProxyLoadBalancer(HAProxyRuntime(FakeHAProxy(slots=5)), "web", service_port=80, slots=2)
    assert [mm.slot for mm in lb.members()] == ["node1", "node2"]


def test_unknown_backend_raises_naming_it() -> None:
    lb = HAProxyLoadBalancer(
        HAProxyRuntime(FakeHAProxy(backend="api")), "web", service_port=80, slots=1
    )
    with pytest.raises(DriverError, match="web"):
        lb.add(node("a", "10.231.0.11"))


def test_constructor_validates() -> None:
    rt = HAProxyRuntime(FakeHAProxy())
    with pytest.raises(ConfigError):
        HAProxyLoadBalancer(rt, "web;x", service_port=80, slots=1)
    with pytest.raises(ConfigError):
        HAProxyLoadBalancer(rt, "web", service_port=0, slots=1)
    with pytest.raises(ConfigError):
        HAProxyLoadBalancer(rt, "web", service_port=80, slots=0)


def test_fake_matches_recorded_transitions() -> None:
    """Guard for the fake itself: a raw 'state ready' from MAINT reads as
    'UP' without a check, exactly like node8 in mixed.stat.txt."""
    fake = FakeHAProxy()
    rt = HAProxyRuntime(fake)
    rt.set_server_addr("web", "node1", "10.0.0.1", 80)
    rt.set_server_state("web", "node1", "ready")
    (row,) = [r for r in rt.show_stat("web") if r.svname == "node1"]
    assert (row.status, row.check_status) == ("UP", "INI")
    assert re.match(r"^10\.0\.0\.1:80$", row.addr)
