"""Weighted canary steps and pause gates on the real lab, under steady load.

``--canary-weight 10``: during the canary's pause the canary node serves
10 % ± 3 points of the requests (counted from the response bodies, which name
the node), and every HAProxy slot has its configured weight again afterwards.
A ``rollout pause`` holds the rollout at the next step boundary, through a
SIGKILL of the controller and a ``resume``, until ``rollout continue``.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from rollout.testing.lab import LabHandle
from rollout.testing.loadgen import Load
from tests.functional.rollout_cli import (
    RATE,
    ROLE,
    Loaded,
    Running,
    assert_pool_healthy,
    cli,
    cli_json,
    members,
    next_target,
)

pytestmark = pytest.mark.functional


def _normal_weights(lab: LabHandle) -> list[tuple[str, int | None, int | None]]:
    """Slots whose weight is not the configured one (empty when all are)."""
    return [(m.slot, m.weight, m.normal_weight) for m in members(lab)
            if m.weight != m.normal_weight]


def test_canary_weight_10_serves_a_tenth_during_the_pause(healthy: LabHandle) -> None:
    lab = healthy
    target = next_target(lab)
    with Loaded(lab) as load:
        run = Running(lab, "run", "--role", ROLE, "--version", target,
                      "--canary-weight", "10", "--soak", "25s")
        started = run.wait_for(lambda e: e.get("event") == "canary_step" and e["step"] == 1)
        canary = next(e["new_node"] for e in run.events
                      if e.get("event") == "phase_changed" and e.get("index") == 0)
        window = Load(lab.frontend, concurrency=4, rate=RATE, timeout=5.0,
                      keep_bodies=True).start()
        time.sleep(max(1.0, 25.0 - 6.0 - (time.time() - started["at"])))
        counted = window.stop()
        code = run.finish()
    assert code == 0, run.stderr
    load.assert_no_failures()
    total = sum(counted.bodies.values())
    served = sum(n for body, n in counted.bodies.items() if body.startswith(f"node={canary} "))
    assert total > 500, counted.to_json()
    share = 100.0 * served / total
    assert 7.0 <= share <= 13.0, f"canary {canary} served {share:.1f} %: {counted.bodies}"
    assert _normal_weights(lab) == []
    assert_pool_healthy(lab, target)


def test_a_pause_holds_through_a_sigkill_and_resume_until_continue(
        healthy: LabHandle) -> None:
    lab = healthy
    target = next_target(lab)
    resumed: Running | None = None
    with Loaded(lab) as load:
        run = Running(lab, "run", "--role", ROLE, "--version", target,
                      "--canary-weight", "25", "--soak", "20s")
        first = run.wait_for(lambda e: e.get("event") == "canary_step")
        rollout_id = first["rollout_id"]
        try:
            asked = cli(lab, "pause", rollout_id)
            assert asked.returncode == 0, asked.stderr
            run.wait_for(lambda e: e.get("event") == "rollout_paused" and e["held"])
            os.kill(run.proc.pid, signal.SIGKILL)
            run.finish()
            status = cli_json(lab, "status", "--role", ROLE)["pools"][0]["unfinished"]
            assert status["id"] == rollout_id and status["paused"]["since"] is not None
            held = [r["phase"] for r in cli_json(lab, "show", rollout_id)["replacements"]]
            assert "pending" in held, held

            resumed = Running(lab, "resume", rollout_id)
            resumed.wait_for(lambda e: e.get("event") == "rollout_started" and e["resumed"])
            time.sleep(8)  # only the gate holds it now: nothing pending may start
            shown = cli_json(lab, "show", rollout_id)
            assert shown["status"] == "running"
            now = [r["phase"] for r in shown["replacements"]]
            assert [p for p, h in zip(now, held, strict=True) if h == "pending"] == [
                "pending"] * held.count("pending"), (held, now)
        finally:
            if run.proc.poll() is None:  # failed before the kill: do not leave it paused
                run.proc.kill()
                run.finish()
            if resumed is not None:
                assert cli(lab, "continue", rollout_id).returncode == 0
                code = resumed.finish()
        assert code == 0, resumed.stderr
    load.assert_no_failures()
    continued = [e for e in resumed.events if e.get("event") == "rollout_continued"]
    assert continued and continued[0]["waited"] >= 8
    assert _normal_weights(lab) == []
    assert_pool_healthy(lab, target)
