"""`rollout run` on the real lab, under steady HTTP load through HAProxy's frontend.

The controller issue's "Done means": a 4-node rollout with 0 failed requests,
a re-run that changes nothing, a failing image restored with the pool exactly as
it was, and the in_place strategy. The CLI
runs as a subprocess; the outcome is read from ``rollout lab status``, HAProxy's
members, ``rollout show`` (the journal) and the load generator's counters.
A concurrent run, signals and a SIGKILLed controller are in
test_rollout_signals.py.
"""

from __future__ import annotations

import subprocess

import pytest

from rollout.testing.lab import LabHandle
from tests.functional.rollout_cli import (
    BAD,
    POOL_SIZE,
    ROLE,
    Loaded,
    assert_pool_healthy,
    cli,
    cli_json,
    ensure_image,
    events_of,
    next_target,
    pool,
)

pytestmark = pytest.mark.functional


def lab_records(lab: LabHandle) -> set[str]:
    return {p.name for p in lab.context.nodes_dir.iterdir() if not p.name.startswith(".")}


def lab_netns(lab: LabHandle, known: set[str]) -> set[str]:
    """The network namespaces of this lab's nodes (recorded, or among ``known``
    names); other labs may share the host."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    names = {line.split()[0] for line in listed if line.strip()}
    return names & (lab_records(lab) | known)


def lab_leftovers(lab: LabHandle, old: set[str]) -> tuple[list[str], list[str]]:
    """(netns, records) of the nodes in ``old`` that are still there."""
    return sorted(lab_netns(lab, old) & old), sorted(lab_records(lab) & old)


def test_run_replaces_every_node_without_a_failed_request(healthy: LabHandle) -> None:
    lab = healthy
    target = next_target(lab)
    before = {n["name"] for n in pool(lab)}

    with Loaded(lab) as load:
        proc = cli(lab, "run", "--role", ROLE, "--version", target, "--output", "json")
        # A replacement is done only when its old node is fully gone: the
        # moment the command exits, the lab holds exactly the pool's network
        # namespaces and node records, none of a retired node.
        left = lab_leftovers(lab, before)
    assert proc.returncode == 0, proc.stderr
    assert left == ([], []), f"retired nodes left behind (netns, records): {left}"
    assert len(lab_netns(lab, before)) == POOL_SIZE
    load.assert_no_failures()
    # Every line is one JSON object; the last says how it ended.
    events = events_of(proc.stdout)
    assert events[0]["event"] == "rollout_started"
    last = events[-1]
    assert last["event"] == "rollout_finished"
    assert (last["status"], last["replaced"], last["restored"]) == ("succeeded", POOL_SIZE, 0)

    nodes = assert_pool_healthy(lab, target)
    assert not before & {n["name"] for n in nodes}, "every old node is gone"
    shown = cli_json(lab, "show", last["rollout_id"])
    assert shown["status"] == "succeeded"
    assert [r["phase"] for r in shown["replacements"]] == ["done"] * POOL_SIZE
    assert sorted(r["new"] for r in shown["replacements"]) == [n["name"] for n in nodes]
    assert {"boot", "smoke", "lb_rise", "drain"} <= set(shown["waits"])
    assert all(s["ok"] for s in shown["steps"]), shown["steps"]

    # Running it again changes nothing: no step, the same nodes.
    again = cli(lab, "run", "--role", ROLE, "--version", target, "--output", "json")
    assert again.returncode == 0, again.stderr
    finished = events_of(again.stdout)[-1]
    assert finished["event"] == "rollout_finished" and finished["replaced"] == 0
    assert events_of(again.stdout)[0]["already_on_target"] == POOL_SIZE
    assert cli_json(lab, "show", finished["rollout_id"])["steps"] == []
    assert assert_pool_healthy(lab, target) == nodes


def test_a_failing_image_is_restored_and_the_pool_is_unchanged(healthy: LabHandle) -> None:
    lab = healthy
    ensure_image(lab, BAD, "--extra-var", "web_healthz_status=500", "--no-smoke")
    before = pool(lab)

    with Loaded(lab) as load:
        # Its /healthz answers 500, so the node never reports ready: a shorter
        # ready timeout keeps the test quick without changing what is proven.
        proc = cli(lab, "run", "--role", ROLE, "--version", BAD, "--ready-timeout", "30s",
                   "--output", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    load.assert_no_failures()
    last = events_of(proc.stdout)[-1]
    assert (last["event"], last["status"], last["replaced"]) == ("rollout_finished", "failed", 0)

    assert assert_pool_healthy(lab) == before  # same nodes, same image, all UP
    shown = cli_json(lab, "show", last["rollout_id"])
    phases = [r["phase"] for r in shown["replacements"]]
    assert phases.count("restored") == 1 and phases.count("skipped") == POOL_SIZE - 1
    assert not any(n["image"] == BAD for n in pool(lab))


def test_in_place_strategy_replaces_every_node_without_a_failed_request(
    healthy: LabHandle,
) -> None:
    lab = healthy
    target = next_target(lab)
    with Loaded(lab) as load:
        proc = cli(lab, "run", "--role", ROLE, "--version", target, "--strategy", "in_place",
                   "--max-unavailable", "1", "--min-healthy", "3", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    load.assert_no_failures()
    events = events_of(proc.stdout)
    assert events[0]["strategy"] == "in_place"
    assert events[-1]["event"] == "rollout_finished" and events[-1]["replaced"] == POOL_SIZE
    assert_pool_healthy(lab, target)
    # In place: each old node was parked (MAINT and stopped) before its new one launched.
    parked = [e for e in events if e.get("event") == "phase_changed" and e["phase"] == "parking"]
    assert len(parked) == POOL_SIZE
