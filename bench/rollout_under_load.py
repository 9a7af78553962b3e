"""rollout vs the Ansible rolling update, on the lab, under steady HTTP load.

    sudo .venv/bin/python bench/rollout_under_load.py --runs 3 \\
        --bridge rbench1 --subnet 10.231.248.0/24 --port 18248 \\
        --data-dir /var/tmp/rollout-bench-load --base-cache /var/lib/rollout/base

Brings up a 4-node lab (a throwaway project copy with its own bridge, subnet
and port), bakes the two target images if missing, then alternates, ``--runs``
times each:

- **rollout**: ``rollout run --role web --version V`` (a new image, new nodes);
- **baseline**: ``ansible-playbook playbooks/baseline-rolling-update.yml``,
  ``serial: 1``, HAProxy drain/maint through the admin socket, the roles
  re-applied in place, wait for the port, enable again.

During each run wrk sends a steady, rate-limited load through HAProxy (a Lua
script counts every non-2xx answer; wrk counts socket errors: connect, read,
write, timeout) and rollout.testing.loadgen.Load sends a second, smaller stream with
its own counters, as a cross-check. HAProxy's ``show stat`` is sampled at
10 Hz: the in-service capacity is the number of backend servers whose status
is UP (READY and passing checks). Prints the medians, writes them with every
run to ``--out``/rollout_under_load.json and one run of each as a
capacity-over-time plot (capacity.png). Tears the lab down unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rollout.backends.lab import haproxy_process, nodes
from rollout.backends.lab.images import LabImageStore
from rollout.drivers.ansible import build_inventory, runner_env
from rollout.errors import NotFoundError
from rollout.inventory import load_environment
from rollout.paths import DataDir
from rollout.testing.lab import LabHandle, lab_skip_reason, make_project, share_base_cache
from rollout.testing.loadgen import Load

REPO = Path(__file__).resolve().parents[1]
PLAYBOOK = "playbooks/baseline-rolling-update.yml"
POOL_SIZE = 4

# wrk's Lua hooks: a fixed delay per request keeps the rate steady (wrk alone
# would saturate both cores and slow node boots ~10x); response() counts every
# non-2xx; done() prints all counters as one JSON line.
WRK_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; bad = 0 end
function delay() return %(delay_ms)d end
function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%%d,"ok":%%d,"non_2xx":%%d,"connect":%%d,' ..
    '"read":%%d,"write":%%d,"timeout":%%d,"seconds":%%.3f}\\n', summary.requests, o, b,
    e.connect, e.read, e.write, e.timeout, summary.duration / 1e6))
end
"""


class Wrk:
    """wrk in the background; ``stop()`` sends SIGINT (wrk then prints its
    summary) and returns the counters."""

    def __init__(self, url: str, rate: int, connections: int, lua: Path) -> None:
        delay = max(1, round(1000 * connections / rate))
        lua.write_text(WRK_LUA % {"delay_ms": delay})
        self.proc = subprocess.Popen(
            ["wrk", "-t1", f"-c{connections}", "-d3600s", "--timeout", "2s", "-s", str(lua),
             url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)
        line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no summary:\n{out}")
        data: dict[str, Any] = json.loads(line[len("WRKJSON "):])
        data["socket_errors"] = sum(data[k] for k in ("connect", "read", "write", "timeout"))
        data["failed"] = data["non_2xx"] + data["socket_errors"]
        data["rate"] = round(data["requests"] / data["seconds"], 1) if data["seconds"] else 0.0
        return data


@dataclass
class Sampler:
    """In-service servers of one backend (status UP) at ~10 Hz, from HAProxy."""

    data: DataDir
    backend: str
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        runtime = haproxy_process.runtime(self.data)
        while not self._stop.is_set():
            rows = runtime.show_stat(self.backend)
            up = sum(1 for r in rows if r.svname not in ("BACKEND", "FRONTEND")
                     and r.status.startswith("UP"))
            self.samples.append((time.monotonic(), up))
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


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
                     "overhead": journal["overhead"] and round(journal["overhead"], 3),
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
        "runs": len(runs),
        "wall_median": median(runs, "wall"),
        "failed_median": median(runs, "failed"),
        "failed_total": sum(r["failed"] for r in runs),
        "min_capacity": min(r["min_capacity"] for r in runs),
        "min_capacity_median": median(runs, "min_capacity"),
        "overhead_median": median(runs, "overhead"),
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bridge", default="rbench1")
    parser.add_argument("--subnet", default="10.231.248.0/24")
    parser.add_argument("--port", type=int, default=18248)
    parser.add_argument("--data-dir", type=Path, default=Path("/var/tmp/rollout-bench-load"))
    parser.add_argument("--base-cache", type=Path, default=None,
                        help="a prebuilt base cache to link in (saves the debootstrap)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each, alternating")
    parser.add_argument("--rate", type=int, default=1000, help="wrk's requests per second")
    parser.add_argument("--versions", default="2.0.0,3.0.0",
                        help="the two images rollout alternates between")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
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
    with tempfile.TemporaryDirectory(prefix="rollout-bench-") as tmp:
        project = make_project(REPO, Path(tmp) / "project", bridge=args.bridge,
                               subnet=args.subnet, port=args.port)
        lab = LabHandle(project, load_environment(project, "lab"), data.ensure())
        try:
            lab.up(nodes=POOL_SIZE)
            for v in versions:
                ensure_image(lab, v)
            for i in range(args.runs):
                current = {n.image for n in lab.status().nodes}
                target = next((v for v in versions if {v} != current), versions[0])
                work = Path(tmp) / f"run{i}"
                work.mkdir()
                runs.append(run_rollout(lab, target, work, args.rate))
                print(json.dumps({k: v for k, v in runs[-1].items() if k != "capacity"}))
                runs.append(run_baseline(lab, f"4.0.{i}", work, args.rate))
                print(json.dumps({k: v for k, v in runs[-1].items() if k != "capacity"}))
        finally:
            if not args.keep:
                lab.down()
    by_kind = {k: [r for r in runs if r["kind"] == k] for k in ("rollout", "baseline")}
    figures = {k: summarize(v) for k, v in by_kind.items()}
    ratio = figures["rollout"]["wall_median"] / figures["baseline"]["wall_median"]
    figures["wall_ratio"] = round(ratio, 3)
    figures["rate"] = args.rate
    args.out.mkdir(parents=True, exist_ok=True)
    # One run of each for the plot: the one whose wall time is the median.
    shown = {k: sorted(v, key=lambda r: r["wall"])[len(v) // 2] for k, v in by_kind.items()}
    plot(shown, args.out / "capacity.png")
    slim = [{k: v for k, v in r.items() if k != "capacity"} for r in runs]
    (args.out / "rollout_under_load.json").write_text(
        json.dumps({"figures": figures, "runs": slim}, indent=1) + "\n")
    print(f"{'':10} {'wall (median)':>14} {'failed (total)':>15} {'min capacity':>13} "
          f"{'overhead':>9}")
    for kind, f in figures.items():
        if isinstance(f, dict):
            print(f"{kind:10} {f['wall_median']:>13.1f}s {f['failed_total']:>15} "
                  f"{f['min_capacity']:>10}/{POOL_SIZE} {f['overhead_median'] or '-':>9}")
    print(f"rollout wall / baseline wall = {ratio:.2f} (goal <= 0.5); "
          f"{args.runs} runs each at ~{args.rate} req/s; plot {args.out / 'capacity.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
