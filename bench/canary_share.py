"""The weighted canary's share of the traffic on the lab, under steady load.

    .venv/bin/python bench/canary_share.py --runs 3 --weights 10,25 \\
        --bridge rbench3 --subnet 10.231.246.0/24 --port 18246 \\
        --data-dir /var/tmp/rollout-bench-canary --base-cache /var/lib/rollout/base

Brings up a 4-node ``web`` lab (a throwaway project copy on its own bridge,
subnet and port) and bakes two images if missing. Then, for each weight and
``--runs`` times, ``rollout run --canary-weight W --soak S`` to the other image
under a steady load through the frontend (rollout.testing.loadgen, each answer
names the node that served it): once the canary's weight step is journaled, a
window opens and lasts until shortly before the soak ends. The share is the
canary node's part of the requests HAProxy sent to the backend in that window,
from the difference of each server's session counter (``stot``) at its two
ends: what the weights decide, whatever client sent the requests.

A second load stream counts who answered it through the window too (each answer
names its node): one client's view, printed beside it. The two streams share
one round-robin sequence, so one stream's count is a sample of the LB's split,
not the split itself; the counters are.

After every run it checks that each HAProxy slot has its configured weight
again, and counts failed requests over the whole run. Writes
``bench/results/canary_share.json``; prints every run and the medians. Goal:
the canary serves W ± 3 points, 0 failed requests, weights restored.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _lab
import _results

from rollout.app.workspace import Workspace
from rollout.testing.lab import LabHandle
from rollout.testing.loadgen import Load

ROLE = "web"
#: Seconds of the soak left uncounted at its end (the run may already be
#: setting the weight back).
MARGIN = 4.0


def off_weight(lab: LabHandle) -> list[str]:
    """Slots whose weight is not their configured one (empty when all are)."""
    members = Workspace.open(lab.project, "lab", lab.data.root).drivers(ROLE).lb.members()
    return [f"{m.slot}={m.weight} (configured {m.normal_weight})" for m in members
            if m.weight != m.normal_weight]


def weights_now(lab: LabHandle, canary: str) -> dict[str, Any]:
    """What HAProxy says now: each in-service member's weight, and the share
    those weights give the canary (what the window should count)."""
    drivers = Workspace.open(lab.project, "lab", lab.data.root).drivers(ROLE)
    names = {n.lb_target: n.name for n in drivers.provider.list()}
    serving = {names.get(m.target, m.slot): m.weight or 0 for m in drivers.lb.members()
               if m.in_service}
    total = sum(serving.values())
    mine = serving.get(canary, 0)
    return {"serving": serving, "expected_share": round(100.0 * mine / total, 2) if total else None}


def sessions_now(lab: LabHandle) -> dict[str, int]:
    """Each backend member's cumulative session count (HAProxy's ``stot``), by
    node name: in HTTP mode every request to a server counts one."""
    drivers = Workspace.open(lab.project, "lab", lab.data.root).drivers(ROLE)
    names = {n.lb_target: n.name for n in drivers.provider.list()}
    return {names.get(m.target, m.slot): m.total_sessions for m in drivers.lb.members()
            if m.target}


def one_run(lab: LabHandle, target: str, weight: int, soak: float,
            rate: float) -> dict[str, Any]:
    with Load(lab.frontend, concurrency=4, rate=rate, timeout=5.0) as load:
        time.sleep(1.0)
        run = subprocess.Popen(_lab.cli(lab, "run", "--role", ROLE, "--version", target,
                                   "--canary-weight", str(weight), "--soak", f"{soak:g}s",
                                   "--output", "json"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert run.stdout is not None
        canary, stepped = None, None
        for line in run.stdout:
            event = json.loads(line)
            if event.get("event") == "phase_changed" and event.get("index") == 0:
                canary = canary or event.get("new_node")
            if event.get("event") == "canary_step" and event.get("step") == 1:
                stepped = event["at"]
                break
        if canary is None or stepped is None:
            run.kill()
            raise SystemExit(f"the run ended before its weight step: {run.communicate()[1]}")
        window = Load(lab.frontend, concurrency=4, rate=rate, timeout=5.0,
                      keep_bodies=True).start()
        before = sessions_now(lab)
        until = time.time() + max(1.0, soak - MARGIN - (time.time() - stepped))
        seen = []  # HAProxy's weights, sampled through the window
        while time.time() < until:
            seen.append(weights_now(lab, canary))
            time.sleep(min(3.0, max(0.0, until - time.time())))
        after = sessions_now(lab)
        counted = window.stop()
        counted_seconds = round(counted.duration, 1)
        _, err = run.communicate(timeout=900)
        time.sleep(1.0)
    if run.returncode != 0:
        raise SystemExit(f"the run exited {run.returncode}: {err[-800:]}")
    total = sum(counted.bodies.values())
    served = sum(n for body, n in counted.bodies.items() if body.startswith(f"node={canary} "))
    per_node = {name: after[name] - before.get(name, 0) for name in after}
    lb_total = sum(per_node.values())
    report = load.report
    return {"weight": weight,
            "share": round(100.0 * per_node.get(canary, 0) / lb_total, 2) if lb_total else None,
            "lb_requests": per_node,
            "client_share": round(100.0 * served / total, 2) if total else None,
            "canary_answers": served, "answers": total, "window_s": counted_seconds,
            "failed": report.failed + counted.failed, "requests": report.requests,
            "off_weight_after": off_weight(lab),
            "expected_shares": sorted({w["expected_share"] for w in seen
                                       if w["expected_share"] is not None}),
            "serving_seen": [w["serving"] for w in seen]}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    _lab.add_lab_args(parser, bridge="rbench3", subnet="10.231.246.0/24", port=18246,
                      data_dir="/var/tmp/rollout-bench-canary")
    parser.add_argument("--runs", type=int, default=3, help="runs per weight")
    parser.add_argument("--weights", default="10,25", help="canary weights, percent")
    parser.add_argument("--soak", type=float, default=25.0, help="the weight step's pause, s")
    parser.add_argument("--rate", type=float, default=200.0, help="each load stream's req/s")
    parser.add_argument("--versions", default="9.1.0,9.2.0",
                        help="the two images the runs go between (baked if missing)")
    parser.add_argument("--out", type=Path, default=_lab.REPO / "bench" / "results")
    args = parser.parse_args()
    if _lab.cannot_run():
        return _lab.CANNOT_RUN
    host_at_start = _results.host()
    weights = [int(w) for w in args.weights.split(",")]
    versions = args.versions.split(",")
    runs: list[dict[str, Any]] = []
    with _lab.bench_lab(args, tune=lambda web: web.update(pool_size=4)) as lab:
        lab.up(nodes=4)
        for v in versions:
            _lab.ensure_image(lab, v)
        for weight in weights:
            for _ in range(args.runs):
                current = {n.image for n in lab.status().nodes if n.role == ROLE}
                target = next(v for v in versions if {v} != current)
                runs.append(one_run(lab, target, weight, args.soak, args.rate))
                print(json.dumps(runs[-1]), flush=True)
    per_weight: dict[str, Any] = {}
    goals = []
    for weight in weights:
        mine = [r for r in runs if r["weight"] == weight]
        shares = [r["share"] for r in mine if r["share"] is not None]
        median = statistics.median(shares) if shares else None
        within = bool(shares) and all(abs(s - weight) <= 3.0 for s in shares)
        per_weight[str(weight)] = {"shares": shares, "median": median,
                                   "client_shares": [r.get("client_share") for r in mine],
                                   "failed": sum(r["failed"] for r in mine),
                                   "requests": sum(r["requests"] for r in mine),
                                   "weights_restored": all(not r["off_weight_after"]
                                                           for r in mine)}
        goals.append({"figure": f"canary share at weight {weight}", "value": median,
                      "unit": "%", "goal": f"{weight} ± 3 points in every run", "met": within,
                      "detail": f"runs {', '.join(f'{s:g}' for s in shares)}; median",
                      "cause": None if within else "a run's share fell outside the band"})
        print(f"weight {weight}: shares {shares}, median {median}, failed "
              f"{per_weight[str(weight)]['failed']} of {per_weight[str(weight)]['requests']}, "
              f"weights restored: {per_weight[str(weight)]['weights_restored']}")
    failed = sum(r["failed"] for r in runs)
    goals.append({"figure": "failed requests", "value": failed, "goal": "0", "met": failed == 0,
                  "detail": f"of {sum(r['requests'] for r in runs)}",
                  "cause": None if failed == 0 else "see the runs"})
    path = _results.write(
        "canary_share", "bench/canary_share.py",
        {"goals": goals, "weights": per_weight},
        describe={"share": "the canary node's share (%) of the requests HAProxy sent to the "
                           "backend from the weight step until shortly before the soak ends, "
                           "from each server's session counter (stot) at both ends",
                  "client_share": "the same window as one of the two load streams saw it, "
                                  "from the response bodies that name the node",
                  "weights_restored": "after the run every HAProxy slot has its configured "
                                      "weight"},
        host_at_start=host_at_start, out=args.out,
        extra={"runs": runs, "soak": args.soak, "rate": args.rate, "pool": 4})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
