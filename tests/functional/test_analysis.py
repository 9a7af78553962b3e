"""Analyses on the real lab: HAProxy's exporter, the lab's Prometheus and the
``error-rate`` analysis of the shipped inventory judging the canary under load.

- An image baked with ``web_error_rate=0.2`` passes its smoke test (smoke runs
  on the node, without X-Forwarded-For), but the canary answers 500 to a fifth
  of the LB's requests: the analysis fails, the pool is restored, exit 1, and
  ``rollout show`` prints the failed measurement.
- A canary that gets no traffic is inconclusive, and the rollout fails: never a pass.
"""

from __future__ import annotations

import pytest
import requests

from rollout.testing.lab import LabHandle
from tests.functional.rollout_cli import (
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

#: 20% of the LB's requests answer 500; smoke (on the node) still passes.
ERRORING = "7.8.0-errors"


def _prometheus(lab: LabHandle) -> str:
    url = cli_json(lab, "lab", "status")["prometheus"]
    assert url, "lab up did not start Prometheus"
    return str(url)


def test_lab_prometheus_scrapes_haproxy(healthy: LabHandle) -> None:
    url = _prometheus(healthy)
    answer = requests.get(f"{url}/api/v1/query", timeout=5,
                          params={"query": 'count(haproxy_server_http_responses_total'
                                           '{proxy="web",code="5xx"})'}).json()
    assert answer["status"] == "success"
    assert float(answer["data"]["result"][0]["value"][1]) >= POOL_SIZE


def test_error_rate_analysis_catches_a_bad_canary(healthy: LabHandle) -> None:
    lab = healthy
    ensure_image(lab, ERRORING, "--extra-var", "web_error_rate=0.2")  # its smoke passes
    before = pool(lab)
    with Loaded(lab) as load:
        proc = cli(lab, "run", "--role", ROLE, "--version", ERRORING, "--analysis",
                   "error-rate", "--soak", "12s", "--output", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert load.report.requests > 0
    events = events_of(proc.stdout)
    last = events[-1]
    assert (last["event"], last["status"], last["replaced"]) == ("rollout_finished", "failed", 0)
    verdicts = [e for e in events if e["event"] == "analysis_verdict"]
    assert [v["verdict"] for v in verdicts] == ["failed"], verdicts
    assert assert_pool_healthy(lab) == before

    shown = cli(lab, "show", last["rollout_id"])
    assert shown.returncode == 0, shown.stderr
    assert "error-rate" in shown.stdout and "failed" in shown.stdout
    measured = cli_json(lab, "show", last["rollout_id"])["analysis"]
    failed = [m for m in measured if m["outcome"] == "failed"]
    assert failed and failed[-1]["result"] >= 0.05, measured


def test_a_canary_without_traffic_is_inconclusive(healthy: LabHandle) -> None:
    lab = healthy
    target = next_target(lab)
    before = pool(lab)
    proc = cli(lab, "run", "--role", ROLE, "--version", target, "--analysis", "error-rate",
               "--soak", "1s", "--output", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    events = events_of(proc.stdout)
    verdicts = [e for e in events if e["event"] == "analysis_verdict"]
    assert [v["verdict"] for v in verdicts] == ["inconclusive"], verdicts
    assert "inconclusive" in events[-1]["message"]
    assert assert_pool_healthy(lab) == before
