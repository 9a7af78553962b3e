"""Bench `rollout run` on the real lab under steady load through HAProxy's frontend.

    sudo .venv/bin/python bench/rollout.py --bridge rbench1 --subnet 10.231.248.0/24 \\
        --port 18248 --data-dir /var/tmp/rollout-bench --runs 3 --rate 500

Brings a lab up (4 web nodes), bakes two bench versions if the data dir lacks
them, then rolls the pool between them ``--runs`` times with the CLI (a
subprocess, as an operator would), under ``--rate`` req/s. For each run and as
medians it prints:

- the wall time (the journal's started -> finished, and the CLI process's);
- the failed requests (non-2xx + socket errors) counted by rollout.testing.loadgen;
- the controller overhead: wall ÷ the sum of the irreducible waits the journal
  recorded, excluding the canary soak (boot + smoke + lb_rise + drain) and
  including it (+ soak). A wait runs from entering a phase until the
  controller observes its exit, so it includes the observation latency;
- the time to notice a state change, median of ``--samples``: a free-running
  observer does what the controller's loop does (provider.list() and
  lb.members(), then sleep the controller's poll interval) while the bench
  (a) sets a member's admin state to DRAIN through HAProxy's runtime API,
  (b) forces a member's health DOWN through it, (c) SIGKILLs an extra node's
  systemd-nspawn; the time from the change to the first observation that shows
  it. A readiness probe's own duration is printed too. Goal: ≤ 0.5 s.

Tears the lab down at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollout.app.workspace import PoolDrivers, Workspace
from rollout.backends.lab.records import read_record
from rollout.drivers.haproxy.lb import HAProxyLoadBalancer
from rollout.engine.controller import Controller
from rollout.inventory import load_environment
from rollout.model import Admin, Health, LaunchSpec, Member, Node, NodeState
from rollout.paths import DataDir
from rollout.testing.lab import LabHandle, lab_skip_reason, make_project, share_base_cache
from rollout.testing.loadgen import Load

REPO = Path(__file__).resolve().parents[1]
ROLE = "web"
VERSIONS = ("8.1.0", "8.2.0")
IRREDUCIBLE = ("boot", "smoke", "lb_rise", "drain")
#: The poll interval `rollout run` uses: the CLI does not override the default.
POLL = float(inspect.signature(Controller).parameters["poll_interval"].default)


def cli(lab: LabHandle, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "rollout", "--project", str(lab.project),
           "--data-dir", str(lab.data.root), *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def cli_json(lab: LabHandle, *args: str) -> Any:
    proc = cli(lab, *args, "--output", "json")
    if proc.returncode != 0:
        raise SystemExit(f"rollout {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return json.loads(proc.stdout)


def ensure_images(lab: LabHandle) -> None:
    known = {i["version"] for i in cli_json(lab, "images", "--role", ROLE)}
    for version in VERSIONS:
        if version not in known:
            print(f"baking {ROLE} {version} ...", flush=True)
            proc = cli(lab, "build", "--role", ROLE, "--version", version)
            if proc.returncode != 0:
                raise SystemExit(f"bake of {version} failed: {proc.stderr}")


def one_rollout(lab: LabHandle, rate: float) -> dict[str, float]:
    pool = [n for n in cli_json(lab, "lab", "status")["nodes"] if n["role"] == ROLE]
    target = next(v for v in VERSIONS if {n["image"] for n in pool} != {v})
    load = Load(lab.frontend, concurrency=4, rate=rate).start()
    started = time.monotonic()
    proc = cli(lab, "run", "--role", ROLE, "--version", target, "--output", "json")
    process_wall = time.monotonic() - started
    report = load.stop()
    if proc.returncode != 0:
        raise SystemExit(f"rollout run exited {proc.returncode}: {proc.stderr}")
    finished = json.loads(proc.stdout.splitlines()[-1])
    shown = cli_json(lab, "show", finished["rollout_id"])
    wall = shown["finished_at"] - shown["started_at"]
    waits = shown["waits"]
    base = sum(waits.get(k, 0.0) for k in IRREDUCIBLE)
    return {
        "wall": wall, "process_wall": process_wall, "failed": float(report.failed),
        "requests": float(report.requests), "rate": report.rate,
        "overhead_excl_soak": wall / base if base else float("nan"),
        "overhead_incl_soak": wall / (base + waits.get("soak", 0.0)) if base else float("nan"),
        **{f"wait_{k}": v for k, v in waits.items()},
    }


class Observer:
    """Observes like the controller's loop: list + members, then sleep POLL."""

    def __init__(self, drivers: PoolDrivers) -> None:
        self.drivers = drivers
        self._lock = threading.Lock()
        self._watch: Callable[[list[Node], list[Member]], bool] | None = None
        self._seen = threading.Event()
        self._stop = threading.Event()
        self.seen_at = 0.0
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Observer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            nodes, members = self.drivers.provider.list(), self.drivers.lb.members()
            now = time.monotonic()
            with self._lock:
                if self._watch is not None and self._watch(nodes, members):
                    self._watch, self.seen_at = None, now
                    self._seen.set()
            time.sleep(POLL)

    def time_to_notice(self, change: Callable[[], object],
                       shows: Callable[[list[Node], list[Member]], bool]) -> float:
        with self._lock:
            self._seen.clear()
            self._watch = shows
        # Start at a random phase of the observer's loop, as a real change would.
        time.sleep(POLL * (time.monotonic_ns() % 997) / 997)
        changed = time.monotonic()
        change()
        if not self._seen.wait(30.0):
            raise SystemExit("the observer never saw the change within 30 s")
        return self.seen_at - changed


def _not_running(name: str) -> Callable[[list[Node], list[Member]], bool]:
    return lambda nodes, _members: all(
        n.name != name or n.state is not NodeState.RUNNING for n in nodes)


def _slot_of(members: list[Member], address: str) -> str:
    return next(m.slot for m in members if m.target.rsplit(":", 1)[0] == address)


def notice_times(lab: LabHandle, samples: int) -> dict[str, list[float]]:
    ws = Workspace.open(lab.project, "lab", lab.data.root)
    drivers = ws.drivers(ROLE)
    lb = drivers.lb
    assert isinstance(lb, HAProxyLoadBalancer)
    runtime, backend = lb.runtime, lb.backend
    victim = drivers.provider.list()[0]
    slot = _slot_of(lb.members(), victim.address)
    results: dict[str, list[float]] = {"lb_admin": [], "lb_health": [], "node_killed": [],
                                       "readiness_probe": []}

    def member(members: list[Member]) -> Member:
        return next(m for m in members if m.slot == slot)

    with Observer(drivers) as observer:
        for _ in range(samples):
            results["lb_admin"].append(observer.time_to_notice(
                lambda: runtime.command(f"set server {backend}/{slot} state drain"),
                lambda n, m: member(m).admin is Admin.DRAIN))
            runtime.command(f"set server {backend}/{slot} state ready")
            results["lb_health"].append(observer.time_to_notice(
                lambda: runtime.command(f"set server {backend}/{slot} health down"),
                lambda n, m: member(m).health is Health.DOWN))
            runtime.command(f"set server {backend}/{slot} health up")
        image = drivers.images.by_version(ROLE, victim.image_version)
        for i in range(samples):
            node = drivers.provider.launch(LaunchSpec(f"web-bench-{i}", ROLE, "lab", image))
            try:
                deadline = time.monotonic() + 60
                while not drivers.provider.readiness(node).ready:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{node.name} never became ready")
                    time.sleep(0.2)
                probe_started = time.monotonic()
                drivers.provider.readiness(node)
                results["readiness_probe"].append(time.monotonic() - probe_started)
                rec = read_record(lab.context, node.name)
                assert rec is not None and rec.pid is not None
                pid, name = rec.pid, node.name
                results["node_killed"].append(observer.time_to_notice(
                    functools.partial(os.kill, pid, signal.SIGKILL), _not_running(name)))
            finally:
                drivers.provider.destroy(node)
                drivers.provider.finish_removal(node)
    return results


def _median_line(name: str, values: list[float], unit: str = "s") -> str:
    return (f"{name}: median {statistics.median(values):.3f}{unit} "
            f"(min {min(values):.3f}, max {max(values):.3f}, n={len(values)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bridge", default="rbench1")
    parser.add_argument("--subnet", default="10.231.248.0/24")
    parser.add_argument("--port", type=int, default=18248)
    parser.add_argument("--data-dir", type=Path, default=Path("/var/tmp/rollout-bench"))
    parser.add_argument("--base-cache", type=Path, default=None,
                        help="a prebuilt base directory to link as the data dir's base cache")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=500.0, help="load, requests/s")
    parser.add_argument("--samples", type=int, default=7, help="samples per notice time")
    parser.add_argument("--keep", action="store_true", help="leave the lab up")
    args = parser.parse_args()
    reason = lab_skip_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 5
    data = DataDir(args.data_dir)
    share_base_cache(data, args.base_cache)
    with tempfile.TemporaryDirectory(prefix="rollout-bench-") as tmp:
        project = make_project(REPO, Path(tmp) / "project", bridge=args.bridge,
                               subnet=args.subnet, port=args.port)
        lab = LabHandle(project, load_environment(project, "lab"), data.ensure())
        try:
            lab.up()
            ensure_images(lab)
            runs = []
            for i in range(args.runs):
                run = one_rollout(lab, args.rate)
                runs.append(run)
                print(f"run {i + 1}: wall {run['wall']:.2f}s (process {run['process_wall']:.2f}s),"
                      f" failed {run['failed']:.0f}/{run['requests']:.0f} requests "
                      f"at {run['rate']:.0f} req/s, overhead {run['overhead_excl_soak']:.3f} "
                      f"excl. soak / {run['overhead_incl_soak']:.3f} incl. soak; waits "
                      + ", ".join(f"{k[5:]} {v:.2f}s" for k, v in run.items()
                                  if k.startswith("wait_")), flush=True)
            notices = notice_times(lab, args.samples)
        finally:
            if not args.keep:
                lab.down()
    print(f"--- {len(runs)} rollout(s) of 4 nodes (surge, batch 1, canary soak as "
          f"configured) at {args.rate:.0f} req/s; poll interval {POLL}s")
    for key, unit in (("wall", "s"), ("process_wall", "s"), ("failed", ""),
                      ("overhead_excl_soak", ""), ("overhead_incl_soak", "")):
        print(_median_line(key, [r[key] for r in runs], unit))
    for key in sorted({k for r in runs for k in r if k.startswith("wait_")}):
        print(_median_line(key, [r.get(key, 0.0) for r in runs]))
    print(f"--- time to notice a change (observer = provider.list() + lb.members(), "
          f"then sleep {POLL}s); goal <= 0.5s")
    for key, values in notices.items():
        print(_median_line(key, values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
