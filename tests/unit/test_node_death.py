"""A node whose machine died (a lab node's nspawn SIGKILLed) is treated as
dead by the core even while the LB still sees it UP, and the lab can find
its orphaned init by the marker nspawn puts in the init's environment."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rollout.backends.lab.nodes import nspawn_command
from rollout.backends.lab.processes import MARKER, marker_value
from rollout.backends.lab.records import LabContext, NodeRecord
from rollout.config import LabSettings
from rollout.core.batches import plan_batches
from rollout.core.decide import decide, new_state
from rollout.core.state import DestroyNode, Phase, World
from rollout.model import Admin, FailureKind, Health, Member, Node, NodeState
from rollout.paths import DataDir
from rollout.testing import image, pool_settings

OLD, NEW = image(version="1"), image(version="2")
T0 = 1000.0


def _node(name: str, addr: str, img: str, state: NodeState = NodeState.RUNNING) -> Node:
    return Node(name, addr, "web", "lab", img, "", state, 0.0)


@pytest.mark.parametrize("phase", [Phase.SMOKING, Phase.ADDING, Phase.RISING,
                                   Phase.DRAINING, Phase.STANDBY])
def test_a_new_node_that_stopped_by_itself_fails_its_replacement(phase: Phase) -> None:
    olds = [_node(f"web-{i}", f"10.0.0.{i}", OLD.id) for i in range(3)]
    s = pool_settings(pool_size=3)
    state = new_state("r0000abcd", "lab", "web", NEW, s, plan_batches(olds, NEW, s), T0)
    rep = replace(state.replacements[0], phase=phase, phase_started=T0, new_target="10.0.1.1")
    state = state.with_replacement(rep)
    dead = _node(rep.new_name, "10.0.1.1", NEW.id, NodeState.STOPPED)
    # The LB still sees it UP: its orphaned services keep answering.
    members = [Member(f"s{i}", n.lb_target, Admin.READY, Health.UP) for i, n in enumerate(olds)]
    members.append(Member("s-new", "10.0.1.1", Admin.READY, Health.UP))
    d = decide(state, World.of([*olds, dead], members, {}), T0 + 1)
    after = d.state.replacements[0]
    assert after.phase is Phase.RESTORING
    assert after.failure is FailureKind.GONE and "stopped running" in (after.error or "")
    assert not any(isinstance(a, DestroyNode) and a.node.name == "web-0" for a in d.actions)


def test_a_running_new_node_is_left_alone() -> None:
    olds = [_node(f"web-{i}", f"10.0.0.{i}", OLD.id) for i in range(3)]
    s = pool_settings(pool_size=3)
    state = new_state("r0000abcd", "lab", "web", NEW, s, plan_batches(olds, NEW, s), T0)
    rep = replace(state.replacements[0], phase=Phase.RISING, phase_started=T0,
                  new_target="10.0.1.1")
    state = state.with_replacement(rep)
    new = _node(rep.new_name, "10.0.1.1", NEW.id)
    members = [Member(f"s{i}", n.lb_target, Admin.READY, Health.UP) for i, n in enumerate(olds)]
    members.append(Member("s-new", "10.0.1.1", Admin.READY, Health.DOWN))
    d = decide(state, World.of([*olds, new], members, {}), T0 + 1)
    assert d.state.replacements[0].phase is Phase.RISING


@pytest.mark.parametrize(("environ", "want"), [
    (b"PATH=/bin\0container=systemd-nspawn\0" + MARKER.encode() + b"=/d/lab/nodes/web-1\0",
     "/d/lab/nodes/web-1"),
    (b"PATH=/bin\0container=systemd-nspawn\0", None),
    (b"", None),
    (b"X" + MARKER.encode() + b"=/nope\0", None),
])
def test_marker_value(environ: bytes, want: str | None) -> None:
    assert marker_value(environ) == want


def test_every_node_carries_the_marker_of_its_own_directory(tmp_path: Path) -> None:
    lab = LabContext(DataDir(tmp_path), LabSettings())
    rec = NodeRecord(name="web-1", address="10.0.0.2", role="web", env="lab", image_id="i",
                     image_version="1", rollout_id=None, created_at=0.0, pid=None,
                     writable=False, image_dir="/img")
    assert f"--setenv={MARKER}={tmp_path / 'lab' / 'nodes' / 'web-1'}" in nspawn_command(lab, rec)
