"""phoenix_run and the floor check of run_rollout on the fakes: what gets
replaced, what is skipped and why, what the journal keeps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from rollout.app.phoenix import phoenix_history, phoenix_run
from rollout.app.replace import replace_node
from rollout.app.rollouts import run_rollout
from rollout.app.workspace import PoolDrivers, Workspace
from rollout.core.phoenix import DAY_SECONDS, PhoenixBudget, parse_window
from rollout.errors import ConfigError, RolloutFailed
from rollout.inventory import load_environment
from rollout.model import Admin, Node, SshTarget
from rollout.paths import DataDir
from rollout.store.journal import Journal
from rollout.store.lease import Lease
from rollout.testing import FakeWorld

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class FakeWorkspace(Workspace):
    """The repo's lab inventory, with the web pool's drivers replaced by fakes."""

    fake: FakeWorld | None = None

    def drivers(self, role: str) -> PoolDrivers:
        assert self.fake is not None
        f = self.fake
        return PoolDrivers(self.pool(role), f.provider, f.lb, f.smoke, f.images)


@pytest.fixture
def world(tmp_path: Path) -> tuple[FakeWorld, FakeWorkspace]:
    fake = FakeWorld.create(4)
    fake.clock.advance(2 * DAY_SECONDS)  # the seeded nodes are two days old
    ws = FakeWorkspace(REPO, load_environment(REPO, "lab"), DataDir(tmp_path / "data"),
                       fake=fake)
    return fake, ws


def names(fake: FakeWorld) -> set[str]:
    return {n.name for n in fake.provider.live()}


def test_max_age_zero_replaces_every_node_on_the_same_image(
        world: tuple[FakeWorld, FakeWorkspace]) -> None:
    fake, ws = world
    before = names(fake)
    report = phoenix_run(ws, "web", max_age=0.0, clock=fake.clock)
    assert report.status == "replaced" and report.result is not None
    assert fake.problems(4, fake.old.id) == []
    assert names(fake).isdisjoint(before)
    journal = Journal(ws.data.journal)
    assert journal.get(report.result.id).kind == "phoenix"
    # Idempotent: a second run right after finds nothing due.
    again = phoenix_run(ws, "web", max_age=DAY_SECONDS, clock=fake.clock)
    assert again.status == "nothing_due"


def test_the_budget_caps_a_run_and_the_day(world: tuple[FakeWorld, FakeWorkspace]) -> None:
    fake, ws = world
    first = phoenix_run(ws, "web", max_age=DAY_SECONDS, budget=PhoenixBudget(2, 3),
                        clock=fake.clock)
    assert first.result is not None and len(first.result.replaced) == 2
    second = phoenix_run(ws, "web", max_age=DAY_SECONDS, budget=PhoenixBudget(2, 3),
                         clock=fake.clock)
    assert second.result is not None and len(second.result.replaced) == 1
    third = phoenix_run(ws, "web", max_age=DAY_SECONDS, budget=PhoenixBudget(2, 3),
                        clock=fake.clock)
    assert third.status == "skipped" and "per-day budget is spent" in third.reason
    journal = Journal(ws.data.journal)
    assert len(phoenix_history(journal.rollouts("lab", "web"), fake.clock.now())) == 3
    assert phoenix_history(journal.rollouts("lab", "web"),
                           fake.clock.now() + DAY_SECONDS + 3600) == []


def test_skips_outside_the_window_when_locked_and_when_unhealthy(
        world: tuple[FakeWorld, FakeWorkspace]) -> None:
    fake, ws = world
    before = names(fake)
    closed = parse_window("daily 00:00-00:01 UTC")
    if closed.is_open(fake.clock.now()):
        fake.clock.advance(3600)
    report = phoenix_run(ws, "web", max_age=0.0, window=closed, clock=fake.clock)
    assert report.status == "skipped" and "outside the maintenance window" in report.reason

    ws.data.root.mkdir(parents=True, exist_ok=True)
    holder = Lease(Journal(ws.data.journal), "lab/web", heartbeat=False).acquire()
    try:
        report = phoenix_run(ws, "web", max_age=0.0, clock=fake.clock)
        assert report.status == "skipped" and "holds the lock" in report.reason
    finally:
        holder.release()

    sick = fake.provider.list()[0]
    fake.lb.set_admin(sick, Admin.MAINT)
    report = phoenix_run(ws, "web", max_age=0.0, clock=fake.clock)
    assert report.status == "skipped" and "unhealthy" in report.reason and sick.name in (
        report.reason)
    assert names(fake) == before


def test_run_refuses_a_plan_below_the_floor_unless_allowed(
        world: tuple[FakeWorld, FakeWorkspace]) -> None:
    fake, ws = world
    out = fake.provider.list()[0]
    fake.lb.set_admin(out, Admin.MAINT)  # one node out: 3 in service, floor 4
    before = names(fake)
    with pytest.raises(ConfigError, match="below the floor of 4") as err:
        run_rollout(ws, "web", version="2.0.0", clock=fake.clock)
    assert "--allow-below-floor" in str(err.value)
    assert names(fake) == before

    result = run_rollout(ws, "web", version="2.0.0", clock=fake.clock, allow_below_floor=True)
    assert len(result.replaced) == 3
    assert {n.image_id for n in fake.provider.live() if n.name != out.name} == {fake.new.id}


# -- replace_node on the fakes (forensics find no sshd: recorded, not raised) ----------

def unreachable(node: Node) -> SshTarget:
    return SshTarget(host="127.0.0.1", port=1, host_key_policy="ignore")


def test_replace_kicks_a_sick_node_and_blames_the_image_when_the_new_one_fails(
        world: tuple[FakeWorld, FakeWorkspace]) -> None:
    fake, ws = world
    fake.provider.ssh = unreachable  # type: ignore[method-assign]
    sick, *others = sorted(n.name for n in fake.provider.live())
    fake.smoke.fail(node=sick, times=1)
    report = replace_node(ws, sick, role="web", clock=fake.clock)
    assert report.result is not None and report.result.replaced == (sick,)
    assert not report.forensics.connected
    assert (report.forensics.directory / "summary.json").is_file()
    assert set(others) < names(fake) and sick not in names(fake)

    # Every node of the image fails now: the replacement too, so blame the image.
    victim = sorted(names(fake))[0]
    fake.smoke.fail(image=fake.old.id)
    before = names(fake)
    with pytest.raises(RolloutFailed, match=r"image .* not the node, is the likely cause"):
        replace_node(ws, victim, role="web", clock=fake.clock)
    assert names(fake) == before
    assert fake.problems(4, fake.old.id) == []
