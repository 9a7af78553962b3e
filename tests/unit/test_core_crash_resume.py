"""Kill the controller at every step boundary, resume, and check that it converges.

A crash is a BaseException raised from a driver call, just before the side
effect (the intent is journaled, nothing happened) or just after it (the side
effect happened, its outcome was never journaled). Nothing in the controller
catches it, as nothing would survive a SIGKILL. A new controller with a new
journal connection then resumes.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from rollout.config import Pool
from rollout.core.state import RolloutStatus
from rollout.engine.controller import Controller
from rollout.errors import RolloutFailed
from rollout.model import Setup
from rollout.store.journal import Journal
from rollout.testing import FakeWorld, pool_settings


class Crash(BaseException):
    pass


_MUTATING = {"launch", "stop", "start", "destroy", "add", "set_admin", "remove", "run",
             "attach_volume", "join_group", "finish_removal", "stage", "switch"}


class Counter:
    def __init__(self, crash_at: int | None, when: str) -> None:
        self.calls = 0
        self.crash_at = crash_at
        self.when = when


class Crashing:
    """A driver that dies before or after its ``crash_at``-th mutating call."""

    def __init__(self, inner: Any, counter: Counter) -> None:
        self._inner = inner
        self._counter = counter

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in _MUTATING:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            c = self._counter
            c.calls += 1
            if c.calls == c.crash_at and c.when == "before":
                raise Crash(name)
            try:
                return attr(*args, **kwargs)
            finally:
                if c.calls == c.crash_at and c.when == "after":
                    raise Crash(name)

        return call


def _controller(world: FakeWorld, path: Path, counter: Counter | None,
                **settings: Any) -> Controller:
    pool = Pool("lab", "web", pool_settings(**settings), path.parent / "web.yml")
    wrap = (lambda d: Crashing(d, counter)) if counter else (lambda d: d)
    return Controller(pool=pool, provider=wrap(world.provider), lb=wrap(world.lb),
                      smoke=wrap(world.smoke), journal=Journal(path, durable=False),
                      clock=world.clock, workers=0)


def _count(size: int, prepare: Any, tmp_path: Path, **settings: Any) -> int:
    world = FakeWorld.create(size)
    prepare(world)
    counter = Counter(None, "never")
    with contextlib.suppress(RolloutFailed):
        _controller(world, tmp_path / "count.sqlite", counter, **settings).run(world.new)
    return counter.calls


def _converges(size: int, prepare: Any, tmp_path: Path, expect: str, k: int, when: str,
               **settings: Any) -> None:
    world = FakeWorld.create(size)
    prepare(world)
    path = tmp_path / f"crash-{k}-{when}.sqlite"
    with pytest.raises(Crash):
        _controller(world, path, Counter(k, when), **settings).run(world.new)
    resumed = _controller(world, path, None, **settings)
    if expect == "new":
        assert resumed.resume().status is RolloutStatus.SUCCEEDED
    elif expect == "old":
        with pytest.raises(RolloutFailed):
            resumed.resume()
    else:  # a one-off failure may or may not have happened before the crash
        with contextlib.suppress(RolloutFailed):
            resumed.resume()
    image = {"new": world.new.id, "old": world.old.id}.get(expect)
    assert world.problems(size, image) == [], f"crash {when} call {k}"
    assert resumed.journal.unfinished("lab", "web") is None


def _nothing(world: FakeWorld) -> None:
    pass


def _canary_smoke_fails(world: FakeWorld) -> None:
    world.smoke.fail(image=world.new.id)


def _drain_fails(world: FakeWorld) -> None:
    world.lb.fail("set_admin", target=world.provider.live()[0].lb_target)


def _owes_setup_and_removes_in_two_steps(world: FakeWorld) -> None:
    # An AWS pool with data volumes in an ASG, on a provider (the lab) whose
    # removals finish in a second step: every one of those is a journaled step.
    world.provider.setup = (Setup.ATTACH_VOLUME, Setup.JOIN_GROUP)
    world.provider.two_step_removal = True


def _two_step_and_smoke_fails(world: FakeWorld) -> None:
    _owes_setup_and_removes_in_two_steps(world)
    _canary_smoke_fails(world)


SCENARIOS = {
    "surge-setup-two-step-removal": (3, _owes_setup_and_removes_in_two_steps, "new",
                                     {"pool_size": 3}),
    "surge-restore-two-step-removal": (3, _two_step_and_smoke_fails, "old", {"pool_size": 3}),
    "in-place-restore-setup": (2, _two_step_and_smoke_fails, "old", {
        "pool_size": 2, "strategy": "in_place", "max_unavailable": 1, "min_healthy": 1}),
    "surge-late-restore": (3, _drain_fails, "any", {"pool_size": 3}),
    "surge": (3, _nothing, "new", {"pool_size": 3, "canary": 1, "soak": 1}),
    "surge-stopped-standby": (2, _nothing, "new", {"pool_size": 2, "standby": "stopped"}),
    "in-place": (2, _nothing, "new", {"pool_size": 2, "strategy": "in_place",
                                      "max_unavailable": 1, "min_healthy": 1}),
    "surge-restore": (3, _canary_smoke_fails, "old", {"pool_size": 3}),
    # Every boundary of a blue-green rollout, the switch included, converges to
    # all green (or all blue when a green node fails its smoke test).
    "blue-green": (2, _nothing, "new", {"pool_size": 2, "strategy": "blue_green",
                                        "scale_down_delay": 2}),
    "blue-green-restore": (2, _canary_smoke_fails, "old", {
        "pool_size": 2, "strategy": "blue_green", "scale_down_delay": 2}),
    "in-place-restore": (2, _canary_smoke_fails, "old", {
        "pool_size": 2, "strategy": "in_place", "max_unavailable": 1, "min_healthy": 1}),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_crash_at_every_step_then_resume_converges(tmp_path: Path, name: str) -> None:
    size, prepare, expect, settings = SCENARIOS[name]
    total = _count(size, prepare, tmp_path, **settings)
    assert total >= 3
    for k in range(1, total + 1):
        for when in ("before", "after"):
            _converges(size, prepare, tmp_path, expect, k, when, **settings)
