"""`rollout plan` decisions: batches, capacity against the floor, the ETA."""

from __future__ import annotations

import pytest

from rollout.config import PoolSettings
from rollout.core.batches import capacity_steps, floor, plan_batches
from rollout.core.plan import DEFAULT_WAITS, build_plan
from rollout.model import Admin, Health, Image, Member, Node, NodeState
from rollout.testing import image, pool_settings

OLD, NEW = image("web", "1.0.0"), image("web", "2.0.0")


def pool(count: int, img: Image = OLD, *, down: int = 0) -> tuple[list[Node], list[Member]]:
    nodes = [Node(name=f"web-{i}", address=f"10.0.0.{i + 1}", role="web", env="lab",
                  image_id=img.id, image_version=img.version, state=NodeState.RUNNING,
                  created_at=float(i)) for i in range(count)]
    members = [Member(slot=f"node{i}", target=n.address, admin=Admin.READY,
                      health=Health.DOWN if i < down else Health.UP)
               for i, n in enumerate(nodes)]
    return nodes, members


def plan(settings: PoolSettings, nodes: list[Node], members: list[Member],
         samples: dict[str, list[float]] | None = None, target: Image = NEW):  # type: ignore[no-untyped-def]
    return build_plan(env="lab", role="web", target=target, settings=settings, nodes=nodes,
                      members=members, samples=samples or {})


def test_surge_on_a_full_pool_keeps_the_floor_canary_first() -> None:
    nodes, members = pool(4)
    report = plan(pool_settings(canary=1, batch_size=2), nodes, members)
    assert report.batches == (("web-0",), ("web-1", "web-2"), ("web-3",))
    assert report.canary and report.skipped == ()
    assert report.floor == 4 and report.in_service == 4
    assert min(s.in_service for s in report.steps) == 4
    assert not report.breaches_floor


def test_nodes_on_the_target_are_skipped_and_an_empty_plan_never_breaches() -> None:
    nodes, members = pool(4, NEW, down=2)
    report = plan(pool_settings(), nodes, members)
    assert report.replace == () and report.skipped == ("web-0", "web-1", "web-2", "web-3")
    assert not report.breaches_floor


@pytest.mark.parametrize(
    ("strategy", "down", "extra", "lowest", "breach"),
    [
        ("surge", 0, {}, 4, False),
        ("surge", 1, {}, 3, True),  # a node already out: the core would wait forever
        ("in_place", 0, {"max_unavailable": 1, "min_healthy": 3}, 3, False),
        ("in_place", 1, {"max_unavailable": 1, "min_healthy": 3}, 2, True),
    ],
)
def test_the_floor_check_matches_what_the_core_keeps(
        strategy: str, down: int, extra: dict[str, object], lowest: int, breach: bool) -> None:
    nodes, members = pool(4, down=down)
    settings = pool_settings(strategy=strategy, **extra)
    report = plan(settings, nodes, members)
    assert report.lowest == lowest
    assert report.breaches_floor is breach
    assert any("--allow-below-floor" in w for w in report.warnings) is breach


def test_the_override_lowers_the_core_floor_to_the_lowest_step() -> None:
    nodes, members = pool(4, down=1)
    settings = pool_settings(strategy="in_place", max_unavailable=1, min_healthy=3)
    report = plan(settings, nodes, members)
    lowered = settings.with_overrides(**report.below_floor_overrides())
    assert floor(lowered) == report.lowest == 2
    again = plan(lowered, nodes, members)
    assert not again.breaches_floor


def test_eta_uses_journal_medians_else_defaults() -> None:
    nodes, members = pool(4)
    settings = pool_settings(canary=1, soak=3)
    fresh = plan(settings, nodes, members)
    assert set(fresh.eta.source.values()) == {"default"}
    assert fresh.eta.seconds == pytest.approx(4 * sum(DEFAULT_WAITS.values()) + 3)

    samples = {"boot": [2.0, 3.0, 100.0], "smoke": [4.0], "lb_rise": [3.0], "drain": [0.0]}
    known = plan(settings, nodes, members, samples)
    assert known.eta.per_kind == {"boot": 3.0, "smoke": 4.0, "lb_rise": 3.0, "drain": 0.0}
    assert known.eta.source["boot"] == "journal (3 samples)"
    assert known.eta.seconds == pytest.approx(4 * 10.0 + 3)


def test_nodes_outside_the_pool_are_left_alone_and_named() -> None:
    nodes, members = pool(4)
    members[3] = Member(slot="node3", target=nodes[3].address, admin=Admin.MAINT,
                        health=Health.UP)
    report = plan(pool_settings(), nodes, members)
    assert "web-3" not in report.replace
    assert any("web-3" in w for w in report.warnings)


def test_only_replaces_named_nodes_even_on_the_target() -> None:
    nodes, _ = pool(4, NEW)
    chosen = plan_batches(nodes, NEW, pool_settings(canary=1), only={"web-2", "web-0"})
    assert [n.name for n in chosen.nodes] == ["web-0", "web-2"]
    assert chosen.skipped == ()
    assert len(capacity_steps(chosen, pool_settings())) == 8
