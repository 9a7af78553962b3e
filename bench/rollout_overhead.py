"""Bench `rollout run` on the real lab under steady load through HAProxy's frontend.

    .venv/bin/python bench/rollout_overhead.py --bridge rbench1 --subnet 10.231.248.0/24 \\
        --port 18248 --data-dir /var/tmp/rollout-bench --runs 3 --rate 500

Brings a lab up (4 web nodes), bakes two bench versions if the data dir lacks
them, then rolls the pool between them ``--runs`` times with the CLI (a
subprocess, as an operator would), under ``--rate`` req/s. For each run and as
medians it prints:

- the wall time (the journal's started -> finished, and the CLI process's);
- the failed requests (non-2xx + socket errors) counted by rollout.testing.loadgen;
- the controller overhead against the physical limit: wall ÷ the rollout's
  critical path (rollout.core.critical_path), computed from component times
  measured WITHOUT the controller, on the same lab, before the first run and
  after every run (``--component-samples`` each); a run's limit uses the mean
  of the medians measured just before and just after it:
  boot = a probe launches its own node and probes readiness back to back, from
  the launch call to the start of the first probe that says ready;
  smoke = the pool's smoke suite run alone against that ready node;
  lb_rise = the pool's haproxy rise x check_interval (configured);
  drain = a pool member set to DRAIN through the runtime API under the bench
  load, until HAProxy's scur for it reads 0;
  soak = the configured canary soak;
- wall ÷ observed phase time (the figure formerly called the overhead ratio):
  wall ÷ the sum of the waits the journal recorded (boot + smoke + lb_rise +
  drain, and + soak). A wait runs from entering a phase until the controller
  observes its exit, so it contains the controller's own calls and detection
  delay, which keeps this ratio near 1 whatever the controller costs;
- the time to notice a state change, median of ``--samples``: a free-running
  observer does what the controller's loop does (provider.list() and
  lb.members(), then sleep the controller's poll interval) while the bench
  (a) sets a member's admin state to DRAIN through HAProxy's runtime API,
  (b) forces a member's health DOWN through it, (c) SIGKILLs an extra node's
  systemd-nspawn; the time from the change to the first observation that shows
  it. A readiness probe's own duration is printed too. Goal: ≤ 0.5 s.

Writes everything to ``--out``/rollout_overhead.json (commit, date, host
load). Tears the lab down at the end unless ``--keep``.
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
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import _lab
import _results

from rollout.app.workspace import PoolDrivers, Workspace
from rollout.backends.lab.records import read_record
from rollout.config import PoolSettings
from rollout.core.critical_path import Components, pool_limit
from rollout.drivers.haproxy.lb import HAProxyLoadBalancer
from rollout.engine.controller import Controller
from rollout.model import Admin, Health, LaunchSpec, Member, Node, NodeState
from rollout.testing.lab import LabHandle
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
        "replaced": float(len(shown["replacements"])),
        "wall_over_phases_excl_soak": wall / base if base else float("nan"),
        "wall_over_phases": wall / (base + waits.get("soak", 0.0)) if base else float("nan"),
        **{f"wait_{k}": v for k, v in waits.items()},
    }


def bracketed(before: dict[str, list[float]], after: dict[str, list[float]],
              settings: PoolSettings) -> Components:
    """A run's components: the mean of the medians measured just before and just
    after it (the shared host's speed drifts; one side alone would be biased)."""
    def mid(key: str) -> float:
        return (statistics.median(before[key]) + statistics.median(after[key])) / 2

    assert settings.haproxy is not None
    return Components(boot=mid("boot"), smoke=mid("smoke"),
                      lb_rise=settings.haproxy.rise * settings.haproxy.check_interval,
                      drain=mid("drain"))


def _wait_ready(drivers: PoolDrivers, node: Node, timeout: float = 90.0) -> float:
    """Probe back to back until ready; the start of the probe that said so."""
    deadline = time.monotonic() + timeout
    while True:
        probe_started = time.monotonic()
        if drivers.provider.readiness(node).ready:
            return probe_started
        if probe_started > deadline:
            raise SystemExit(f"{node.name} never became ready within {timeout:.0f}s")


# The component probes' load runs in a child process, as it does beside the
# rollouts (whose controller is the `rollout run` process): in this process
# its threads would hold the GIL against the probe's own readiness and smoke
# calls and stretch them.
LOAD_CHILD = """
import sys
from rollout.testing.loadgen import Load
load = Load(sys.argv[1], concurrency=4, rate=float(sys.argv[2])).start()
sys.stdin.read()  # until the bench closes our stdin
report = load.stop()
print(report.failed, report.requests)
"""


def measure_components(lab: LabHandle, samples: int, rate: float) -> dict[str, list[float]]:
    """Each component's own time, without the controller, under the bench load
    (sent by a child process)."""
    ws = Workspace.open(lab.project, "lab", lab.data.root)
    drivers = ws.drivers(ROLE)
    lb = drivers.lb
    assert isinstance(lb, HAProxyLoadBalancer)
    runtime, backend = lb.runtime, lb.backend
    pool = drivers.provider.list()
    image = drivers.images.by_version(ROLE, pool[0].image_version)
    out: dict[str, list[float]] = {"boot": [], "launch_call": [], "smoke": [], "drain": []}
    load = subprocess.Popen([sys.executable, "-c", LOAD_CHILD, lab.frontend, str(rate)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for i in range(samples):
            started = time.monotonic()
            node = drivers.provider.launch(LaunchSpec(f"web-probe-{i}", ROLE, "lab", image))
            out["launch_call"].append(time.monotonic() - started)
            try:
                out["boot"].append(_wait_ready(drivers, node) - started)
                smoke_started = time.monotonic()
                result = drivers.smoke.run(node, image)
                if not result.passed:
                    raise SystemExit(f"smoke of {node.name} failed alone: {result.summary}")
                out["smoke"].append(time.monotonic() - smoke_started)
            finally:
                drivers.provider.destroy(node)
                drivers.provider.finish_removal(node)
        for i in range(samples):
            victim = pool[i % len(pool)]
            slot = _slot_of(lb.members(), victim.address)
            started = time.monotonic()
            runtime.command(f"set server {backend}/{slot} state drain")
            try:
                while True:
                    row = next(r for r in runtime.show_stat(backend) if r.svname == slot)
                    if row.scur == 0:
                        out["drain"].append(time.monotonic() - started)
                        break
                    if time.monotonic() - started > 60:
                        raise SystemExit(f"{slot} still had {row.scur} sessions after 60 s")
            finally:
                runtime.command(f"set server {backend}/{slot} state ready")
            time.sleep(0.5)
    finally:
        out_text, _ = load.communicate(timeout=30)  # closes its stdin: it stops and reports
    failed, requests = (int(x) for x in out_text.split())
    out["load_failed"], out["load_requests"] = [float(failed)], [float(requests)]
    return out


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
    _lab.add_lab_args(parser, bridge="rbench1", subnet="10.231.248.0/24", port=18248,
                      data_dir="/var/tmp/rollout-bench")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=500.0, help="load, requests/s")
    parser.add_argument("--samples", type=int, default=7, help="samples per notice time")
    parser.add_argument("--component-samples", type=int, default=1,
                        help="samples of each component time (boot, smoke, drain) before "
                             "the first run and after every run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    if _lab.cannot_run():
        return _lab.CANNOT_RUN
    host_at_start = _results.host()
    with _lab.bench_lab(args) as lab:
        lab.up()
        ensure_images(lab)
        settings = Workspace.open(lab.project, "lab", lab.data.root).pool(ROLE).settings
        measured = [measure_components(lab, args.component_samples, args.rate)]
        runs = []
        for i in range(args.runs):
            run = one_rollout(lab, args.rate)
            measured.append(measure_components(lab, args.component_samples, args.rate))
            components = bracketed(measured[-2], measured[-1], settings)
            limit = pool_limit(settings, int(run["replaced"]), components)
            run |= {"limit": limit.total, "wall_over_limit": limit.ratio(run["wall"]),
                    **{f"component_{k}": v for k, v in asdict(components).items()}}
            runs.append(run)
            print(f"run {i + 1}: components (bracketing, without the controller) "
                  f"boot {components.boot:.2f}s, smoke {components.smoke:.2f}s, lb_rise "
                  f"{components.lb_rise:.2f}s, drain {components.drain:.3f}s, soak "
                  f"{settings.soak:g}s; wall {run['wall']:.2f}s "
                  f"(process {run['process_wall']:.2f}s),"
                  f" failed {run['failed']:.0f}/{run['requests']:.0f} requests "
                  f"at {run['rate']:.0f} req/s; wall / limit {run['limit']:.2f}s = "
                  f"{run['wall_over_limit']:.3f}; wall / observed phase time "
                  f"{run['wall_over_phases']:.3f} (excl. soak "
                  f"{run['wall_over_phases_excl_soak']:.3f}); waits "
                  + ", ".join(f"{k[5:]} {v:.2f}s" for k, v in run.items()
                              if k.startswith("wait_")), flush=True)
        notices = notice_times(lab, args.samples)
    print(f"--- {len(runs)} rollout(s) of 4 nodes (surge, batch 1, canary soak as "
          f"configured) at {args.rate:.0f} req/s; poll interval {POLL}s")
    keys = (("wall", "s"), ("process_wall", "s"), ("failed", ""), ("limit", "s"),
            ("wall_over_limit", ""), ("wall_over_phases", ""),
            ("wall_over_phases_excl_soak", ""))
    for key, unit in keys:
        print(_median_line(key, [r[key] for r in runs], unit))
    wait_keys = sorted({k for r in runs for k in r if k.startswith("wait_")})
    for key in wait_keys:
        print(_median_line(key, [r.get(key, 0.0) for r in runs]))
    print(f"--- time to notice a change (observer = provider.list() + lb.members(), "
          f"then sleep {POLL}s); goal <= 0.5s")
    for key, values in notices.items():
        print(_median_line(key, values))
    figures = {
        "components": {key: statistics.median(r[f"component_{key}"] for r in runs)
                       for key in ("boot", "smoke", "lb_rise", "drain")}
        | {"soak": settings.soak, "measurements": measured},
        "medians": {key: statistics.median(r[key] for r in runs)
                    for key, _ in keys} | {key: statistics.median(r.get(key, 0.0) for r in runs)
                                           for key in wait_keys},
        "notice": {k: {"median": statistics.median(v), "min": min(v), "max": max(v),
                       "samples": v} for k, v in notices.items()},
    }
    path = _results.write(
        "rollout_overhead", "bench/rollout_overhead.py", figures, host_at_start=host_at_start,
        describe={
            "components": "each component's own time, measured without the controller on "
                          "the same lab before the first run and after every run; a run's "
                          "limit uses the mean of the medians just before and after it "
                          "(figures: medians over runs; every measurement listed): boot = launch "
                          "call to "
                          "the first ready probe's start, smoke = the suite alone, lb_rise = "
                          "rise x check_interval (configured), drain = DRAIN until scur 0 "
                          "under load, soak = configured",
            "limit": "the rollout's critical path from the components "
                     "(rollout.core.critical_path.pool_limit)",
            "wall_over_limit": "controller overhead: journal wall time / limit",
            "wall_over_phases": "wall / observed phase time (the journal's waits, soak "
                                "included); formerly called the overhead ratio",
            "notice": "seconds from a change to the first controller-like observation "
                      "showing it",
        },
        out=args.out, extra={"runs": runs, "pool": {"nodes": 4, "strategy": str(settings.strategy),
                                      "batch_size": settings.batch_size,
                                      "canary": settings.canary},
               "rate": args.rate, "poll_interval": POLL})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
