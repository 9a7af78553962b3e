"""`plan` and `run` refuse, up front and touching nothing, a plan whose peak
the load balancer cannot hold (HAProxy's fixed slots, ELBv2's target quota);
`resume` with nothing to resume is not an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.app.plan import plan_rollout
from rollout.app.rollouts import resume_rollout, run_rollout
from rollout.errors import ConfigError, NothingToDo
from rollout.inventory import load_environment
from rollout.model import LbCapacity
from rollout.paths import DataDir
from rollout.store.journal import Journal
from rollout.testing import FakeWorld, pool_settings
from tests.unit.test_session import REPO, FakeWorkspace
from tests.unit.test_workflows_plan import plan, pool

SLOTS = LbCapacity(8, "rollout.haproxy.slots")


@pytest.mark.parametrize(
    ("nodes", "settings", "peak", "refused"),
    [
        (8, {}, 9, True),  # the case: 8 nodes in 8 slots, a surge of one
        (7, {}, 8, False),
        (6, {"batch_size": 2, "canary": 0}, 8, False),
        (8, {"canary": 0}, 9, True),
        (7, {"batch_size": 2, "canary": 0}, 9, True),
        # In place too: the parked old node keeps its slot (MAINT) until it retires.
        (8, {"strategy": "in_place", "max_unavailable": 1, "min_healthy": 7}, 9, True),
    ],
)
def test_the_peak_against_the_slots(nodes: int, settings: dict[str, object], peak: int,
                                    refused: bool) -> None:
    ns, members = pool(nodes)
    report = plan(pool_settings(pool_size=nodes, **settings), ns, members)
    report = type(report)(**{**report.__dict__, "lb_capacity": SLOTS})
    assert report.lb_peak == peak
    assert report.exceeds_lb is refused


def test_an_lb_without_a_bound_never_refuses_and_an_empty_plan_never_does() -> None:
    ns, members = pool(8)
    assert not plan(pool_settings(pool_size=8), ns, members).exceeds_lb


@pytest.fixture
def full(tmp_path: Path) -> tuple[FakeWorld, FakeWorkspace]:
    fake = FakeWorld.create(4)
    fake.lb.slots = 4  # every slot taken: no room for the surge's new node
    ws = FakeWorkspace(REPO, load_environment(REPO, "lab"), DataDir(tmp_path / "data"),
                       fake=fake)
    return fake, ws


def test_run_refuses_with_the_fix_and_touches_nothing(
        full: tuple[FakeWorld, FakeWorkspace]) -> None:
    fake, ws = full
    before = sorted((n.name, n.state) for n in fake.provider.list())
    members = sorted(m.target for m in fake.lb.members())
    with pytest.raises(ConfigError) as info:
        run_rollout(ws, "web", version="2.0.0", clock=fake.clock)
    assert "5 load balancer member(s)" in info.value.message
    assert "holds 4" in info.value.message
    assert "slots" in (info.value.hint or "")
    assert sorted((n.name, n.state) for n in fake.provider.list()) == before
    assert sorted(m.target for m in fake.lb.members()) == members
    journal = Journal(ws.data.journal)
    try:
        assert journal.rollouts("lab", "web") == []
    finally:
        journal.close()


def test_plan_refuses_too(full: tuple[FakeWorld, FakeWorkspace]) -> None:
    _, ws = full
    with pytest.raises(ConfigError, match="needs 5 load balancer member"):
        plan_rollout(ws, "web", version="2.0.0")


def test_resume_with_nothing_to_resume_is_nothing_to_do_exit_0(
        full: tuple[FakeWorld, FakeWorkspace]) -> None:
    """The exit-code table says 0 for "nothing to do"; resume used to exit 2."""
    _, ws = full
    with pytest.raises(NothingToDo, match="nothing to do") as info:
        resume_rollout(ws, role="web")
    assert info.value.exit_code == 0
