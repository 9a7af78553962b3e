"""REAL: the negative control of every "0 failed requests" claim. The same
load counters (rollout.testing.loadgen), run while a node is killed without
a drain, must record failures; with HAProxy's retries and redispatch on (the
lab's default) some of them are hidden from the client, and the test prints
both figures so readers see how much the LB hides."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from rollout.backends.lab.processes import node_inits
from rollout.backends.lab.records import read_record
from rollout.testing.lab import LabHandle
from rollout.testing.loadgen import Load, LoadReport
from tests.functional.rollout_cli import assert_pool_healthy, members, pool
from tests.functional.test_lab_faults import run_cli, variant

pytestmark = pytest.mark.functional


def _all_up(lab: LabHandle, size: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        up = [m for m in members(lab) if m.in_service]
        if len(up) == size:
            return
        time.sleep(0.2)
    raise AssertionError(f"the pool is not back to {size} UP members: {members(lab)}")


def _kill_under_load(lab: LabHandle, project: Path) -> LoadReport:
    """``lab up`` with ``project`` (HAProxy reloads with its settings), then
    SIGKILL one node's whole container under load, no drain; the load runs on
    until HAProxy has marked it DOWN (polled, not slept). ``lab up`` then brings the pool back
    (it boots the dead node's record again, or replaces it)."""
    up = run_cli(project, lab.data.root, "lab", "up")
    assert up.returncode == 0, up.stderr
    size = len(pool(lab))
    _all_up(lab, size)
    victim, address = pool(lab)[0]["name"], pool(lab)[0]["address"]
    record = read_record(lab.context, victim)
    assert record is not None and record.pid is not None, victim
    with Load(lab.frontend, concurrency=4, rate=200.0) as load:
        time.sleep(1.0)
        for pid in node_inits(lab.context, victim):
            os.kill(pid, signal.SIGKILL)  # the container's init: every process of it
        os.kill(record.pid, signal.SIGKILL)
        deadline = time.monotonic() + 15.0
        # The load runs on until HAProxy has marked the dead node DOWN.
        while any(m.target == address and m.in_service for m in members(lab)):
            assert time.monotonic() < deadline, f"{victim} was never marked DOWN"
            time.sleep(0.1)
    again = run_cli(project, lab.data.root, "lab", "up")
    assert again.returncode == 0, again.stderr
    _all_up(lab, size, timeout=120.0)
    assert node_inits(lab.context, victim) == [] or victim in {n["name"] for n in pool(lab)}
    return load.report


def test_the_counters_record_the_failures_of_a_node_killed_without_drain(
        healthy: LabHandle, tmp_path: Path) -> None:
    lab = healthy
    hiding = _kill_under_load(lab, variant(lab, tmp_path / "default"))
    bare = _kill_under_load(lab, variant(lab, tmp_path / "bare", **{
        "haproxy.retries": 0, "haproxy.redispatch": False}))
    print("negative control:", json.dumps({"retries 3, redispatch": hiding.to_json(),
                                            "retries 0, no redispatch": bare.to_json()}))
    # The counters can count: with nothing hiding them, the kill shows.
    assert bare.failed > 0, bare.to_json()
    assert bare.ok > 0 and hiding.ok > 0
    # Back to the session's settings (HAProxy reloaded with retries 3).
    up = run_cli(lab.project, lab.data.root, "lab", "up")
    assert up.returncode == 0, up.stderr
    assert_pool_healthy(lab)
