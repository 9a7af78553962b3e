"""rollout vs the Ansible rolling update, on the lab, under steady HTTP load.

    .venv/bin/python bench/rollout_under_load.py --runs 3 \\
        --bridge rbench1 --subnet 10.231.248.0/24 --port 18248 \\
        --data-dir /var/tmp/rollout-bench-load --base-cache /var/lib/rollout/base

Brings up a 4-node lab (a throwaway project copy with its own bridge, subnet
and port), bakes the two starting images if missing, then ``--runs`` times
runs one environment pipeline of each tool, rollout's first in odd runs and
the baseline's first in even ones:

- **rollout**: ``rollout build`` of a new version (timed for real), then
  ``rollout run --role web --version V`` three times (dev, staging, prod: the
  lab hosts one pool, so the same pool stands in for each environment; a
  repeat to the same image would be a no-op, so the 2nd rollout goes back to
  the previous image and the 3rd to the new one again: every rollout replaces
  all 4 nodes, as each environment's would);
- **baseline**: ``ansible-playbook playbooks/baseline-rolling-update.yml``
  three times, ``serial: 1``, HAProxy drain/maint through the admin socket,
  the roles re-applied in place, wait for the port, enable again.

Before every command the host settles: the bench waits until no lab node of
the previous command is still stopping (exactly the pool's records, none
being removed, and every nspawn of a removed node exited) and prints how
long it waited. Three comparisons, medians over the runs:

- rollout only: one ``rollout run`` against one playbook run (every one counts);
- bake + rollout: the bake's wall plus the rollout to that image, against
  one playbook run;
- the pipeline: bake once + 3 rollouts against 3 playbook runs.

During each command wrk sends a steady, rate-limited load through HAProxy (a Lua
script counts every non-2xx answer; wrk counts socket errors: connect, read,
write, timeout) and rollout.testing.loadgen.Load sends a second, smaller stream with
its own counters, as a cross-check. HAProxy's ``show stat`` is sampled at
10 Hz: the in-service capacity is the number of backend servers whose status
is UP (READY and passing checks). Prints the medians, writes them with every
run and the capacity series (one run of each tool: the median one) to
``--out``/rollout_under_load.json (commit, date, host load), and plots those
series (capacity.png). Tears the lab down unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _lab
import _results
import _settle
import yaml
from _load import Sampler, Wrk

from rollout.backends.lab import haproxy_process, nodes
from rollout.backends.lab.images import LabImageStore
from rollout.drivers.ansible import build_inventory, runner_env
from rollout.errors import NotFoundError
from rollout.testing.lab import LabHandle
from rollout.testing.loadgen import Load

REPO = Path(__file__).resolve().parents[1]
PLAYBOOK = "playbooks/baseline-rolling-update.yml"
POOL_SIZE = 4


def wait_pool_healthy(lab: LabHandle, timeout: float = 90.0) -> None:
    """Poll until the pool is POOL_SIZE running nodes, all UP in HAProxy."""
    deadline = time.monotonic() + timeout
    while True:
        st = lab.status()
        if len(st.nodes) == POOL_SIZE and all(n.lb_state == "up" for n in st.nodes):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"pool not healthy after {timeout:.0f}s: "
                               f"{[(n.name, n.lb_state) for n in st.nodes]}")
        time.sleep(0.2)


def under_load(lab: LabHandle, cmd: list[str], env: dict[str, str], work: Path,
               rate: int) -> dict[str, Any]:
    """Run ``cmd`` under steady load; wall time, load counters, capacity."""
    wait_pool_healthy(lab)
    url = lab.status().frontend
    sampler = Sampler(lab.data, "web").start()
    wrk = Wrk(url, rate, 4, work / "count.lua")
    check = Load(url, concurrency=2, rate=max(10, rate // 10)).start()
    time.sleep(2.0)  # steady state before the change
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    ended = time.monotonic()
    time.sleep(2.0)  # and after it
    counts = wrk.stop()
    cross = check.stop()
    sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    during = [up for t, up in sampler.samples if started <= t <= ended]
    return {
        "wall": round(ended - started, 2),
        "failed": counts["failed"] + cross.failed,
        "wrk": counts,
        "loadgen": cross.to_json(),
        "min_capacity": min(during) if during else None,
        "max_capacity": max(during) if during else None,
        "capacity": [(round(t - started, 2), up) for t, up in sampler.samples],
        "stdout": proc.stdout,
    }


def rollout_cmd(lab: LabHandle, *args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "rollout"), "--project", str(lab.project),
            "--data-dir", str(lab.data.root), *args]


def ensure_image(lab: LabHandle, version: str) -> str:
    """The image id of web ``version``, baked with ``rollout build`` if missing."""
    try:
        return LabImageStore(lab.data).by_version("web", version).id
    except NotFoundError:
        subprocess.run(rollout_cmd(lab, "build", "--role", "web", "--version", version),
                       check=True, capture_output=True)
        return LabImageStore(lab.data).by_version("web", version).id


def run_rollout(lab: LabHandle, version: str, work: Path, rate: int) -> dict[str, Any]:
    cmd = rollout_cmd(lab, "run", "--role", "web", "--version", version, "--output", "json")
    result = under_load(lab, cmd, dict(os.environ), work, rate)
    events = [json.loads(x) for x in result.pop("stdout").splitlines() if x.startswith("{")]
    rollout_id = next(e["rollout_id"] for e in events if e.get("event") == "rollout_finished")
    shown = subprocess.run(rollout_cmd(lab, "show", rollout_id, "--output", "json"),
                           check=True, capture_output=True, text=True)
    journal = json.loads(shown.stdout)
    waits = {k: round(v, 2) for k, v in journal["waits"].items()}
    return result | {"kind": "rollout", "version": version, "rollout_id": rollout_id,
                     "waits": waits, "irreducible": round(sum(waits.values()), 2),
                     # wall ÷ the journal's waits; see bench/rollout_overhead.py
                     # for wall ÷ the physical limit
                     "wall_over_phases": journal["overhead"] and round(journal["overhead"], 3),
                     "replaced": len(journal["replacements"])}


def baseline_inventory(lab: LabHandle, path: Path) -> None:
    """The pool as an Ansible inventory: group web, each host with its slot."""
    ctx = lab.context
    pool = sorted(lab.status().nodes, key=lambda n: n.slot or "")
    inv = build_inventory({n.name: nodes.ssh_target(ctx, n.name) for n in pool}, group="web")
    hosts = inv["all"]["children"]["web"]["hosts"]
    for n in pool:
        hosts[n.name]["haproxy_slot"] = n.slot
    path.write_text(yaml.safe_dump(inv, sort_keys=False))


def run_baseline(lab: LabHandle, version: str, work: Path, rate: int) -> dict[str, Any]:
    inventory = work / "inventory.yml"
    baseline_inventory(lab, inventory)
    socket = haproxy_process.HAProxyFiles.of(lab.data).socket
    for sub in ("tmp", "cp"):
        (work / sub).mkdir(exist_ok=True)
    # The same Ansible settings as bakes: pipelining, SSH control masters.
    env = dict(os.environ) | runner_env(REPO, work)
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
           str(REPO / PLAYBOOK), "-e", f"haproxy_socket={socket}",
           "-e", f"rollout_image_version={version}"]
    result = under_load(lab, cmd, env, work, rate)
    result.pop("stdout")
    return result | {"kind": "baseline", "version": version}


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "commands": len(runs),
        "wall_median": median(runs, "wall"),
        "failed_median": median(runs, "failed"),
        "failed_total": sum(r["failed"] for r in runs),
        "min_capacity": min(r["min_capacity"] for r in runs),
        "min_capacity_median": median(runs, "min_capacity"),
        "wall_over_phases_median": median(runs, "wall_over_phases"),
        "requests_total": sum(r["wrk"]["requests"] + r["loadgen"]["requests"] for r in runs),
    }


def plot(runs: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=80)
    for kind, run in runs.items():
        t, up = zip(*run["capacity"], strict=True)
        ax.step(t, up, where="post", label=f"{kind} ({run['wall']:.1f}s, "
                f"{run['failed']} failed)")
    ax.axhline(POOL_SIZE, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("seconds since the command started")
    ax.set_ylabel("servers in service (UP)")
    ax.set_ylim(0, POOL_SIZE + 2)
    ax.set_title("In-service capacity under steady load (HAProxy show stat, 10 Hz)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


class Pipelines:
    """The runs: each one pipeline of each tool, the settle waits, the bakes."""

    def __init__(self, lab: LabHandle, tmp: Path, rate: int, versions: list[str]) -> None:
        self.lab, self.tmp, self.rate, self.versions = lab, tmp, rate, versions
        self.commands: list[dict[str, Any]] = []
        self.pipelines: list[dict[str, Any]] = []
        self.settles: list[float] = []
        self._seen = _settle.node_pids(lab.context)

    def settle(self) -> None:
        waited = _settle.settle(self.lab.context, POOL_SIZE, self._seen)
        self.settles.append(round(waited, 2))
        print(f"  settled in {waited:.1f}s", flush=True)
        self._seen = _settle.node_pids(self.lab.context)

    def _work(self, name: str) -> Path:
        work = self.tmp / name
        work.mkdir()
        return work

    def rollout(self, run: int) -> None:
        current = {n.image for n in self.lab.status().nodes}
        previous = next(iter(current)) if len(current) == 1 else self.versions[0]
        new = f"5.{run}.0"
        self.settle()
        started = time.monotonic()
        ensure_image(self.lab, new)
        bake = round(time.monotonic() - started, 2)
        print(f"  bake of web {new}: {bake:.1f}s", flush=True)
        walls = []
        for env, target in zip(("dev", "staging", "prod"), (new, previous, new), strict=True):
            self.settle()
            result = run_rollout(self.lab, target, self._work(f"r{run}-{env}"), self.rate)
            result |= {"run": run, "env": env}
            self.commands.append(result)
            walls.append(result["wall"])
            print(json.dumps({k: v for k, v in result.items() if k != "capacity"}), flush=True)
        self.pipelines.append({"kind": "rollout", "run": run, "bake": bake,
                               "first": walls[0], "rollouts": walls,
                               "pipeline": round(bake + sum(walls), 2)})

    def baseline(self, run: int) -> None:
        walls = []
        for k, env in enumerate(("dev", "staging", "prod")):
            self.settle()
            result = run_baseline(self.lab, f"4.{run}.{k}", self._work(f"b{run}-{env}"),
                                  self.rate)
            result |= {"run": run, "env": env}
            self.commands.append(result)
            walls.append(result["wall"])
            print(json.dumps({k: v for k, v in result.items() if k != "capacity"}), flush=True)
        self.pipelines.append({"kind": "baseline", "run": run, "first": walls[0],
                               "playbooks": walls, "pipeline": round(sum(walls), 2)})

    def run(self, run: int) -> None:
        order = ("rollout", "baseline") if run % 2 == 1 else ("baseline", "rollout")
        print(f"run {run}: {order[0]} first", flush=True)
        for kind in order:
            (self.rollout if kind == "rollout" else self.baseline)(run)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def comparisons(p: Pipelines) -> dict[str, Any]:
    """The three comparisons as medians over the runs, and their ratios."""
    by_kind = {k: [c for c in p.commands if c["kind"] == k] for k in ("rollout", "baseline")}
    pipes = {k: [x for x in p.pipelines if x["kind"] == k] for k in ("rollout", "baseline")}
    rollout_only = median(by_kind["rollout"], "wall")
    playbook = median(by_kind["baseline"], "wall")
    bake = median(pipes["rollout"], "bake")
    bake_plus = median([{"v": x["bake"] + x["first"]} for x in pipes["rollout"]], "v")
    pipe_r, pipe_b = median(pipes["rollout"], "pipeline"), median(pipes["baseline"], "pipeline")
    return {
        "rollout_only": {"rollout": rollout_only, "baseline": playbook,
                         "ratio": _ratio(rollout_only, playbook)},
        "bake_plus_rollout": {"bake": bake, "rollout": bake_plus, "baseline": playbook,
                              "ratio": _ratio(bake_plus, playbook)},
        "pipeline_3_envs": {"rollout": pipe_r, "baseline": pipe_b,
                            "ratio": _ratio(pipe_r, pipe_b)},
        "tools": {k: summarize(v) for k, v in by_kind.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _lab.add_lab_args(parser, bridge="rbench1", subnet="10.231.248.0/24", port=18248,
                      data_dir="/var/tmp/rollout-bench-load")
    parser.add_argument("--runs", type=int, default=3,
                        help="pipelines of each tool, the order alternating")
    parser.add_argument("--rate", type=int, default=1000, help="wrk's requests per second")
    parser.add_argument("--versions", default="2.0.0,3.0.0",
                        help="the two images the pool starts from (baked if missing)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    if _lab.cannot_run():
        return _lab.CANNOT_RUN
    host_at_start = _results.host()
    versions = args.versions.split(",")
    with _lab.bench_lab(args) as lab:
        lab.up(nodes=POOL_SIZE)
        for v in versions:
            ensure_image(lab, v)
        # The pipelines' scratch files sit beside the throwaway project copy.
        pipelines = Pipelines(lab, lab.project.parent, args.rate, versions)
        for run in range(1, args.runs + 1):
            pipelines.run(run)
    figures = comparisons(pipelines)
    figures["settle_waits"] = {"median": median([{"v": w} for w in pipelines.settles], "v"),
                               "max": max(pipelines.settles), "all": pipelines.settles}
    by_kind = {k: [c for c in pipelines.commands if c["kind"] == k]
               for k in ("rollout", "baseline")}
    # One command of each for the series and the plot: the one whose wall is the median.
    shown = {k: sorted(v, key=lambda r: r["wall"])[len(v) // 2] for k, v in by_kind.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    plot(shown, args.out / "capacity.png")
    slim = [{k: v for k, v in r.items() if k != "capacity"} for r in pipelines.commands]
    path = _results.write(
        "rollout_under_load", "bench/rollout_under_load.py", figures, out=args.out,
        host_at_start=host_at_start,
        describe={
            "rollout_only": "median wall (s) of one `rollout run` (4 nodes replaced) and of "
                            "one in-place playbook run; ratio = rollout / baseline",
            "bake_plus_rollout": "median of (bake wall + the rollout to that image) against "
                                 "one playbook run",
            "pipeline_3_envs": "median of (bake once + 3 rollouts) against 3 playbook runs; "
                               "the lab hosts one pool, which stands in for dev, staging "
                               "and prod in turn",
            "settle_waits": "seconds waited before each command until no lab node of the "
                            "previous one was still stopping",
            "capacity": "in-service servers (HAProxy status UP) over time, [seconds since "
                        "the command started, count], of each tool's median command",
        },
        extra={"rate": args.rate, "pool_size": POOL_SIZE, "runs": args.runs,
               "order": "rollout first in odd runs, baseline first in even runs",
               "capacity": {k: v["capacity"] for k, v in shown.items()},
               "pipelines": pipelines.pipelines, "commands": slim})
    for name in ("rollout_only", "bake_plus_rollout", "pipeline_3_envs"):
        f = figures[name]
        print(f"{name:18} rollout {f['rollout']:>7.1f}s  baseline {f['baseline']:>7.1f}s  "
              f"ratio {f['ratio']}")
    for kind, f in figures["tools"].items():
        print(f"{kind:10} {f['commands']} commands, wall median {f['wall_median']}s, "
              f"failed {f['failed_total']} of {f['requests_total']}, min capacity "
              f"{f['min_capacity']}/{POOL_SIZE}")
    print(f"settle waits: median {figures['settle_waits']['median']}s, max "
          f"{figures['settle_waits']['max']}s; {args.runs} runs at ~{args.rate} req/s; "
          f"wrote {path} and {args.out / 'capacity.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
