"""REAL: a node whose systemd-nspawn is SIGKILLed under load. Its container
init keeps running (orphaned, still answering); the rollout must treat the
node as dead and restore, and nothing of it may survive."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from rollout.backends.lab.processes import node_inits
from rollout.backends.lab.records import read_record
from rollout.testing.lab import LabHandle
from rollout.testing.loadgen import Load
from tests.functional.rollout_cli import ROLE, assert_pool_healthy, next_target, pool
from tests.functional.test_lab_faults import popen_cli, variant, wait_event

pytestmark = pytest.mark.functional


def test_real_canary_nspawn_killed_under_load_is_restored_and_leaves_nothing(
        healthy: LabHandle, tmp_path: Path) -> None:
    lab = healthy
    target = next_target(lab)
    before = {n["name"] for n in pool(lab)}
    # A long soak: the kill lands while the canary serves in standby.
    project = variant(lab, tmp_path / "project", soak="60s")
    with Load(lab.frontend, concurrency=2, rate=40.0) as load:
        proc = popen_cli(project, lab.data.root, "run", "--role", ROLE,
                         "--version", target)
        seen = wait_event(proc, lambda e: e.get("event") == "phase_changed"
                          and e.get("index") == 0 and e.get("phase") == "standby")
        canary = seen[-1]["new_node"]
        rec = read_record(lab.context, canary)
        assert rec is not None and rec.pid is not None, canary
        os.kill(rec.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, (stdout[-2000:], stderr)
    assert canary in stdout and "stopped running" in stdout, stdout[-3000:]
    # Nothing of the killed node is left: no init, no netns, no record.
    assert node_inits(lab.context, canary) == []
    assert not Path("/run/netns", canary).exists()
    assert read_record(lab.context, canary) is None
    assert {n["name"] for n in pool(lab)} == before
    assert_pool_healthy(lab)
    # Only the canary's own in-flight requests may have failed.
    assert load.report.ok > 0
