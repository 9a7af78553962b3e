"""Fault injection on the FAKES (rollout.testing): faults that cannot be produced
safely or cheaply for real. Every test here is labelled FAKE; the real ones are
in tests/functional/test_faults.py.

Each test asserts the outcome (retried, restored, or halted cleanly with a
clear message) and that no node is left half-swapped: every node that exists
is either in service or is the parked old node of an unfinished rollout, and
the pool never has fewer nodes in service than its size.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from rollout.config import Pool
from rollout.core.state import Phase, RolloutStatus
from rollout.engine.controller import Controller
from rollout.errors import (
    ExitCode,
    JournalError,
    RolloutFailed,
    RolloutHalted,
    TransientError,
)
from rollout.events import Event
from rollout.model import Member
from rollout.store.journal import Journal
from rollout.testing import FakeWorld, pool_settings


class Lowest:
    """The lowest number of in-service members seen after any step."""

    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.value = world.in_service()

    def __call__(self, event: Event) -> None:
        if event.kind == "step_finished":
            self.value = min(self.value, self.world.in_service())


def _controller(world: FakeWorld, journal: Path, **settings: Any) -> Controller:
    pool = Pool("lab", "web", pool_settings(**settings), journal.parent / "web.yml")
    return Controller(pool=pool, provider=world.provider, lb=world.lb, smoke=world.smoke,
                      journal=Journal(journal, durable=False), clock=world.clock,
                      on_event=Lowest(world), workers=0)


def _lowest(ctl: Controller) -> int:
    sink = ctl.on_event
    assert isinstance(sink, Lowest)
    return sink.value


def _no_half_swapped(world: FakeWorld, size: int, journal: Journal | None = None) -> None:
    """At least ``size`` nodes in service, and every node that is NOT in service
    belongs to a replacement of the unfinished rollout the journal holds (so
    ``resume``/``abort`` will finish or undo it): no node is lost between the two."""
    assert world.in_service() >= size, world.problems(size)
    serving = {m.target for m in world.lb.members() if m.in_service}
    idle = sorted(n.name for n in world.provider.live() if n.lb_target not in serving)
    if not idle:
        return
    assert journal is not None, f"nodes out of service with no rollout: {idle}"
    state = journal.unfinished("lab", "web")
    assert state is not None, f"nodes out of service, no unfinished rollout: {idle}"
    known = {r.old_name for r in state.replacements} | {r.new_name for r in state.replacements}
    assert set(idle) <= known, f"out of service and unknown to the journal: {idle}"


# --- the load balancer's socket ---------------------------------------------------


def test_fake_lb_socket_errors_for_a_while_are_ridden_out(tmp_path: Path) -> None:
    """FAKE: the LB's runtime socket refuses 5 reads in a row (HAProxy reloading);
    the controller keeps observing and the rollout completes."""
    world = FakeWorld.create(4)
    ctl = _controller(world, tmp_path / "j.sqlite", canary=0)
    original = world.lb.members
    calls = {"n": 0}

    def refusing() -> list[Member]:
        calls["n"] += 1
        if 3 < calls["n"] <= 8:  # after the plan, in the middle of the rollout
            raise TransientError("HAProxy runtime unix:///run/x.sock: cannot talk to the "
                              "socket: Connection refused")
        return original()

    world.lb.members = refusing  # type: ignore[method-assign]
    result = ctl.run(world.new)
    world.lb.members = original  # type: ignore[method-assign]
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.problems(4, world.new.id) == []
    waits = [e for e in ctl.journal.events(result.id) if e.kind == "waiting"]
    assert any("Connection refused" in e.reason for e in waits)  # type: ignore[attr-defined]


def test_fake_lb_socket_that_stays_dead_halts_naming_the_socket(tmp_path: Path) -> None:
    """FAKE: the socket stalls for good mid-rollout: after progress_deadline the
    rollout halts (exit 4) naming the socket; once it answers again, resume
    finishes, and no node was ever half-swapped."""
    world = FakeWorld.create(4)
    ctl = _controller(world, tmp_path / "j.sqlite", canary=0, progress_deadline=20)
    original = world.lb.members
    calls = {"n": 0}

    def stalling() -> list[Member]:
        calls["n"] += 1
        if calls["n"] > 8:
            raise TransientError("HAProxy runtime unix:///run/x.sock: no answer to "
                              "'show stat' within 5s")
        return original()

    world.lb.members = stalling  # type: ignore[method-assign]
    with pytest.raises(RolloutHalted) as err:
        ctl.run(world.new)
    assert err.value.exit_code is ExitCode.HALTED
    assert "unix:///run/x.sock" in str(err.value) and "cannot observe" in str(err.value)
    assert "resume" in str(err.value)
    world.lb.members = original  # type: ignore[method-assign]
    _no_half_swapped(world, 4, Journal(ctl.journal.path))
    assert ctl.resume().status is RolloutStatus.SUCCEEDED
    assert world.problems(4, world.new.id) == []


def test_fake_lb_that_dies_halts_within_timeouts_observe_not_the_deadline(
        tmp_path: Path) -> None:
    """FAKE: the LB's API stops answering mid-rollout (HAProxy SIGKILLed). With
    the default progress_deadline (30 min) the rollout halts once
    timeouts.observe has passed, naming it; resume then converges."""
    world = FakeWorld.create(4)
    ctl = _controller(world, tmp_path / "j.sqlite", canary=0, observe=15)
    original = world.lb.members
    calls = {"n": 0}
    died: list[float] = []

    def dead() -> list[Member]:
        calls["n"] += 1
        if calls["n"] > 8:
            died.append(world.clock.now())
            raise TransientError("HAProxy runtime unix:///run/x.sock: cannot talk to the "
                                 "socket: Connection refused")
        return original()

    world.lb.members = dead  # type: ignore[method-assign]
    with pytest.raises(RolloutHalted) as err:
        ctl.run(world.new)
    assert err.value.exit_code is ExitCode.HALTED
    assert "timeouts.observe 15s" in str(err.value)
    assert 15 < died[-1] - died[0] < 15 + 5  # bounded by observe, not by progress_deadline
    world.lb.members = original  # type: ignore[method-assign]
    _no_half_swapped(world, 4, Journal(ctl.journal.path))
    assert ctl.resume().status is RolloutStatus.SUCCEEDED
    assert world.problems(4, world.new.id) == []


def test_fake_lb_socket_error_on_the_drain_restores(tmp_path: Path) -> None:
    """FAKE: the command that drains the old node gets a socket error: the
    replacement is restored (old node back first), exit 1, message names it."""
    world = FakeWorld.create(4)
    first = world.provider.live()[0]
    world.lb.fail("set_admin", target=first.lb_target,
                  error="HAProxy runtime unix:///run/x.sock: Broken pipe")
    ctl = _controller(world, tmp_path / "j.sqlite", canary=1)
    with pytest.raises(RolloutFailed) as err:
        ctl.run(world.new)
    assert err.value.exit_code is ExitCode.FAILED_RESTORED
    assert "Broken pipe" in str(err.value) or "Broken pipe" in str(
        ctl.journal.history()[0].state.replacements[0].error)
    assert f"restored: {first.name}" in str(err.value)
    assert world.problems(4, world.old.id) == []
    assert _lowest(ctl) >= 4


# --- the provider -------------------------------------------------------------------


def test_fake_provider_launch_failure_restores_and_says_launch(tmp_path: Path) -> None:
    """FAKE: the provider refuses to launch (quota): restored, exit 1, pool as before."""
    world = FakeWorld.create(4)
    world.provider.fail("launch", times=None, error="InstanceLimitExceeded")
    ctl = _controller(world, tmp_path / "j.sqlite", canary=1)
    with pytest.raises(RolloutFailed) as err:
        ctl.run(world.new)
    state = ctl.journal.history()[0].state
    assert "launch" in (state.replacements[0].error or "")
    assert "InstanceLimitExceeded" in (state.replacements[0].error or "")
    assert "restored" in str(err.value)
    assert world.problems(4, world.old.id) == []
    assert _lowest(ctl) >= 4


def test_fake_node_never_ready_is_restored_after_the_ready_timeout(tmp_path: Path) -> None:
    """FAKE: the new node never gets ready: after timeouts.ready it is destroyed,
    the rollout fails (exit 1) naming the node and the timeout."""
    world = FakeWorld.create(4)
    world.provider.never_ready(image=world.new.id)
    ctl = _controller(world, tmp_path / "j.sqlite", canary=1, ready=5)
    with pytest.raises(RolloutFailed):
        ctl.run(world.new)
    error = ctl.journal.history()[0].state.replacements[0].error or ""
    assert "not ready within timeouts.ready 5s" in error
    assert world.problems(4, world.old.id) == []
    assert not [n for n in world.provider.live() if n.image_id == world.new.id]


def test_fake_retire_errors_are_retried_with_backoff(tmp_path: Path) -> None:
    """FAKE: destroying the old node fails twice (an API throttle): retried with
    backoff, then the rollout succeeds."""
    world = FakeWorld.create(2)
    world.provider.fail("destroy", times=2, error="Throttling: rate exceeded")
    ctl = _controller(world, tmp_path / "j.sqlite", pool_size=2, canary=0)
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    retries = [e for e in ctl.journal.events(result.id) if e.kind == "retry_scheduled"]
    assert len(retries) == 2
    assert all("Throttling" in e.error for e in retries)  # type: ignore[attr-defined]
    assert world.problems(2, world.new.id) == []


# --- the smoke gate ---------------------------------------------------------------------


def test_fake_smoke_flake_once_restores_then_a_rerun_converges(tmp_path: Path) -> None:
    """FAKE: the smoke suite fails once then passes: with failure_budget 0 the
    first run restores (exit 1); running again replaces every node."""
    world = FakeWorld.create(4)
    world.smoke.fail(image=world.new.id, times=1, summary="1 failed, 4 passed")
    ctl = _controller(world, tmp_path / "j.sqlite", canary=1)
    with pytest.raises(RolloutFailed):
        ctl.run(world.new)
    assert "1 failed, 4 passed" in (ctl.journal.history()[0].state.replacements[0].error or "")
    assert world.problems(4, world.old.id) == []
    assert ctl.run(world.new).status is RolloutStatus.SUCCEEDED
    assert world.problems(4, world.new.id) == []


def test_fake_smoke_flake_within_the_failure_budget_goes_on(tmp_path: Path) -> None:
    """FAKE: the same flake with failure_budget 1: that node is restored, the
    rest are replaced, and the result says which one was restored."""
    world = FakeWorld.create(4)
    world.smoke.fail(image=world.new.id, times=1)
    ctl = _controller(world, tmp_path / "j.sqlite", canary=1, failure_budget=1)
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    assert len(result.restored) == 1 and len(result.replaced) == 3
    assert "restored within failure_budget" in result.message
    _no_half_swapped(world, 4)


# --- a slow drain ---------------------------------------------------------------------------


def test_fake_slow_drain_waits_then_proceeds_and_reports_it(tmp_path: Path) -> None:
    """FAKE: the old node keeps sessions open: the drain waits timeouts.drain,
    then proceeds and reports drain_timed_out on that replacement only."""
    world = FakeWorld.create(2)
    slow = world.provider.live()[0]
    world.lb.stuck_sessions(slow.lb_target, 2)
    ctl = _controller(world, tmp_path / "j.sqlite", pool_size=2, canary=0, drain=4)
    started = world.clock.now()
    result = ctl.run(world.new)
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.clock.now() - started >= 4  # it did wait the drain timeout
    done = {e.old_node: e.drain_timed_out  # type: ignore[attr-defined]
            for e in ctl.journal.events(result.id) if e.kind == "replacement_done"}
    assert done.pop(slow.name) is True
    assert list(done.values()) == [False]
    assert world.problems(2, world.new.id) == []


# --- the disk fills: every journal write, one at a time ----------------------------------------


def _count_writes(tmp_path: Path) -> int:
    world = FakeWorld.create(2)
    ctl = _controller(world, tmp_path / "count.sqlite", pool_size=2, canary=0)
    writes = {"n": 0}

    def count(op: str) -> None:
        writes["n"] += 1

    ctl.journal.fault = count
    ctl.run(world.new)
    return writes["n"]


def test_fake_disk_full_at_every_journal_write_stops_cleanly_and_resumes(
    tmp_path: Path,
) -> None:
    """FAKE (the journal's ``fault`` hook raising ENOSPC): for EVERY write of a
    2-node rollout, the disk fills at that write. The rollout stops with a
    JournalError (exit 4) naming the journal file and saying to free space; at
    that moment no node is half-swapped and capacity never dipped; once space is
    back, ``resume`` (or a new run, if the rollout was never recorded) converges."""
    total = _count_writes(tmp_path)
    assert total > 10
    for k in range(1, total + 1):
        world = FakeWorld.create(2)
        path = tmp_path / f"j{k}.sqlite"
        ctl = _controller(world, path, pool_size=2, canary=0)
        writes = {"n": 0}

        def disk_full(op: str, k: int = k, writes: dict[str, int] = writes) -> None:
            writes["n"] += 1
            if writes["n"] == k:
                raise OSError(errno.ENOSPC, "No space left on device")

        ctl.journal.fault = disk_full
        with pytest.raises(JournalError) as err:
            ctl.run(world.new)
        assert err.value.exit_code is ExitCode.HALTED
        assert str(path) in str(err.value) and "No space left" in str(err.value)
        assert "free disk space" in str(err.value)
        assert _lowest(ctl) >= 2, f"write {k}: capacity dipped"
        again = _controller(world, path, pool_size=2, canary=0)
        _no_half_swapped(world, 2, again.journal)
        if again.journal.unfinished("lab", "web") is not None:
            result = again.resume()
        else:
            result = again.run(world.new)
        assert result.status is RolloutStatus.SUCCEEDED, f"write {k}"
        assert world.problems(2, world.new.id) == [], f"write {k}"
        assert _lowest(again) >= 2


def test_fake_disk_full_while_restoring_halts_then_abort_restores(tmp_path: Path) -> None:
    """FAKE: the smoke gate fails AND the disk fills during the restore: the
    rollout stops (exit 4); after space is freed, ``abort`` puts the old node
    back, leaving the pool as it was."""
    world = FakeWorld.create(2)
    world.smoke.fail(image=world.new.id)
    ctl = _controller(world, tmp_path / "j.sqlite", pool_size=2, canary=0)
    full = {"on": False}

    def fault(op: str) -> None:
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")

    def watch(event: Event) -> None:
        if event.kind == "phase_changed" and getattr(event, "phase", "") == "restoring":
            full["on"] = True

    ctl.journal.fault = fault
    ctl.on_event = watch
    with pytest.raises(JournalError):
        ctl.run(world.new)
    again = _controller(world, tmp_path / "j.sqlite", pool_size=2, canary=0)
    _no_half_swapped(world, 2, again.journal)
    state = again.journal.unfinished("lab", "web")
    assert state is not None
    result = again.abort()
    assert result.status is RolloutStatus.ABORTED
    assert world.problems(2, world.old.id) == []
    final = again.journal.get(result.id)
    assert [r.phase for r in final.replacements] == [Phase.RESTORED, Phase.SKIPPED]
