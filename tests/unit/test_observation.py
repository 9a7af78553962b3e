"""Observation is read-only, and what it cannot do is the core's job.

On the fakes: the steps a node owes (its data volume, its group membership)
and the end of a two-step removal are journaled actions of the core; errors of
an observation are retried only when the driver declares them transient, a
declared driver error halts at once, and a bug reaches the caller within one
pass of the loop instead of being waited out until the progress deadline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollout.config import Pool
from rollout.core.state import RolloutStatus
from rollout.engine.controller import Controller
from rollout.errors import RolloutFailed, RolloutHalted, TransientError
from rollout.model import NodeState, Setup
from rollout.store.journal import Journal
from rollout.testing import FakeWorld, pool_settings

POLL = 0.1


def controller(world: FakeWorld, tmp_path: Path, **settings: Any) -> Controller:
    pool = Pool("lab", "web", pool_settings(**settings), tmp_path / "web.yml")
    return Controller(pool=pool, provider=world.provider, lb=world.lb, smoke=world.smoke,
                      journal=Journal(tmp_path / "journal.sqlite", durable=False),
                      clock=world.clock, workers=0, poll_interval=POLL)


def after_first_step(ctl: Controller, arm: Any) -> None:
    """Call ``arm()`` once the rollout has journaled its first outcome."""
    armed: list[bool] = []

    def on_event(event: Any) -> None:
        if event.kind == "step_finished" and not armed:
            armed.append(True)
            arm()

    ctl.on_event = on_event


def steps_of(ctl: Controller, rollout_id: str, index: int) -> list[str]:
    return [s.kind for s in ctl.journal.steps(rollout_id) if s.index == index and s.ok]


# --- setup steps and two-step removals are journaled actions ---------------------------


def test_owed_setup_steps_are_journaled_actions_before_the_smoke_gate(tmp_path: Path) -> None:
    world = FakeWorld.create(3, setup=(Setup.ATTACH_VOLUME, Setup.JOIN_GROUP))
    ctl = controller(world, tmp_path, pool_size=3)
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.problems(3, world.new.id) == []
    assert all(not m.owed for m in world.provider.machines.values()
               if m.node.state is not NodeState.GONE)
    for index in range(3):
        kinds = steps_of(ctl, result.id, index)
        assert kinds.index("launch") < kinds.index("attach_volume") < kinds.index(
            "join_group") < kinds.index("smoke"), kinds


def test_restore_takes_the_setup_step_the_old_nodes_probe_names(tmp_path: Path) -> None:
    """In place with a stopped old node: the new node fails its smoke test, the
    old one is started again and owes its group membership: join_group is a
    journaled step of the restore, and the pool is whole again."""
    world = FakeWorld.create(2, setup=(Setup.JOIN_GROUP,))
    world.smoke.fail(image=world.new.id)
    ctl = controller(world, tmp_path, pool_size=2, strategy="in_place", max_unavailable=1,
                     min_healthy=1, failure_budget=0)
    with pytest.raises(RolloutFailed):
        ctl.run(world.new)
    assert world.problems(2, world.old.id) == []
    (state,) = ctl.journal.rollouts("lab", "web")
    restored = state.replacements[0]
    joins = [s for s in ctl.journal.steps(state.id)
             if s.kind == "join_group" and s.node == restored.old_name]
    assert joins and all(s.ok for s in joins)
    assert not world.provider.machines[restored.old_name].owed


def test_a_replacement_is_done_only_once_its_old_node_is_fully_gone(tmp_path: Path) -> None:
    world = FakeWorld.create(3, two_step_removal=True)
    ctl = controller(world, tmp_path, pool_size=3)
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    # Nothing REMOVING is left: every old node's removal was finished.
    assert world.problems(3, world.new.id) == []
    assert all(m.node.state in (NodeState.RUNNING, NodeState.GONE)
               for m in world.provider.machines.values())
    for index in range(3):
        kinds = steps_of(ctl, result.id, index)
        assert kinds[-2:] == ["destroy", "finish_removal"], kinds


def test_a_failed_new_node_is_fully_removed_before_the_restore_ends(tmp_path: Path) -> None:
    world = FakeWorld.create(3, two_step_removal=True)
    world.smoke.fail(image=world.new.id)
    ctl = controller(world, tmp_path, pool_size=3)
    with pytest.raises(RolloutFailed):
        ctl.run(world.new)
    assert world.problems(3, world.old.id) == []


# --- errors of observation ------------------------------------------------------------


def test_a_bug_in_readiness_surfaces_within_one_pass(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    world.provider.fail("readiness", times=None, raises=KeyError, error="'address'")
    ctl = controller(world, tmp_path, pool_size=2)
    started = world.clock.now()
    with pytest.raises(KeyError):
        ctl.run(world.new)
    # The launch, one pause, the first probe: not timeouts.ready, not the deadline.
    assert world.clock.now() - started <= 2 * POLL
    (state,) = ctl.journal.rollouts("lab", "web")
    assert state.status is RolloutStatus.RUNNING  # unfinished, as after a crash
    assert all(s.ok is not None for s in ctl.journal.steps(state.id))  # outcomes journaled
    world.provider._rules.clear()
    resumed = controller(world, tmp_path, pool_size=2).resume()
    assert resumed.status is RolloutStatus.SUCCEEDED
    assert world.problems(2, world.new.id) == []


def test_a_bug_in_list_surfaces_within_one_pass(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    ctl = controller(world, tmp_path, pool_size=2)
    after_first_step(ctl, lambda: world.provider.fail(
        "list", times=None, raises=AttributeError, error="no attribute"))
    started = world.clock.now()
    with pytest.raises(AttributeError):
        ctl.run(world.new)
    assert world.clock.now() - started <= 2 * POLL


def test_transient_readiness_errors_are_retried(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    world.provider.fail("readiness", times=5, raises=TransientError, error="timed out")
    ctl = controller(world, tmp_path, pool_size=2)
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.problems(2, world.new.id) == []


def test_transient_list_errors_are_waited_out(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    ctl = controller(world, tmp_path, pool_size=2)
    after_first_step(ctl, lambda: world.provider.fail(
        "list", times=5, raises=TransientError, error="connection reset"))
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    waits = [e for e in ctl.journal.events(result.id) if e.kind == "waiting"]
    assert any("connection reset" in e.reason for e in waits)  # type: ignore[attr-defined]


def test_a_declared_error_of_list_halts_at_once_naming_it(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    ctl = controller(world, tmp_path, pool_size=2, progress_deadline=600)
    after_first_step(ctl, lambda: world.provider.fail(
        "list", times=None, error="AccessDenied: describe_instances"))
    started = world.clock.now()
    with pytest.raises(RolloutHalted) as err:
        ctl.run(world.new)
    assert "AccessDenied" in str(err.value) and "resume" in str(err.value)
    assert world.clock.now() - started < 600
    world.provider._rules.clear()
    assert controller(world, tmp_path, pool_size=2).resume().status is RolloutStatus.SUCCEEDED


def test_a_declared_error_of_readiness_fails_the_node_without_waiting(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    world.provider.fail("readiness", times=None, image=world.new.id, error="no such instance")
    ctl = controller(world, tmp_path, pool_size=2, ready=300)
    started = world.clock.now()
    with pytest.raises(RolloutFailed) as err:
        ctl.run(world.new)
    assert "no such instance" in str(err.value)
    assert world.clock.now() - started < 300  # not timeouts.ready
    assert world.problems(2, world.old.id) == []
