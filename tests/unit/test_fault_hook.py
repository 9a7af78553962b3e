"""The effect→outcome fault hook (rollout.app.faults): it fires after the
chosen driver call has happened and before its outcome is journaled, so the
journal holds the intent alone; a resume then converges."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.app.faults import kill_after_effect
from rollout.config import Pool
from rollout.core.state import RolloutStatus
from rollout.engine.controller import Controller
from rollout.errors import ConfigError
from rollout.store.journal import Journal
from rollout.testing import FakeWorld, pool_settings


class Killed(BaseException):
    pass


def _die() -> None:
    raise Killed


def _controller(world: FakeWorld, path: Path, hook: object = None) -> Controller:
    pool = Pool("lab", "web", pool_settings(pool_size=3), path.parent / "web.yml")
    return Controller(pool=pool, provider=world.provider, lb=world.lb, smoke=world.smoke,
                      journal=Journal(path, durable=False), clock=world.clock, workers=0,
                      after_effect=hook)  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", ["0:launch", "0:lb_add", "1:lb_set_admin:2", "2:destroy"])
def test_a_kill_between_effect_and_outcome_leaves_the_intent_alone_and_resume_converges(
        tmp_path: Path, spec: str) -> None:
    index, kind, *nth = spec.split(":")
    world = FakeWorld.create(3)
    path = tmp_path / "journal.sqlite"
    first = _controller(world, path, kill_after_effect(spec, kill=_die))
    with pytest.raises(Killed):
        first.run(world.new)
    unfinished = first.journal.unfinished("lab", "web")
    assert unfinished is not None
    steps = [s for s in first.journal.steps(unfinished.id)
             if s.kind == kind and s.index == int(index)]
    # The effect happened, but the journal has only the intent of the last one.
    assert len(steps) == int(nth[0] if nth else 1), steps
    assert steps[-1].ok is None and all(s.ok for s in steps[:-1])
    resumed = _controller(world, path)
    assert resumed.resume().status is RolloutStatus.SUCCEEDED
    assert world.problems(3, world.new.id) == []


def test_it_fires_once_and_only_on_success(tmp_path: Path) -> None:
    fired: list[int] = []
    world = FakeWorld.create(3)
    controller = _controller(world, tmp_path / "j.sqlite",
                             kill_after_effect("1:lb_add", kill=lambda: fired.append(1)))
    assert controller.run(world.new).status is RolloutStatus.SUCCEEDED
    assert fired == [1]
    # Negative control: a kind that never runs never fires.
    world2 = FakeWorld.create(3)
    none: list[int] = []
    hook = kill_after_effect("7:lb_add", kill=lambda: none.append(1))
    _controller(world2, tmp_path / "k.sqlite", hook).run(world2.new)
    assert none == []


@pytest.mark.parametrize("bad", ["lb_add", "0", "x:lb_add", "0:LB-ADD", "0:lb_add:two"])
def test_a_bad_spec_is_a_config_error_naming_the_variable(bad: str) -> None:
    with pytest.raises(ConfigError, match="ROLLOUT_FAULT_KILL_AFTER_EFFECT"):
        kill_after_effect(bad)
