"""The blue-green preview (``blue_green.preview``) on the real lab, under load
through the main frontend.

The blue-green lab (``bg_lab``) is reconfigured for this module: the pool asks
for a preview (``haproxy.preview_backend``; the lab renders its frontend on
the pool's frontend port + 3000) and a pre-switch ``http`` analysis that GETs
``$preview/version`` about once a second for a few seconds (the answer is not
JSON, so each reading is inconclusive; ``inconclusive_limit`` lets it pass).
That holds the switch while the test asks the preview frontend who answers.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import yaml

from rollout.app.workspace import Workspace
from rollout.drivers.haproxy.lb import HAProxyLoadBalancer
from rollout.inventory import load_environment
from rollout.testing.lab import LabHandle, who_answered
from rollout.testing.loadgen import Load, LoadReport
from tests.functional.rollout_cli import ROLE, Running, next_target, pool

pytestmark = pytest.mark.functional

SIZE = 2
PROBES = 15  # the pre-switch analysis' readings, 1 s apart


def _lab(lab: LabHandle) -> LabHandle:
    return LabHandle(lab.project, load_environment(lab.project, "lab"), lab.data)


@pytest.fixture(scope="module")
def preview_lab(bg_lab: LabHandle) -> Iterator[LabHandle]:
    web = bg_lab.project / "inventories/lab/group_vars/web.yml"
    original = web.read_text()
    settings = yaml.safe_load(original)
    rollout = settings["rollout"]
    rollout["haproxy"]["preview_backend"] = "web_preview"
    rollout["analyses"]["preview-probe"] = {
        "provider": "http", "url": "$preview/version", "path": "version",
        "success": "result >= 0", "interval": "1s", "count": PROBES,
        "inconclusive_limit": PROBES, "inconclusive": "fail"}
    rollout["blue_green"] = {"preview": True, "pre_switch_analysis": ["preview-probe"]}
    web.write_text(yaml.safe_dump(settings))
    handle = _lab(bg_lab)
    try:
        handle.up()  # renders the preview frontend and backend, reloads HAProxy
        yield handle
    finally:
        web.write_text(original)
        _lab(bg_lab).up()


def _preview_url(lab: LabHandle) -> str:
    hap = lab.env.pools[ROLE].settings.haproxy
    assert hap is not None
    return f"http://127.0.0.1:{hap.preview_frontend_port}/"


def _ask(url: str, count: int) -> list[str]:
    """Who answered each GET (``status:503`` and the like for an error)."""
    seen = []
    for _ in range(count):
        try:
            with urllib.request.urlopen(url, timeout=3.0) as resp:
                seen.append(who_answered(resp.read().decode(errors="replace")))
        except urllib.error.HTTPError as exc:
            seen.append(f"status:{exc.code}")
        except OSError as exc:
            seen.append(f"error:{exc}")
        time.sleep(0.05)
    return seen


def _until(lab: LabHandle, url: str, want: set[str], timeout: float = 10.0) -> list[str]:
    """Ask until an answer names one of ``want``; then ten answers more."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        seen += _ask(url, 1)
        if set(seen[-1:]) & want:
            return _ask(url, 10)
        time.sleep(0.1)
    raise AssertionError(f"{url}: no answer from {sorted(want)} within {timeout}s (answers "
                         f"{sorted(set(seen))}; preview {_preview_state(lab)})")


def _preview_state(lab: LabHandle) -> list[tuple[str, str, str, str]]:
    lb = Workspace.open(lab.project, "lab", lab.data.root).drivers(ROLE).lb
    assert isinstance(lb, HAProxyLoadBalancer)
    return [(m.slot, m.target, m.admin.value, m.health.value) for m in lb.preview_members()
            if m.target]




def _served_by(report: LoadReport, since: float, until: float = float("inf")) -> set[str]:
    return {who_answered(who) for sent, _, who in report.timeline if since <= sent < until}


def test_the_preview_serves_green_before_the_switch_and_warm_blue_after(
        preview_lab: LabHandle) -> None:
    lab = preview_lab
    url = _preview_url(lab)
    nodes = pool(lab)
    assert len(nodes) == SIZE and all(n["lb_state"] == "up" for n in nodes), nodes
    blue = {n["name"] for n in nodes}
    assert set(_ask(url, 3)) == {"status:503"}  # nothing idle: no server
    target = next_target(lab)
    with Load(lab.frontend, concurrency=4, rate=200.0, timeout=5.0, timeline=True) as load:
        run = Running(lab, "run", "--role", ROLE, "--version", target, "--strategy",
                      "blue_green", "--scale-down-delay", "15s")
        # (The measurements are printed with the verdict: wait for its start.)
        run.wait_for(lambda e: (e.get("event") == "step_started" and e.get("step") == "analysis")
                     or "pre-switch analysis" in str(e.get("reason", "")))
        green = {e["new_node"] for e in run.events if e["event"] == "phase_changed"}
        assert len(green) == SIZE, green
        before = _until(lab, url, green)
        asked = time.time()
        switched = run.wait_for(lambda e: e.get("event") == "traffic_switched")
        after = _until(lab, url, blue)
        code = run.finish()
        time.sleep(1.0)  # load on the green pool alone
    report = load.report
    assert code == 0, run.stderr
    assert report.requests > 0 and report.failed == 0, report.to_json()
    # Before the switch: the preview answers green only; every main response is
    # blue (green in the preview was never counted as serving).
    # (side_chosen green is journaled just before the switch action.)
    chosen = next(e["at"] for e in run.events
                  if e["event"] == "side_chosen" and e["side"] == "green")
    assert asked < chosen, "the analysis ended before the preview was asked"
    assert set(before) <= green, before
    assert _served_by(report, 0, chosen) <= blue
    # The analysis read the preview (an answer that is not JSON). Its first
    # reading may find the preview's slots still passing their first checks
    # (503): the analysis starts once green is UP in the pool's backend, and
    # the preview checks on its own schedule. After the first answer, no 503.
    details = [e.get("detail", "") for e in run.events if e["event"] == "analysis_measured"]
    answered = next(i for i, d in enumerate(details) if "503" not in d)
    assert len(details) == PROBES and answered <= 2, details
    assert not any("503" in d for d in details[answered:]), details
    # After the switch: main answers green, the preview the warm blue pool.
    assert set(switched["nodes"]) == green
    assert set(after) <= blue, after
    assert _served_by(report, switched["at"] + 0.5) <= green
    # After scale_down_delay blue is gone, and the preview has no server.
    assert {n["name"] for n in pool(lab)} == green
    assert _preview_state(lab) == []
    assert set(_ask(url, 3)) == {"status:503"}
