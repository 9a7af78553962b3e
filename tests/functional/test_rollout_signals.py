"""`rollout run` interrupted on the real lab, under steady HTTP load.

- A second run while one holds the pool's lock exits 3, naming the holder.
- SIGTERM (then SIGINT, on the resume) during a run: the in-flight node is
  restored, the lock released, exit 130; a new run exits 3 naming resume and
  abort; ``rollout resume`` finishes the rollout.
- The controller SIGKILLed mid-rollout: ``rollout resume`` converges with no
  orphan node and every HAProxy slot UP or empty.

All with 0 failed requests through the frontend.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from rollout.testing.lab import LabHandle
from tests.functional.rollout_cli import (
    POOL_SIZE,
    ROLE,
    Loaded,
    Running,
    assert_pool_healthy,
    cli,
    cli_json,
    events_of,
    lock_holder,
    next_target,
    phase_reached,
    pool,
)

pytestmark = pytest.mark.functional


def _interrupt(run: Running, sig: signal.Signals, index: int, phase: str) -> str:
    """Signal the run once replacement ``index`` reaches ``phase``; it must exit 130
    with the rollout recorded interrupted. The in-flight new node's name."""
    event = run.wait_for(phase_reached(index, phase))
    run.proc.send_signal(sig)
    code = run.finish()
    assert code == 130, (code, run.stderr)
    finished = run.events[-1]
    assert (finished["event"], finished["status"]) == ("rollout_finished", "interrupted")
    return str(event["new_node"])


def _assert_safe(lab: LabHandle, new_node: str) -> None:
    """The pool serves on 4 UP nodes (a mix of images is fine: the rollout is
    half done), the interrupted node's new machine is gone, the lock is free."""
    nodes = pool(lab)
    assert len(nodes) == POOL_SIZE and all(n["lb_state"] == "up" for n in nodes), nodes
    assert new_node not in {n["name"] for n in nodes}
    assert lock_holder(lab) is None


def test_signals_leave_the_pool_safe_and_resume_finishes(healthy: LabHandle,
                                                         tmp_path: Path) -> None:
    lab = healthy
    target = next_target(lab)
    with Loaded(lab) as load:
        run = Running(lab, "run", "--role", ROLE, "--version", target)
        try:
            started = run.wait_for(lambda e: e.get("event") == "rollout_started")
            rid = started["rollout_id"]
            # A second controller is refused while this one holds the lock.
            second = cli(lab, "run", "--role", ROLE, "--version", target)
            assert second.returncode == 3, second.stdout + second.stderr
            assert "locked" in second.stderr and f"pid {run.proc.pid}" in second.stderr
            # SIGTERM while replacement 1's new node is being smoke-tested.
            in_flight = _interrupt(run, signal.SIGTERM, 1, "smoking")
        finally:
            if run.proc.poll() is None:
                run.proc.kill()
                run.finish()
        _assert_safe(lab, in_flight)

        # The unfinished rollout blocks a new run, which says what to do.
        # It never started, so it reports nothing: not the unfinished rollout's
        # results as its own, nor a second count of them in the metrics.
        metrics, junit = tmp_path / "rollout.prom", tmp_path / "smoke.xml"
        blocked = cli(lab, "run", "--role", ROLE, "--version", target,
                      "--metrics-file", str(metrics), "--junit", str(junit))
        assert blocked.returncode == 3, blocked.stdout + blocked.stderr
        assert "rollout resume" in blocked.stderr and "rollout abort" in blocked.stderr
        assert rid in blocked.stderr
        assert not metrics.exists() and not junit.exists()

        # SIGINT during the resume, while replacement 2 boots; then resume again.
        resumed = Running(lab, "resume", "--role", ROLE)
        try:
            in_flight = _interrupt(resumed, signal.SIGINT, 2, "booting")
        finally:
            if resumed.proc.poll() is None:
                resumed.proc.kill()
                resumed.finish()
        assert resumed.events[0]["rollout_id"] == rid and resumed.events[0]["resumed"]
        _assert_safe(lab, in_flight)

        done = cli(lab, "resume", "--role", ROLE, "--output", "json")
    assert done.returncode == 0, done.stderr
    load.assert_no_failures()
    last = events_of(done.stdout)[-1]
    assert (last["event"], last["status"]) == ("rollout_finished", "succeeded")
    assert_pool_healthy(lab, target)
    shown = cli_json(lab, "show", rid)
    assert shown["status"] == "succeeded"
    assert [r["phase"] for r in shown["replacements"]] == ["done"] * POOL_SIZE


def test_resume_converges_after_the_controller_is_killed(healthy: LabHandle) -> None:
    lab = healthy
    target = next_target(lab)
    with Loaded(lab) as load:
        run = Running(lab, "run", "--role", ROLE, "--version", target)
        try:
            # Killed while the 2nd old node drains: both it and its new node exist.
            run.wait_for(phase_reached(1, "draining"))
            os.kill(run.proc.pid, signal.SIGKILL)
        finally:
            code = run.finish()
        assert code == -signal.SIGKILL
        rid = run.events[0]["rollout_id"]

        done = cli(lab, "resume", "--role", ROLE, "--output", "json")
    assert done.returncode == 0, done.stderr
    load.assert_no_failures()
    events = events_of(done.stdout)
    assert events[0]["rollout_id"] == rid and events[0]["resumed"]
    assert (events[-1]["event"], events[-1]["status"]) == ("rollout_finished", "succeeded")
    # 4 nodes on the target, no orphan nspawn machine, every slot UP or empty.
    assert_pool_healthy(lab, target)
    assert lock_holder(lab) is None
    assert cli_json(lab, "status", "--role", ROLE)["pools"][0]["unfinished"] is None
