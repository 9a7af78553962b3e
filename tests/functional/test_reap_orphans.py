"""REAL: ``rollout reap`` finds and removes this lab's nodes that have no
record any more but left something running: a container init whose nspawn
was SIGKILLed and whose record went, and a network namespace (with its veth)
that no record names. It reports each one; a dry run removes nothing."""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from rollout.backends.lab import network
from rollout.backends.lab.images import LabImageStore
from rollout.backends.lab.orphans import remove_orphan
from rollout.backends.lab.processes import node_inits
from rollout.backends.lab.provider import LabProvider
from rollout.backends.lab.records import read_record
from rollout.model import LaunchSpec
from rollout.testing.lab import LabHandle
from tests.functional.rollout_cli import ROLE, cli, events_of, pool

pytestmark = pytest.mark.functional

RUNNING = "web-orphan-init"  # its init runs on, re-parented, without a record
EMPTY = "web-orphan-netns"  # only its netns and veth are left


def _left(lab: LabHandle, name: str) -> list[str]:
    """What of node ``name`` is still on the host."""
    host, _ = network.veth_names(lab.context.settings.bridge, name)
    found = [f"pid {p}" for p in node_inits(lab.context, name)]
    if Path("/run/netns", name).exists():
        found.append("netns")
    if Path("/sys/class/net", host).exists():
        found.append("veth")
    return found


def _make_orphans(lab: LabHandle) -> None:
    images = LabImageStore(lab.data)
    provider = LabProvider(lab.context, lab.env.pool(ROLE), images)
    image = images.get(pool(lab)[0]["image_id"])
    node = provider.launch(LaunchSpec(name=RUNNING, role=ROLE, env=lab.env.name, image=image))
    deadline = time.monotonic() + 60
    while not provider.readiness(node).ready:  # booted: its init is systemd
        assert time.monotonic() < deadline, f"{RUNNING} never became ready"
        time.sleep(0.5)
    rec = read_record(lab.context, node.name)
    assert rec is not None and rec.pid is not None
    os.kill(rec.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{rec.pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    shutil.rmtree(lab.context.node_dir(RUNNING))  # the record is gone, the init is not
    subnet = ipaddress.ip_network(lab.context.settings.subnet)
    network.ensure_node_link(lab.context.settings, EMPTY, str(subnet[-3]))


def test_real_reap_removes_record_less_orphans_and_reports_each(healthy: LabHandle) -> None:
    lab = healthy
    _make_orphans(lab)
    try:
        assert _left(lab, RUNNING)[0].startswith("pid"), _left(lab, RUNNING)
        assert _left(lab, EMPTY) == ["netns", "veth"]

        dry = cli(lab, "reap", "--role", ROLE, "--dry-run", "--output", "json")
        assert dry.returncode == 0, dry.stderr
        would = {e["node"] for e in events_of(dry.stdout)
                 if e.get("event") == "node_reaped" and e["what"] == "orphan"}
        assert would == {RUNNING, EMPTY}, dry.stdout
        assert _left(lab, RUNNING) and _left(lab, EMPTY), "a dry run removed something"

        proc = cli(lab, "reap", "--role", ROLE, "--output", "json")
        assert proc.returncode == 0, proc.stderr
        events = events_of(proc.stdout)
        reaped = {e["node"]: e["reason"] for e in events
                  if e.get("event") == "node_reaped" and e["what"] == "orphan"}
        assert set(reaped) == {RUNNING, EMPTY}, proc.stdout
        assert "container init" in reaped[RUNNING] and "netns" not in reaped[RUNNING]
        assert "network namespace" in reaped[EMPTY]
        report = events[-1]
        assert report["event"] == "reap_report"
        assert {RUNNING, EMPTY} <= set(report["destroyed"]), report
        assert _left(lab, RUNNING) == [] and _left(lab, EMPTY) == []

        again = cli(lab, "reap", "--role", ROLE)
        assert again.returncode == 0 and "nothing to reap" in again.stdout, again.stdout
    finally:
        for name in (RUNNING, EMPTY):  # whatever the test left, for the leak check
            if _left(lab, name):
                remove_orphan(lab.context, name)
