"""REAL: HAProxy SIGKILLed mid-rollout, under load (issue 14).

The rollout cannot observe the pool and halts after ``timeouts.observe`` (exit
4) instead of waiting out the progress deadline; ``rollout lab up`` during the
unfinished rollout brings HAProxy back but neither removes nor adds a node;
the fresh HAProxy knows only its config's empty slots, and ``resume`` puts the
nodes the journal says serve back in it, so the pool ends whole.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from rollout.backends.lab import haproxy_process
from rollout.testing.lab import LabHandle
from rollout.testing.loadgen import Load
from tests.functional.rollout_cli import (
    ROLE,
    assert_pool_healthy,
    next_target,
    nspawn_machines,
    phase_reached,
)
from tests.functional.test_lab_faults import popen_cli, run_cli, variant, wait_event

pytestmark = pytest.mark.functional

OBSERVE = 10.0  # timeouts.observe of the test's pool, in seconds


def _node_names(lab: LabHandle) -> set[str]:
    """Every node of this lab as the host runs it (records and nspawn processes)."""
    records = {p.parent.name for p in (lab.data.lab / "nodes").glob("*/record.json")}
    return records | nspawn_machines(lab)


def test_real_haproxy_killed_mid_rollout_halts_then_lab_up_and_resume_make_it_whole(
        healthy: LabHandle, tmp_path: Path) -> None:
    lab = healthy
    target = next_target(lab)
    project = variant(lab, tmp_path / "project", soak="60s",
                      **{"timeouts.observe": f"{OBSERVE:g}s"})
    with Load(lab.frontend, concurrency=2, rate=40.0):
        proc = popen_cli(project, lab.data.root, "run", "--role", ROLE, "--version", target)
        wait_event(proc, phase_reached(0, "standby"))  # the canary soaks
        pids = haproxy_process.haproxy_pids(lab.data)
        assert pids, "no HAProxy of this lab runs"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = proc.communicate(timeout=OBSERVE + 120)
        took = time.monotonic() - killed
    assert proc.returncode == 4, stderr
    assert "timeouts.observe" in stderr and "resume" in stderr, stderr
    # Its bound, plus a few passes of a busy machine; nowhere near the 30 min deadline.
    assert took < OBSERVE + 45, f"halted {took:.0f}s after the kill"
    assert not haproxy_process.haproxy_running(lab.data)

    nodes_before = _node_names(lab)
    up = run_cli(project, lab.data.root, "lab", "up", timeout=300)
    assert up.returncode == 3, up.stdout + up.stderr  # the unfinished rollout is named
    assert "resume" in up.stderr, up.stderr
    assert haproxy_process.haproxy_running(lab.data)
    assert _node_names(lab) == nodes_before, "lab up touched the rollout's nodes"

    resumed = run_cli(project, lab.data.root, "resume", "--role", ROLE, timeout=600)
    # Finished, or the canary (missing from the fresh LB) restored: both leave
    # one image in a whole pool.
    assert resumed.returncode in (0, 1), resumed.stdout[-2000:] + resumed.stderr
    assert_pool_healthy(lab)
