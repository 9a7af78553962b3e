"""``rollout reap`` and orphans the provider cannot list (no record, but a
machine still runs): each is removed, journaled and reported, unless an
unfinished rollout names it; a dry run removes nothing. The lab's own orphans
are tested for real in tests/functional/test_reap_orphans.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.config import Pool
from rollout.engine.controller import Controller
from rollout.errors import DriverError, Interrupted
from rollout.events import Event, NodeReaped
from rollout.store.journal import Journal
from rollout.testing import FakeProvider, FakeWorld, pool_settings


class OrphanedProvider(FakeProvider):
    """A FakeProvider with record-less machines still running."""

    def __init__(self, base: FakeProvider, orphans: dict[str, str]) -> None:
        self.__dict__.update(base.__dict__)
        self.left = dict(orphans)
        self.stuck: set[str] = set()

    def orphans(self) -> dict[str, str]:
        return dict(self.left)

    def remove_orphan(self, name: str) -> None:
        if name in self.stuck:
            raise DriverError(f"node {name}: its processes survived SIGKILL")
        self.left.pop(name, None)


def _controller(world: FakeWorld, provider: FakeProvider, tmp_path: Path) -> Controller:
    pool = Pool("lab", "web", pool_settings(pool_size=2, canary=0), tmp_path / "web.yml")
    return Controller(pool=pool, provider=provider, lb=world.lb, smoke=world.smoke,
                      journal=Journal(tmp_path / "journal.sqlite", durable=False),
                      clock=world.clock, workers=0)


def test_reap_removes_and_reports_each_orphan(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    provider = OrphanedProvider(world.provider, {"web-a": "container init pid(s) 41",
                                                 "web-b": "empty network namespace"})
    provider.stuck.add("web-b")
    ctl = _controller(world, provider, tmp_path)
    seen: list[Event] = []
    ctl.on_event = seen.append
    dry = ctl.reap(dry_run=True)
    assert set(dry.destroyed) == {"web-a", "web-b"}
    assert set(provider.left) == {"web-a", "web-b"}
    seen.clear()
    report = ctl.reap()
    assert report.destroyed == ("web-a",)
    assert [k for k, _ in report.kept] == ["web-b"]
    assert "removal failed" in report.kept[0][1]
    assert set(provider.left) == {"web-b"}
    reaped = [e for e in seen if isinstance(e, NodeReaped)]
    assert {(e.node, e.what) for e in reaped} == {("web-a", "orphan"), ("web-b", "orphan")}
    assert "container init pid(s) 41" in next(e.reason for e in reaped if e.node == "web-a")
    steps = [(s.kind, s.node, s.ok) for s in ctl.journal.steps(None)]
    assert ("reap_orphan", "web-a", True) in steps and ("reap_orphan", "web-b", False) in steps
    assert world.problems(2) == []  # the pool itself is untouched


def test_reap_keeps_an_orphan_an_unfinished_rollout_names(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    ctl = _controller(world, world.provider, tmp_path)
    ctl.stop_requested = stop
    with pytest.raises(Interrupted):
        ctl.run(world.new)
    (state,) = ctl.journal.rollouts("lab", "web")
    names = {state.replacements[0].old_name, state.replacements[0].new_name}
    new_name = state.replacements[0].new_name
    provider = OrphanedProvider(world.provider, {new_name: "container init pid(s) 7"})
    ctl = _controller(world, provider, tmp_path)
    report = ctl.reap()
    assert new_name in names and new_name in provider.left
    assert any(k == new_name and "unfinished rollout" in why for k, why in report.kept)
