"""Blue-green and `rollout rollback` on a real 2-node lab, under steady load.

The blue-green lab (``bg_lab``, tests/functional/conftest.py: 2 web nodes, so
that the session lab of 4 nodes is not doubled) is shared with the blue-green
kill cells. Every response of the load names the node that served it
(``node=NAME``), with the wall-clock times it was sent and answered, so the
tests compare them with the controller's events.
"""

from __future__ import annotations

import os
import pwd
import time
from contextlib import closing

import pytest
import yaml

from rollout.events import RollbackRequested
from rollout.store.journal import Journal
from rollout.testing.lab import LabHandle, who_answered
from rollout.testing.loadgen import Load, LoadReport
from tests.functional.rollout_cli import (
    ROLE,
    Running,
    cli,
    cli_json,
    ensure_image,
    events_of,
    next_target,
    pool,
)

pytestmark = pytest.mark.functional

SIZE = 2
RATE = 200.0


def _load(lab: LabHandle) -> Load:
    return Load(lab.frontend, concurrency=4, rate=RATE, timeout=5.0, timeline=True)


def _names(lab: LabHandle) -> set[str]:
    return {n["name"] for n in pool(lab)}


def _healthy(lab: LabHandle, version: str | None = None) -> list[dict[str, object]]:
    nodes = pool(lab)
    assert len(nodes) == SIZE, nodes
    assert all(n["state"] == "running" and n["lb_state"] == "up" for n in nodes), nodes
    if version is not None:
        assert {n["image"] for n in nodes} == {version}, nodes
    return nodes


def _served_by(report: LoadReport, since: float, until: float = float("inf")) -> set[str]:
    return {who_answered(who) for sent, _, who in report.timeline if since <= sent < until}


def _no_failures(report: LoadReport) -> None:
    assert report.requests > 0
    assert report.failed == 0, report.to_json()


def test_blue_green_switches_every_request_to_a_full_green_pool(bg_lab: LabHandle) -> None:
    lab = bg_lab
    blue = {n["name"] for n in _healthy(lab)}
    target = next_target(lab)
    with _load(lab) as load:
        run = Running(lab, "run", "--role", ROLE, "--version", target, "--strategy",
                      "blue_green", "--scale-down-delay", "20s")
        switched = run.wait_for(lambda e: e.get("event") == "traffic_switched")
        # Blue is warm: the whole green pool runs beside it. (The delay leaves
        # room for `lab status`, which takes seconds on a busy host.)
        peak = pool(lab)
        code = run.finish()
    report = load.report
    assert code == 0, run.stderr
    _no_failures(report)
    green = set(switched["nodes"])
    assert len(green) == SIZE and not green & blue
    assert {n["name"] for n in peak} == blue | green, peak
    # After the switch every response names a green node; before it, blue only.
    assert _served_by(report, switched["at"]) <= green
    assert _served_by(report, 0, run.events[0]["at"]) <= blue
    # After scale_down_delay blue is gone.
    assert {n["name"] for n in _healthy(lab, target)} == green
    last = run.events[-1]
    assert (last["event"], last["status"], last["replaced"]) == ("rollout_finished",
                                                                  "succeeded", SIZE)


def test_rollback_within_the_delay_switches_back_to_blue_in_under_a_second(
        bg_lab: LabHandle) -> None:
    lab = bg_lab
    blue = {n["name"] for n in _healthy(lab)}
    before = {n["image"] for n in pool(lab)}
    target = next_target(lab)
    with _load(lab) as load:
        run = Running(lab, "run", "--role", ROLE, "--version", target, "--strategy",
                      "blue_green", "--scale-down-delay", "10m")
        switched = run.wait_for(lambda e: e.get("event") == "traffic_switched")
        time.sleep(1.0)  # green serves for a while
        started = time.time()
        back = cli(lab, "rollback", "--role", ROLE, "--output", "json")
        code = run.finish()
        time.sleep(1.0)
    report = load.report
    assert back.returncode == 0, back.stdout + back.stderr
    assert code == 0, run.stderr
    _no_failures(report)
    green = set(switched["nodes"])
    assert _served_by(report, switched["at"] + 0.5, started) <= green
    first_blue = min(sent for sent, _, who in report.timeline
                     if sent >= started and who_answered(who) in blue)
    last_green = max(done for _, done, who in report.timeline if who_answered(who) in green)
    asked = next(e["at"] for e in events_of(back.stdout) if e["event"] == "rollback_requested")
    chosen = next(e["at"] for e in run.events
                  if e["event"] == "side_chosen" and e["side"] == "blue")
    print(f"rollback switch: request journaled {asked - started:.3f}s, side chosen "
          f"{chosen - started:.3f}s, first blue {first_blue - started:.3f}s, last green "
          f"{last_green - started:.3f}s after the command started")
    # The command rings the live controller's doorbell (rollout.entry): no
    # CLI start, the controller journals the request on the caller's behalf
    # and switches back at once (docs/BLUE-GREEN.md). The goal, from
    # the command's start:
    assert first_blue - started < 1.0
    assert last_green - started < 1.0
    assert chosen - asked < 0.5
    # The journal holds the request, with the identity of the process that rang.
    with closing(Journal(lab.data.journal, durable=False)) as journal:
        requests = [e for e in journal.events(switched["rollout_id"])
                    if isinstance(e, RollbackRequested)]
    by = next(e["by"] for e in events_of(back.stdout) if e["event"] == "rollback_requested")
    assert [e.by for e in requests] == [by]
    user, _, pid = by.partition("@")
    assert user == pwd.getpwuid(os.geteuid()).pw_name and pid.rpartition(":")[2].isdigit()
    assert _served_by(report, last_green) <= blue
    assert {n["name"] for n in _healthy(lab)} == blue
    assert {n["image"] for n in pool(lab)} == before
    finished = events_of(back.stdout)[-1]
    assert finished["event"] == "rollout_finished" and finished["status"] == "aborted"


def test_rollback_after_a_surge_returns_to_the_previous_image(bg_lab: LabHandle) -> None:
    lab = bg_lab
    previous = {n["image"] for n in _healthy(lab)}
    target = next_target(lab)
    with _load(lab) as load:
        done = cli(lab, "run", "--role", ROLE, "--version", target)
        assert done.returncode == 0, done.stdout + done.stderr
        _healthy(lab, target)
        back = cli(lab, "rollback", "--role", ROLE, "--output", "json")
    assert back.returncode == 0, back.stdout + back.stderr
    _no_failures(load.report)
    assert {n["image"] for n in _healthy(lab)} == previous
    # With nothing to go back to the rollback refuses; here it would go forward
    # again, and history says so.
    shown = cli(lab, "history", "--role", ROLE)
    assert f"`rollout rollback --role {ROLE}` would roll out" in shown.stdout


#: 20 % of the LB's requests answer 500; its smoke test (on the node) passes.
ERRORING = "7.8.0-errors"


def test_a_post_switch_analysis_failure_rolls_back_to_the_warm_blue_pool(
        bg_lab: LabHandle) -> None:
    """An analysis gates blue-green: the shipped error-rate analysis (the lab's
    Prometheus) after the switch catches the bad green pool; one switch back
    to the warm blue pool, green removed, exit 1, the measurement shown."""
    lab = bg_lab
    ensure_image(lab, ERRORING, "--extra-var", "web_error_rate=0.2")
    blue = {n["name"] for n in _healthy(lab)}
    before = {n["image"] for n in pool(lab)}
    web = lab.project / "inventories/lab/group_vars/web.yml"
    original = web.read_text()
    settings = yaml.safe_load(original)
    settings["rollout"]["blue_green"] = {"post_switch_analysis": ["error-rate"]}
    web.write_text(yaml.safe_dump(settings))
    try:
        with _load(lab) as load:
            run = Running(lab, "run", "--role", ROLE, "--version", ERRORING, "--strategy",
                          "blue_green", "--scale-down-delay", "10m")
            code = run.finish()
            time.sleep(1.0)  # load on the restored pool
    finally:
        web.write_text(original)
    report = load.report
    # (Requests answered 500 by green during the analysis are the drill itself.)
    assert code == 1, run.stderr
    assert [e["side"] for e in run.events if e["event"] == "side_chosen"] == ["green", "blue"]
    back = next(e["at"] for e in run.events
                if e["event"] == "side_chosen" and e["side"] == "blue")
    assert _served_by(report, back + 0.5) <= blue
    assert {n["name"] for n in _healthy(lab)} == blue  # green is gone, blue serves
    assert {n["image"] for n in pool(lab)} == before
    last = run.events[-1]
    assert (last["event"], last["status"]) == ("rollout_finished", "failed"), last
    assert "post-switch analysis" in last["message"]
    verdicts = [e["verdict"] for e in run.events if e["event"] == "analysis_verdict"]
    assert verdicts == ["failed"], verdicts
    shown = cli(lab, "show", last["rollout_id"])
    assert shown.returncode == 0, shown.stderr
    assert "error-rate" in shown.stdout and "failed" in shown.stdout
    measured = cli_json(lab, "show", last["rollout_id"])["analysis"]
    failed = [m for m in measured if m["outcome"] == "failed"]
    assert failed and failed[-1]["result"] >= 0.05, measured
