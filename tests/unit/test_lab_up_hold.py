"""`lab up` leaves alone the pools whose rollout is unfinished in the journal,
and warns when the pool size leaves no HAProxy slot for a surge."""

from __future__ import annotations

from pathlib import Path

from rollout.app.lab import _unfinished
from rollout.app.session import open_journal
from rollout.app.workspace import Workspace
from rollout.backends.lab.env import _warn_no_surge_room
from rollout.core.batches import plan_batches
from rollout.core.decide import new_state
from rollout.inventory import load_environment
from rollout.model import Node, NodeState
from rollout.paths import DataDir
from rollout.testing import image

REPO = Path(__file__).resolve().parents[2]


def _ws(tmp_path: Path) -> Workspace:
    return Workspace(REPO, load_environment(REPO, "lab"), DataDir(tmp_path / "data"))


def test_a_pool_with_an_unfinished_rollout_is_held(tmp_path: Path) -> None:
    ws = _ws(tmp_path)
    assert _unfinished(ws) == {}
    pool = ws.pool("web")
    olds = [Node(f"web-{i}", f"10.0.0.{i}", "web", "lab", "web-1", "1", NodeState.RUNNING, 0.0)
            for i in range(pool.settings.pool_size)]
    target = image("web", "2.0.0")
    state = new_state("r0000beef", "lab", "web", target, pool.settings,
                      plan_batches(olds, target, pool.settings), 0.0)
    journal = open_journal(ws)
    try:
        journal.create(state)
    finally:
        journal.close()
    assert _unfinished(ws) == {"web": "r0000beef"}


def test_no_room_for_a_surge_is_said_at_lab_up(tmp_path: Path) -> None:
    pool = _ws(tmp_path).pool("web")
    assert pool.settings.haproxy is not None
    slots = pool.settings.haproxy.slots
    said: list[str] = []
    _warn_no_surge_room(pool, slots - 1, said.append)
    assert said == []
    _warn_no_surge_room(pool, slots, said.append)
    assert len(said) == 1 and "rollout.haproxy.slots" in said[0] and str(slots + 1) in said[0]
