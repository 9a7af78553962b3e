"""The session's one post-run path, on the fakes: every command that replaces
nodes (run, phoenix, replace) records the evidence in the image store and runs
the provider's success hook while the pool's lease is still held; the journal
is opened once per command and closed at the end."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rollout.app.phoenix import phoenix_run
from rollout.app.replace import replace_node
from rollout.app.rollouts import run_rollout
from rollout.app.session import Session
from rollout.app.workspace import PoolDrivers, Workspace
from rollout.core.phoenix import DAY_SECONDS, PhoenixStatus
from rollout.inventory import load_environment
from rollout.model import Admin, Image, Node, SshTarget
from rollout.paths import DataDir
from rollout.store.journal import Journal
from rollout.store.lease import Holder, Lease
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


@dataclass
class Hook:
    """What the provider's success hook saw when it ran."""

    images: list[str]
    holders: list[Holder | None]


def lease_holder(data: DataDir) -> Holder | None:
    with closing(Journal(data.journal)) as journal:
        return Lease(journal, "lab/web", heartbeat=False).current()


@pytest.fixture
def world(tmp_path: Path) -> tuple[FakeWorld, FakeWorkspace, Hook]:
    fake = FakeWorld.create(4)
    fake.clock.advance(2 * DAY_SECONDS)
    ws = FakeWorkspace(REPO, load_environment(REPO, "lab"), DataDir(tmp_path / "data"),
                       fake=fake)
    hook = Hook([], [])
    provider = fake.provider
    original = provider.on_rollout_succeeded

    def on_rollout_succeeded(image: Image) -> None:
        hook.images.append(image.id)
        hook.holders.append(lease_holder(ws.data))
        original(image)

    provider.on_rollout_succeeded = on_rollout_succeeded  # type: ignore[method-assign]
    provider.ssh = unreachable  # type: ignore[method-assign]  # forensics find no sshd
    return fake, ws, hook


def unreachable(node: Node) -> SshTarget:
    return SshTarget(host="127.0.0.1", port=1, host_key_policy="ignore")


def assert_post_run(fake: FakeWorld, ws: Workspace, hook: Hook, image: Image,
                    rollout_id: str) -> None:
    manifest = fake.images.get(image.id).manifest
    assert manifest["passed_envs"] == ["lab"]
    assert [e["rollout_id"] for e in manifest["evidence"]] == [rollout_id]
    assert fake.provider.launches_from == image
    # The hook ran once, while this process held the pool's lease...
    assert hook.images == [image.id]
    holder = hook.holders[0]
    assert holder is not None and holder.pid == os.getpid()
    # ...which is released once the command returns.
    assert lease_holder(ws.data) is None


def test_run_records_evidence_and_runs_the_hook_under_the_lease(
        world: tuple[FakeWorld, FakeWorkspace, Hook]) -> None:
    fake, ws, hook = world
    result = run_rollout(ws, "web", version="2.0.0", clock=fake.clock)
    assert len(result.replaced) == 4
    assert_post_run(fake, ws, hook, fake.new, result.id)


def test_phoenix_ends_like_a_rollout(world: tuple[FakeWorld, FakeWorkspace, Hook]) -> None:
    fake, ws, hook = world
    report = phoenix_run(ws, "web", max_age=0.0, clock=fake.clock)
    assert report.status is PhoenixStatus.REPLACED and report.result is not None
    assert_post_run(fake, ws, hook, fake.old, report.result.id)


def test_replace_ends_like_a_rollout(world: tuple[FakeWorld, FakeWorkspace, Hook]) -> None:
    fake, ws, hook = world
    victim = sorted(n.name for n in fake.provider.live())[0]
    report = replace_node(ws, victim, role="web", force=True, clock=fake.clock)
    assert report.result is not None and report.result.replaced == (victim,)
    assert_post_run(fake, ws, hook, fake.old, report.result.id)


def test_a_failed_rollout_records_no_evidence_and_runs_no_hook(
        world: tuple[FakeWorld, FakeWorkspace, Hook], tmp_path: Path) -> None:
    fake, ws, hook = world
    fake.smoke.fail(image=fake.new.id)
    junit, metrics = tmp_path / "junit.xml", tmp_path / "rollout.prom"
    with pytest.raises(Exception, match="failed"):
        run_rollout(ws, "web", version="2.0.0", clock=fake.clock, junit=junit,
                    metrics_file=metrics)
    assert "passed_envs" not in fake.images.get(fake.new.id).manifest
    assert hook.images == [] and fake.provider.launches_from is None
    # The reports of a failed run are still written.
    assert junit.is_file()
    assert 'rollout_failures_total{env="lab",role="web"} 1' in metrics.read_text()


# -- the journal: one connection per command, closed at the end ------------------------

@pytest.fixture
def journal_connections(tmp_path: Path) -> Iterator[list[int]]:
    """For every SQLite connection this test opens to a journal under its
    tmp_path: how many descriptors of that file the process held right after."""
    seen: list[int] = []
    _WATCH.append((tmp_path, seen))
    yield seen
    _WATCH.remove((tmp_path, seen))


_WATCH: list[tuple[Path, list[int]]] = []


def _open_journal_fds(path: Path) -> int:
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            if os.readlink(fd) == str(path):
                count += 1
        except OSError:
            continue
    return count


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "sqlite3.connect/handle" or not _WATCH:
        return
    for root, seen in list(_WATCH):
        journal = (root / "data" / "journal.sqlite").resolve()
        if journal.exists():
            seen.append(_open_journal_fds(journal))


sys.addaudithook(_audit)  # audit hooks stay for the process; inert unless watched


def test_allow_below_floor_keeps_one_journal_open(
        world: tuple[FakeWorld, FakeWorkspace, Hook], journal_connections: list[int]) -> None:
    fake, ws, _ = world
    del fake.provider.on_rollout_succeeded  # the fixture's hook opens a journal of its own
    fake.lb.set_admin(fake.provider.list()[0], Admin.MAINT)  # 3 in service, floor 4
    result = run_rollout(ws, "web", version="2.0.0", clock=fake.clock, allow_below_floor=True)
    assert len(result.replaced) == 3
    # One journal connection for the whole command (the lowered floor changes
    # the one session's settings instead of opening a second one)...
    assert journal_connections == [1]
    # ...and it is closed when the command returns.
    assert _open_journal_fds((ws.data.root / "journal.sqlite").resolve()) == 0


def test_a_session_closes_its_journal_on_an_error(
        world: tuple[FakeWorld, FakeWorkspace, Hook]) -> None:
    fake, ws, _ = world
    with pytest.raises(RuntimeError, match="boom"), Session(ws, "web", clock=fake.clock):
        assert _open_journal_fds((ws.data.root / "journal.sqlite").resolve()) == 1
        raise RuntimeError("boom")
    assert _open_journal_fds((ws.data.root / "journal.sqlite").resolve()) == 0


def test_the_controller_needs_the_lease(world: tuple[FakeWorld, FakeWorkspace, Hook]) -> None:
    fake, ws, _ = world
    before = {n.name for n in fake.provider.live()}
    with Session(ws, "web", clock=fake.clock) as session, \
            pytest.raises(RuntimeError, match="lease"):
        session.run(fake.new)
    assert {n.name for n in fake.provider.live()} == before
