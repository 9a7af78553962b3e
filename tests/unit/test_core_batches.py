"""Planning: batch order, canary first, skipping nodes on the target, capacity."""

from __future__ import annotations

from rollout.core.batches import capacity_steps, plan_batches, pool_nodes
from rollout.model import Admin, Health, Member, Node, NodeState
from rollout.testing import image, pool_settings

OLD, NEW = image(version="1"), image(version="2")


def _node(i: int, img: str = OLD.id, state: NodeState = NodeState.RUNNING) -> Node:
    return Node(f"web-{i}", f"10.0.0.{i}", "web", "lab", img, "", state, float(10 - i))


def test_canary_first_oldest_first_and_target_skipped() -> None:
    nodes = [_node(i) for i in range(6)] + [_node(9, NEW.id)]
    plan = plan_batches(nodes, NEW, pool_settings(pool_size=7, canary=1, batch_size=2))
    assert [[n.name for n in b] for b in plan.batches] == [
        ["web-5"], ["web-4", "web-3"], ["web-2", "web-1"], ["web-0"]]
    assert [n.name for n in plan.skipped] == ["web-9"] and plan.canary


def test_no_canary_and_nothing_to_do() -> None:
    nodes = [_node(i) for i in range(3)]
    plan = plan_batches(nodes, NEW, pool_settings(pool_size=3, canary=0, batch_size=3))
    assert len(plan.batches) == 1 and not plan.canary
    done = plan_batches([_node(i, NEW.id) for i in range(3)], NEW, pool_settings(pool_size=3))
    assert done.batches == () and len(done.skipped) == 3


def test_pool_nodes_are_running_ready_members() -> None:
    nodes = [_node(0), _node(1), _node(2, state=NodeState.STOPPED), _node(3)]
    members = {
        "10.0.0.0": Member("s0", "10.0.0.0", Admin.READY, Health.UP),
        "10.0.0.1": Member("s1", "10.0.0.1", Admin.MAINT, Health.UP),
        "10.0.0.2": Member("s2", "10.0.0.2", Admin.READY, Health.DOWN),
    }
    assert [n.name for n in pool_nodes(nodes, members)] == ["web-0"]


def test_capacity_projection() -> None:
    nodes = [_node(i) for i in range(4)]
    surge = pool_settings(canary=0, batch_size=2)
    steps = capacity_steps(plan_batches(nodes, NEW, surge), surge)
    assert min(s.in_service for s in steps) == 4 and max(s.nodes for s in steps) == 6
    in_place = pool_settings(canary=0, batch_size=2, strategy="in_place", max_unavailable=2,
                             min_healthy=2)
    steps = capacity_steps(plan_batches(nodes, NEW, in_place), in_place)
    assert min(s.in_service for s in steps) == 2 and max(s.unavailable for s in steps) == 2
