"""Blue-green switch and rollback switch times on the lab, under steady load.

    .venv/bin/python bench/bluegreen_switch.py --runs 3 [--pool 4] [--rate 1000] \\
        --bridge rbench2 --subnet 10.231.247.0/24 --port 18247 \\
        --data-dir /var/tmp/rollout-bench-bg --base-cache /var/lib/rollout/base

Brings up a lab of ``--pool`` web nodes (a throwaway project copy with its own
bridge, subnet and port) and bakes the two target images if missing. Then,
``--runs`` times, under a steady load through the frontend
(rollout.testing.loadgen, each response names the node that served it):

1. ``rollout run --strategy blue_green --scale-down-delay 10m`` to the other
   image; once ``traffic_switched`` is printed, green serves for a second;
2. ``rollout rollback --role web`` within the delay: back to the warm blue pool.

Per run it measures, from the load's timeline (wall clock, the moment each
answer came back):

- **switch**: first green answer → last blue answer (negative: no overlap,
  the cut was clean), and the run command's start → first green answer
  (mostly the launch and smoke of the green pool);
- **rollback**: the rollback command's start → first blue answer and → last
  green answer; and the controller's ``side_chosen`` → last green answer,
  the switch without the command's startup;
- **failed** requests over the run and the rollback.

Prints every run and the medians; no asserts (goal: under 1 s, 0 failed).
Tears the lab down unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _lab
import _results
import yaml

from rollout.inventory import load_environment
from rollout.paths import DataDir
from rollout.testing.lab import (
    LabHandle,
    lab_skip_reason,
    make_project,
    share_base_cache,
    who_answered,
)
from rollout.testing.loadgen import Load

REPO = Path(__file__).resolve().parents[1]
ROLE = "web"


def pool_nodes(lab: LabHandle) -> dict[str, str]:
    """Node name -> image version of the role's nodes."""
    return {n.name: n.image for n in lab.status().nodes if n.role == ROLE}


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def one_run(lab: LabHandle, target: str, rate: float, concurrency: int) -> dict[str, Any]:
    blue = set(pool_nodes(lab))
    with Load(lab.frontend, concurrency=concurrency, rate=rate, timeout=5.0,
              timeline=True) as load:
        time.sleep(1.0)
        run_started = time.time()
        run = subprocess.Popen(_lab.cli(lab, "run", "--role", ROLE, "--version", target,
                                   "--strategy", "blue_green", "--scale-down-delay", "10m",
                                   "--output", "json"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert run.stdout is not None
        seen: list[dict[str, Any]] = []
        for line in run.stdout:
            seen.append(json.loads(line))
            if seen[-1].get("event") == "traffic_switched":
                break
        else:
            raise SystemExit(f"the blue-green run ended before the switch: {seen[-3:]}")
        green = set(seen[-1]["nodes"])
        time.sleep(1.0)  # green serves for a while
        back_started = time.time()
        back = subprocess.run(_lab.cli(lab, "rollback", "--role", ROLE, "--output", "json"),
                              capture_output=True, text=True, timeout=600)
        rest, run_err = run.communicate(timeout=600)
        time.sleep(1.0)
    if back.returncode != 0 or run.returncode != 0:
        raise SystemExit(f"rollback exited {back.returncode}: {back.stderr[-500:]}; "
                         f"the run exited {run.returncode}: {run_err[-500:]}")
    seen += events(rest)
    report = load.report
    answers = [(done, who_answered(who)) for _, done, who in report.timeline]
    first_green = min(done for done, who in answers if who in green)
    last_blue = max(done for done, who in answers if who in blue and done < back_started)
    first_blue_back = min(done for done, who in answers if who in blue and done >= back_started)
    last_green = max(done for done, who in answers if who in green)
    chosen = next(e["at"] for e in seen
                  if e.get("event") == "side_chosen" and e.get("side") == "blue")
    asked = next(e["at"] for e in events(back.stdout)
                 if e.get("event") == "rollback_requested")
    return {
        "switch": round(last_blue - first_green, 3),
        "run_start_to_first_green": round(first_green - run_started, 3),
        "rollback_start_to_first_blue": round(first_blue_back - back_started, 3),
        "rollback_start_to_last_green": round(last_green - back_started, 3),
        "rollback_start_to_request_journaled": round(asked - back_started, 3),
        "rollback_side_chosen_to_last_green": round(last_green - chosen, 3),
        "failed": report.failed,
        "requests": report.requests,
        "rate": round(report.rate, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pool", type=int, default=4, help="web nodes (blue-green doubles it)")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--bridge", default="rbench2")
    parser.add_argument("--subnet", default="10.231.247.0/24")
    parser.add_argument("--port", type=int, default=18247)
    parser.add_argument("--data-dir", type=Path, default=Path("/var/tmp/rollout-bench-bg"))
    parser.add_argument("--base-cache", type=Path, default=None,
                        help="a prebuilt base cache to link in (saves the debootstrap)")
    parser.add_argument("--versions", default="7.1.0,7.2.0",
                        help="the two images the runs switch between")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    args = parser.parse_args()
    reason = lab_skip_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 5
    data = DataDir(args.data_dir)
    share_base_cache(data, args.base_cache)
    versions = args.versions.split(",")
    runs: list[dict[str, Any]] = []
    host_at_start = _results.host()
    with tempfile.TemporaryDirectory(prefix="rollout-bench-bg-") as tmp:
        project = make_project(REPO, Path(tmp) / "project", bridge=args.bridge,
                               subnet=args.subnet, port=args.port)
        web = project / "inventories/lab/group_vars/web.yml"
        settings = yaml.safe_load(web.read_text())
        settings["rollout"].update(pool_size=args.pool, soak="1s")
        web.write_text(yaml.safe_dump(settings))
        lab = LabHandle(project, load_environment(project, "lab"), data.ensure())
        try:
            lab.up(nodes=args.pool)
            for v in versions:
                _lab.ensure_image(lab, v)
            for _ in range(args.runs):
                current = set(pool_nodes(lab).values())
                target = next((v for v in versions if {v} != current), versions[0])
                runs.append(one_run(lab, target, args.rate, args.concurrency))
                print(json.dumps(runs[-1]), flush=True)
        finally:
            if not args.keep:
                lab.down()
    print(f"\nmedians of {len(runs)} run(s), pool of {args.pool}, "
          f"~{statistics.median(r['rate'] for r in runs):.0f} req/s:")
    for key in runs[0]:
        values = [r[key] for r in runs]
        total = f" (total {sum(values)})" if key in ("failed", "requests") else ""
        print(f"  {key:40} {round(statistics.median(values), 3):>9}{total}")
    medians = {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}
    failed = sum(r["failed"] for r in runs)
    goals = [{"figure": name, "value": medians[key], "unit": "s", "goal": "< 1 s",
              "met": medians[key] < 1.0, "detail": "median",
              "cause": None if medians[key] < 1.0 else "see the runs"}
             for name, key in (("blue-green switch: first green to last blue answer", "switch"),
                               ("rollback: command start to first blue answer",
                                "rollback_start_to_first_blue"),
                               ("rollback: command start to last green answer",
                                "rollback_start_to_last_green"))]
    goals.append({"figure": "failed requests", "value": failed, "goal": "0", "met": failed == 0,
                  "detail": f"of {sum(r['requests'] for r in runs)}",
                  "cause": None if failed == 0 else "see the runs"})
    path = _results.write(
        "bluegreen_switch", "bench/bluegreen_switch.py", {"goals": goals, "medians": medians},
        describe={"switch": "first green answer to last blue answer (negative: no overlap)",
                  "rollback_start_to_first_blue": "the `rollout rollback` command's start to "
                                                  "the first answer from blue",
                  "rollback_start_to_last_green": "the command's start to the last answer "
                                                  "from green",
                  "rollback_side_chosen_to_last_green": "the controller's decision to the "
                                                        "last green answer"},
        host_at_start=host_at_start,
        extra={"runs": runs, "pool": args.pool, "rate": args.rate})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
