"""A load balancer that comes back empty mid-rollout (a HAProxy restarted after
it died knows only its config's empty slots): the rollout halts after
timeouts.observe, and ``resume`` puts every node the journal says serves back
in the LB, so the pool ends whole, whatever phase the LB died in."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.config import Pool
from rollout.core.state import RolloutStatus
from rollout.engine.controller import Controller
from rollout.errors import RolloutError, RolloutHalted, TransientError
from rollout.events import Event
from rollout.store.journal import Journal
from rollout.testing import FakeWorld, pool_settings


def _controller(world: FakeWorld, tmp_path: Path) -> Controller:
    settings = pool_settings(pool_size=4, timeouts={"observe": 5.0})
    pool = Pool("lab", "web", settings, tmp_path / "web.yml")
    return Controller(pool=pool, provider=world.provider, lb=world.lb, smoke=world.smoke,
                      journal=Journal(tmp_path / "journal.sqlite", durable=False),
                      clock=world.clock, workers=0, poll_interval=0.1)


@pytest.mark.parametrize("phase", ["booting", "smoking", "rising", "draining", "standby",
                                   "retiring"])
def test_resume_on_an_empty_lb_puts_the_pool_back_whole(tmp_path: Path, phase: str) -> None:
    world = FakeWorld.create(4)
    ctl = _controller(world, tmp_path)
    killed: list[float] = []

    def on_event(event: Event) -> None:
        if (event.kind == "phase_changed" and getattr(event, "phase", "") == phase
                and not killed):
            killed.append(world.clock.now())
            world.lb.fail("members", times=None, raises=TransientError,
                          error="connection refused")

    ctl.on_event = on_event
    with pytest.raises(RolloutHalted, match=r"timeouts\.observe"):
        ctl.run(world.new)
    # Halted within its bound (5 s, plus a poll or two), not the progress deadline.
    assert killed and world.clock.now() - killed[0] < 5.0 + 2.0
    (state,) = ctl.journal.rollouts("lab", "web")
    assert state.status is RolloutStatus.HALTED
    # The LB comes back with none of the pool's members.
    world.lb._rules.clear()
    world.lb._members.clear()
    ctl.on_event = lambda _e: None
    try:
        result = ctl.resume()
        assert result.status is RolloutStatus.SUCCEEDED
        image = world.new.id
    except RolloutError:
        image = world.old.id  # the canary was missing from the LB: restored
    assert world.problems(4, image) == []
    assert ctl.journal.unfinished("lab", "web") is None


def test_an_lb_back_empty_within_the_bound_and_the_rollout_carries_on(tmp_path: Path) -> None:
    """The LB is down for about a second, well inside timeouts.observe, and
    comes back empty while the canary boots: the same run re-adds the pool's
    nodes and finishes."""
    world = FakeWorld.create(4)
    ctl = _controller(world, tmp_path)
    done: list[bool] = []

    def on_event(event: Event) -> None:
        if event.kind == "phase_changed" and getattr(event, "phase", "") == "booting" \
                and not done:
            done.append(True)
            world.lb.fail("members", times=10, raises=TransientError,
                          error="connection refused")
            world.lb._members.clear()

    ctl.on_event = on_event
    result = ctl.run(world.new)
    assert done and result.status is RolloutStatus.SUCCEEDED
    assert world.problems(4, world.new.id) == []
