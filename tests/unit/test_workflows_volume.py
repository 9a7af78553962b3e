"""Data volumes through the core: the old node is stopped before its volume
moves, and the volume goes back to it on restore (on the fakes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from rollout.config import Pool
from rollout.core.state import RolloutStatus
from rollout.engine.controller import Controller
from rollout.errors import DriverError, RolloutFailed
from rollout.model import LaunchSpec, Node, NodeState
from rollout.store.journal import Journal
from rollout.testing import FakeWorld, pool_settings


class VolumeProvider:
    """Wraps the fake provider with one volume per node, enforcing what a real
    disk needs: it moves only off a stopped node, and mounts on one running
    machine at a time."""

    def __init__(self, world: FakeWorld) -> None:
        self.inner = world.provider
        self.holder: dict[str, str] = {}  # volume -> node
        for n in self.inner.list():
            self.holder[f"vol-{n.name}"] = n.name

    def volume_of(self, name: str) -> str | None:
        return next((v for v, n in self.holder.items() if n == name), None)

    def _state(self, name: str) -> NodeState | None:
        node = next((n for n in self.inner.live() if n.name == name), None)
        return node.state if node is not None else None

    def launch(self, spec: LaunchSpec) -> Node:
        if spec.volume_from is not None and self.volume_of(spec.name) is None:
            volume = self.volume_of(spec.volume_from)
            if volume is not None:
                if self._state(spec.volume_from) not in (NodeState.STOPPED, None):
                    raise DriverError(f"{spec.volume_from} still runs")
                self.holder[volume] = spec.name
        return self.inner.launch(spec)

    def start(self, node: Node) -> Node:
        for volume, name in list(self.holder.items()):
            if volume == f"vol-{node.name}" and name != node.name:
                if self._state(name) not in (NodeState.STOPPED, None):
                    raise DriverError(f"{volume} is mounted by {name}, which runs")
                self.holder[volume] = node.name
        return self.inner.start(node)

    def __getattr__(self, attr: str) -> object:
        return getattr(self.inner, attr)


def controller(world: FakeWorld, provider: VolumeProvider, tmp_path: Path) -> Controller:
    settings = pool_settings(volume="/var/lib/data", strategy="in_place", max_unavailable=1,
                             min_healthy=3, canary=1)
    return Controller(pool=Pool("lab", "web", settings, tmp_path / "web.yml"),
                      provider=provider, lb=world.lb, smoke=world.smoke,  # type: ignore[arg-type]
                      journal=Journal(tmp_path / "j.sqlite", durable=False), clock=world.clock,
                      workers=0)


def test_each_volume_moves_to_the_replacement_of_its_node(tmp_path: Path) -> None:
    world = FakeWorld.create(4)
    provider = VolumeProvider(world)
    before = {n.name: f"vol-{n.name}" for n in world.provider.list()}
    result = controller(world, provider, tmp_path).run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.problems(4, world.new.id) == []
    state = Journal(tmp_path / "j.sqlite").get(result.id)
    for rep in state.replacements:
        assert provider.holder[before[rep.old_name]] == rep.new_name
    assert len(set(provider.holder.values())) == 4


def test_a_failed_replacement_gives_the_volume_back(tmp_path: Path) -> None:
    world = FakeWorld.create(4)
    provider = VolumeProvider(world)
    world.smoke.fail(image=world.new.id, times=None)
    with pytest.raises(RolloutFailed):
        controller(world, provider, tmp_path).run(world.new)
    assert world.problems(4, world.old.id) == []
    for node in world.provider.list():
        assert provider.holder[f"vol-{node.name}"] == node.name


def test_a_volume_pool_must_replace_in_place() -> None:
    with pytest.raises(ValidationError, match="volume must use strategy in_place"):
        pool_settings(volume="/var/lib/data")
    with pytest.raises(ValidationError, match="absolute path"):
        pool_settings(volume="data", strategy="in_place", max_unavailable=1, min_healthy=3)
