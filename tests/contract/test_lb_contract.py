"""What every LoadBalancer must do, run against each registered driver."""

from __future__ import annotations

from rollout.model import Admin, Member, Node
from tests.contract.harness import LbHarness


def of(h: LbHarness, node: Node) -> list[Member]:
    return [m for m in h.lb.members() if m.target == node.lb_target]


def test_add_is_idempotent_and_the_member_rises(lb_harness: LbHarness) -> None:
    h = lb_harness
    node = h.nodes[0]
    h.lb.add(node)
    h.lb.add(node)
    (member,) = of(h, node)
    assert member.admin is Admin.READY
    h.advance(h.rise + 1.0)
    (member,) = of(h, node)
    assert member.in_service


def test_drain_stops_new_sessions_and_ends(lb_harness: LbHarness) -> None:
    h = lb_harness
    node, other = h.nodes
    h.lb.add(node)
    h.lb.add(other)
    h.advance(h.rise + 1.0)
    h.lb.set_admin(node, Admin.DRAIN)
    (member,) = of(h, node)
    assert member.admin is Admin.DRAIN and not member.in_service
    h.advance(h.drain + 1.0)
    (member,) = of(h, node)
    assert member.sessions == 0 and not member.in_service
    (kept,) = of(h, other)
    assert kept.in_service  # only the drained member is touched


def test_maint_then_ready_puts_it_back_in_service(lb_harness: LbHarness) -> None:
    h = lb_harness
    node = h.nodes[0]
    h.lb.add(node)
    h.advance(h.rise + 1.0)
    h.lb.set_admin(node, Admin.MAINT)
    of(h, node)  # observed, as the core polls
    h.advance(h.drain + 1.0)
    (member,) = of(h, node)
    assert member.admin is Admin.MAINT and not member.in_service
    h.lb.set_admin(node, Admin.READY)
    h.advance(h.rise + 1.0)
    (member,) = of(h, node)
    assert member.admin is Admin.READY and member.in_service


def test_remove_is_idempotent(lb_harness: LbHarness) -> None:
    h = lb_harness
    node = h.nodes[0]
    h.lb.add(node)
    h.advance(h.rise + 1.0)
    h.lb.set_admin(node, Admin.MAINT)
    h.lb.remove(node)
    h.lb.remove(node)
    # Gone at once, or (ELBv2) still draining its connections until the delay.
    assert all(not m.in_service and m.admin is not Admin.READY for m in of(h, node))
    h.advance(h.drain + 1.0)
    assert of(h, node) == []
