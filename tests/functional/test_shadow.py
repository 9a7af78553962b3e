"""The dark-launch gate on the REAL lab, under steady load through the LB.

The web pool gets ``rollout.shadow`` for this module only (and ``lab up``
re-renders HAProxy's config so its frontend logs requests to the gate's
socket; both are restored afterwards). An image baked with
``web_broken_paths=/catalog`` passes its smoke test (which checks /healthz),
but answers 404 on /catalog: while users request /catalog and /, the gate
replays their requests to the new node and an old one, and refuses it before
it joins the LB. HAProxy's per-server counters show that no slot served a
request beyond the old nodes, the pool is the same four nodes, exit 1, and no
user request failed; ``rollout show`` prints the mismatch. The pass case
is cheap: ``rollout replace NODE --force`` replaces one node on the image it
runs, and the gate lets the new node through.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import yaml

from rollout.testing.lab import LabHandle
from rollout.testing.loadgen import Load, LoadReport
from tests.functional.rollout_cli import (
    RATE,
    ROLE,
    assert_pool_healthy,
    cli,
    cli_json,
    ensure_image,
    events_of,
    members,
    pool,
)

pytestmark = pytest.mark.functional

#: /catalog answers 404 in this image; its smoke test passes.
BROKEN = "7.8.1-broken-catalog"


@pytest.fixture(scope="module")
def gated(lab: LabHandle) -> Iterator[LabHandle]:
    path = lab.project / "inventories" / "lab" / "group_vars" / "web.yml"
    original = path.read_text()
    data = yaml.safe_load(original)
    data["rollout"]["shadow"] = {"enabled": True, "sample": 10, "min_requests": 2,
                                 "threshold": 0.0, "latency_tolerance": "2s"}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        up = cli(lab, "lab", "up")
        assert up.returncode == 0, up.stdout + up.stderr
        yield lab
    finally:
        path.write_text(original)
        cli(lab, "lab", "up")


@contextmanager
def _users(lab: LabHandle) -> Iterator[list[LoadReport]]:
    """Steady load on /catalog and / through the LB; the reports afterwards."""
    base = lab.frontend.rstrip("/")
    loads = [Load(f"{base}/catalog", concurrency=2, rate=RATE / 2, timeout=5.0),
             Load(f"{base}/", concurrency=2, rate=RATE / 2, timeout=5.0)]
    reports: list[LoadReport] = []
    for load in loads:
        load.start()
    try:
        yield reports
    finally:
        reports += [load.stop() for load in loads]
    for report in reports:
        assert report.requests > 0 and report.failed == 0, report.to_json()


def test_a_node_on_the_same_image_passes_the_gate(gated: LabHandle) -> None:
    lab = gated
    old = assert_pool_healthy(lab)[0]["name"]
    with _users(lab):
        proc = cli(lab, "replace", old, "--role", ROLE, "--force", "--output", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdicts = [e for e in events_of(proc.stdout) if e["event"] == "analysis_verdict"]
    assert [(v["analysis"], v["verdict"]) for v in verdicts] == [("shadow", "passed")], verdicts
    assert old not in {n["name"] for n in assert_pool_healthy(lab)}


def test_the_gate_refuses_a_broken_image_before_it_serves(gated: LabHandle) -> None:
    lab = gated
    ensure_image(lab, BROKEN, "--extra-var", "web_broken_paths=/catalog")
    before = assert_pool_healthy(lab)
    idle = {m.slot: m.total_sessions for m in members(lab) if not m.target}
    with _users(lab):
        proc = cli(lab, "run", "--role", ROLE, "--version", BROKEN, "--output", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr

    events = events_of(proc.stdout)
    last = events[-1]
    assert (last["event"], last["status"], last["replaced"]) == ("rollout_finished", "failed", 0)
    verdicts = [e for e in events if e["event"] == "analysis_verdict"]
    assert [(v["analysis"], v["verdict"]) for v in verdicts] == [("shadow", "failed")], verdicts
    # The new node never had a slot: the idle slots served nothing more.
    assert {m.slot: m.total_sessions for m in members(lab) if not m.target} == idle
    assert assert_pool_healthy(lab) == before == pool(lab)

    shown = cli(lab, "show", last["rollout_id"])
    assert shown.returncode == 0, shown.stderr
    assert "GET /catalog: old 200" in shown.stdout and "new 404" in shown.stdout
    steps = cli_json(lab, "show", last["rollout_id"])["steps"]
    assert "shadow" in [s["kind"] for s in steps]
    assert "lb_add" not in [s["kind"] for s in steps]
