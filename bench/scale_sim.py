"""Roll a simulated pool of up to 1,000 nodes in batches of 10% with the public fakes.

    .venv/bin/python bench/scale_sim.py                          # lab-like, SQLite
    .venv/bin/python bench/scale_sim.py --profile aws --speedup 10
    .venv/bin/python bench/scale_sim.py --store postgresql --seed 2
    .venv/bin/python bench/scale_sim.py --cprofile /tmp/sim.prof

What runs for real: the controller (:class:`rollout.engine.controller.Controller`:
the decision core, the executor loop, its thread pool and its concurrent
readiness probes) and the journal (SQLite on disk with ``synchronous=FULL``, or
a throwaway local PostgreSQL with ``fsync=on``). What is simulated: the
provider, the load balancer and the smoke gate (``rollout.testing`` fakes,
timed by :mod:`rollout.testing.latency`).

The latency model (every parameter is printed, every draw is seeded):

* ``lab``: the lab provider (systemd-nspawn) behind HAProxy. Boot, smoke and
  drain are lognormal with a 2% share of stragglers; every readiness probe
  costs about 0.29 s and occupies its probe thread; HAProxy runtime-API calls
  are sub-millisecond; nothing is throttled. HAProxy's settings allow at most
  1,000 slots, so a lab pool with a 100-node surge has at most 900 nodes: the
  default pool here.
* ``aws``: EC2 instances behind an ELBv2 target group: boots of ~40 s,
  API calls of ~0.1-0.3 s, a registration delay before a target's checks
  start, a deregistration delay as the drain, and 2% of API attempts answered
  ``Throttling`` (retried with botocore's backoff, then the AWS driver's
  TransientError: see :class:`rollout.testing.latency.Throttle`).

Why a REAL clock: a virtual clock hides the controller's own cost (deciding
over 1,000 replacements, journal fsyncs, thread hand-offs) and cannot model
concurrency (a FakeClock's ``sleep`` advances one shared clock). So the fakes
run on :class:`RealTimeClock` (``--speedup`` divides every sleep).

Figures:

* theoretical time: the batch makespan. A batch's nodes move in parallel and
  the core releases a batch to retirement once all of them are parked, and
  starts the next batch once the earlier ones hold no LB slot, so a batch takes
  the slowest node's launch + boot + one probe + smoke + add + registration +
  rise x interval + drain call + drain + maint call, then the slowest remove;
  the last batch adds its slowest destroy. Every term is the latency that node
  actually drew. Throttling backoff and the loop's own delays are not in it:
  they are what the ratio measures.
* controller CPU per node step: (process CPU - CPU inside the fakes) ÷
  journaled steps. A real driver's cost is I/O wait, so the fakes' CPU is left
  out; both are printed.
* peak RSS: ``ru_maxrss`` of this process (PostgreSQL's server is another process).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from report import stamp, write_result

from rollout.config import Pool, PoolSettings
from rollout.engine.controller import GATHER, Controller, RolloutResult
from rollout.model import Admin, Image, LaunchSpec, Member, Node, Readiness, SmokeResult
from rollout.store.journal import Journal
from rollout.store.stores import open_store
from rollout.testing import FakeClock, FakeLoadBalancer, FakeProvider, FakeSmokeRunner, image
from rollout.testing.latency import Latencies, Lognormal, Pacer, Throttle
from rollout.testing.postgres import PostgresCluster, skip_reason

T = TypeVar("T")

#: The latency models (seconds). Calls not listed take no time.
PROFILES: dict[str, dict[str, Any]] = {
    "lab": {
        "nodes": 900, "rise": 2, "interval": 0.5, "registration": 0.0, "throttle": 0.0,
        "poll": 0.1, "speedup": 1.0, "load_balancer": "haproxy",
        "latencies": {
            "boot": Lognormal(0.6, 0.25, 0.02, 3.0),
            "readiness": Lognormal(0.29, 0.1),
            "smoke": Lognormal(1.1, 0.15, 0.02, 2.0),
            "drain": Lognormal(0.3, 0.3),
            "launch": Lognormal(0.05, 0.2),
            "destroy": Lognormal(0.05, 0.2),
            "list": Lognormal(0.01, 0.2),
            "members": Lognormal(0.003, 0.2),
            "add": Lognormal(0.0005, 0.3),
            "set_admin": Lognormal(0.0005, 0.3),
            "remove": Lognormal(0.0005, 0.3),
        },
    },
    "aws": {
        "nodes": 1000, "rise": 2, "interval": 10.0, "registration": 5.0, "throttle": 0.02,
        "poll": 1.0, "speedup": 10.0, "load_balancer": "elbv2",
        "latencies": {
            "boot": Lognormal(40.0, 0.2, 0.02, 2.5),
            "readiness": Lognormal(0.3, 0.2),
            "smoke": Lognormal(8.0, 0.2, 0.02, 2.0),
            "drain": Lognormal(30.0, 0.05),
            "launch": Lognormal(0.3, 0.3, 0.02, 5.0),
            "destroy": Lognormal(0.2, 0.3),
            "list": Lognormal(0.3, 0.2),
            "members": Lognormal(0.1, 0.2),
            "add": Lognormal(0.1, 0.3, 0.02, 5.0),
            "set_admin": Lognormal(0.1, 0.3, 0.02, 5.0),
            "remove": Lognormal(0.1, 0.3, 0.02, 5.0),
        },
    },
}


class RealTimeClock(FakeClock):
    """Real elapsed time, optionally sped up: ``sleep(s)`` sleeps ``s / speedup``
    real seconds, ``now()`` advances ``speedup`` seconds per real second. A
    subclass of FakeClock only so the fakes accept it; nothing is virtual."""

    def __init__(self, speedup: float = 1.0, start: float = 1_700_000_000.0) -> None:
        super().__init__(start)
        self.speedup = speedup
        self._origin = time.monotonic()

    def now(self) -> float:
        return self._now + (time.monotonic() - self._origin) * self.speedup

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.speedup)

    def advance(self, seconds: float) -> None:
        raise NotImplementedError("a real clock cannot be advanced")


class FakeCost:
    """CPU seconds spent inside fake drivers, from every thread."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._lock = threading.Lock()

    def timed(self, func: Callable[..., T]) -> Callable[..., T]:
        def wrapper(*args: Any, **kwargs: Any) -> T:
            started = time.thread_time()
            try:
                return func(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                with self._lock:
                    self.seconds += spent
                    self.calls += 1

        return wrapper


class TimedProvider:
    def __init__(self, inner: FakeProvider, cost: FakeCost) -> None:
        self.list: Callable[[], list[Node]] = cost.timed(inner.list)
        self.launch: Callable[[LaunchSpec], Node] = cost.timed(inner.launch)
        self.readiness: Callable[[Node], Readiness] = cost.timed(inner.readiness)
        self.stop: Callable[[Node], None] = cost.timed(inner.stop)
        self.start: Callable[[Node], Node] = cost.timed(inner.start)
        self.destroy: Callable[[Node], None] = cost.timed(inner.destroy)
        self.attach_volume: Callable[[Node], None] = cost.timed(inner.attach_volume)
        self.join_group: Callable[[Node], None] = cost.timed(inner.join_group)
        self.finish_removal: Callable[[Node], None] = cost.timed(inner.finish_removal)
        self.ssh = inner.ssh


class TimedLoadBalancer:
    def __init__(self, inner: FakeLoadBalancer, cost: FakeCost) -> None:
        self.members: Callable[[], list[Member]] = cost.timed(inner.members)
        self.add: Callable[[Node], Member] = cost.timed(inner.add)
        self.set_admin: Callable[[Node, Admin], None] = cost.timed(self._set_admin)
        self.remove: Callable[[Node], None] = cost.timed(inner.remove)
        self._inner = inner

    def _set_admin(self, node: Node, admin: Admin) -> None:
        self._inner.set_admin(node, admin)


class TimedSmoke:
    def __init__(self, inner: FakeSmokeRunner, cost: FakeCost) -> None:
        self.run: Callable[[Node, Image], SmokeResult] = cost.timed(inner.run)


def settings(nodes: int, batch: int, lb: str, drain_timeout: float) -> PoolSettings:
    data: dict[str, Any] = {
        "pool_size": nodes, "batch_size": batch, "canary": 0, "soak": 0,
        "min_healthy": "100%", "max_unavailable": 0,
        "timeouts": {"ready": 600, "smoke": 600, "lb_up": 600, "drain": drain_timeout,
                     "progress_deadline": 1800},
    }
    if lb == "haproxy":
        data.update({"provider": "lab", "haproxy": {"backend": "web", "frontend_port": 8080,
                                                    "slots": nodes + batch}})
    else:
        data.update({"provider": "aws", "load_balancer": "elbv2", "aws": {
            "target_group_arn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:"
                                "targetgroup/sim/0123456789abcdef",
            "launch_template": "sim"}})
    return PoolSettings.model_validate(data)


@contextmanager
def journal_at(store: str, data: Path, durable: bool) -> Iterator[Journal]:
    if store == "sqlite":
        journal = Journal(data / "journal.sqlite", durable=durable)
        try:
            yield journal
        finally:
            journal.close()
        return
    reason = skip_reason()
    if reason is not None:
        raise SystemExit(f"--store postgresql: {reason}")
    with PostgresCluster.start(fsync=durable) as pg:
        journal = open_store(pg.create_database("sim"), durable=durable)
        try:
            yield journal
        finally:
            journal.close()


def theoretical(state_reps: list[Any], lat: Latencies, rise: int, interval: float,
                registration: float) -> float:
    """The batch makespan from the latencies each node drew (see the module doc)."""
    total = 0.0
    batches = sorted({r.batch for r in state_reps})
    for b in batches:
        reps = [r for r in state_reps if r.batch == b]
        up = max(
            lat.last("launch", r.new_name) + lat.last("boot", r.new_name)
            + lat.last("readiness", r.new_name) + lat.last("smoke", r.new_name)
            + lat.last("add", r.new_name) + registration + rise * interval
            + 2 * lat.last("set_admin", r.old_name) + lat.last("drain", r.old_name)
            for r in reps)
        total += up + max(lat.last("remove", r.old_name) for r in reps)
        if b == batches[-1]:
            total += max(lat.last("destroy", r.old_name) for r in reps)
    return total


def hops(steps: list[Any], reps: list[Any], lat: Latencies, rise: int, interval: float,
         registration: float) -> dict[str, float]:
    """Median seconds each hop of a replacement took beyond what its node drew:
    where the controller's own delay goes (detection of a change, loop turns)."""
    by: dict[tuple[int, str], list[Any]] = {}
    for step in steps:
        if step.index is not None:
            by.setdefault((step.index, step.kind), []).append(step)
    gaps: dict[str, list[float]] = {}

    def gap(name: str, value: float) -> None:
        gaps.setdefault(name, []).append(value)

    for r in reps:
        try:
            launch, smoke = by[(r.index, "launch")][-1], by[(r.index, "smoke")][-1]
            add, admin = by[(r.index, "lb_add")][-1], by[(r.index, "lb_set_admin")]
            remove = by[(r.index, "lb_remove")][-1]
        except KeyError:
            continue
        drain, maint = admin[0], admin[-1]
        gap("boot seen (launch end to smoke start - boot - probe)", smoke.started_at
            - launch.finished_at - lat.last("boot", r.new_name) - lat.last("readiness", r.new_name))
        gap("smoke end to lb_add start", add.started_at - smoke.finished_at)
        gap("LB up seen (add end to drain start - registration - rise)", drain.started_at
            - add.finished_at - registration - rise * interval)
        gap("drain seen (drain end to maint start - drain)", maint.started_at - drain.finished_at
            - lat.last("drain", r.old_name))
        gap("maint end to lb_remove start (batch barrier incl.)",
            remove.started_at - maint.finished_at)
        gap("launch step - launch", launch.finished_at - launch.started_at
            - lat.last("launch", r.new_name))
        gap("launch outcome duration", (launch.duration or 0.0) - lat.last("launch", r.new_name))
        gap("smoke step - smoke", smoke.finished_at - smoke.started_at
            - lat.last("smoke", r.new_name))
        gap("add step", add.finished_at - add.started_at)
        gap("drain step", drain.finished_at - drain.started_at)
        gap("maint step", maint.finished_at - maint.started_at)
        gap(f"node overhead, batch {r.batch}", (maint.finished_at - launch.started_at) - (
            lat.last("launch", r.new_name) + lat.last("boot", r.new_name)
            + lat.last("readiness", r.new_name) + lat.last("smoke", r.new_name)
            + lat.last("add", r.new_name) + registration + rise * interval
            + 2 * lat.last("set_admin", r.old_name) + lat.last("drain", r.old_name)))
    firsts: dict[int, float] = {}
    lasts: dict[int, float] = {}
    for r in reps:
        launch, remove = by.get((r.index, "launch")), by.get((r.index, "lb_remove"))
        if launch and remove and remove[-1].finished_at is not None:
            firsts[r.batch] = min(firsts.get(r.batch, 1e18), launch[0].started_at)
            lasts[r.batch] = max(lasts.get(r.batch, 0.0), remove[-1].finished_at)
    for b in sorted(firsts):
        if b - 1 in lasts:
            gap("batch start (last remove of the previous batch to first launch)",
                firsts[b] - lasts[b - 1])
    out = {}
    for k, v in gaps.items():
        ordered = sorted(v)
        out[k] = round(statistics.median(ordered), 3)
        out[k + " p90"] = round(ordered[int(len(ordered) * 0.9)], 3)
    return out


def simulate(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    prof = PROFILES[args.profile]
    clock = RealTimeClock(args.speedup)
    lat = Latencies(prof["latencies"], seed=args.seed)
    throttle = Throttle(args.throttle, seed=args.seed) if args.throttle > 0 else None
    # Readiness is a probe of the node, not an API call: it is never throttled.
    api = frozenset({"launch", "destroy", "list", "members", "add", "set_admin", "remove"})
    pace = Pacer(lat, clock.sleep, throttle, throttled_ops=api)
    provider = FakeProvider(clock, boot=lambda n: lat.draw("boot", n), pace=pace)
    old, new = image("web", "1.0.0", 1.0), image("web", "2.0.0", 2.0)
    lb = FakeLoadBalancer(clock, provider, rise=prof["rise"], interval=prof["interval"],
                          drain=lambda n: lat.draw("drain", n),
                          registration_delay=prof["registration"], pace=pace)
    provider.pace = None  # the seed is not part of the rollout
    lb.seed(provider.seed(args.nodes, old))
    provider.pace = pace
    smoke = FakeSmokeRunner(clock, durations=lambda n: lat.draw("smoke", n))
    batch = max(1, args.nodes * args.batch_percent // 100)
    drain_timeout = prof["latencies"]["drain"].median * 20
    pool = Pool("sim", "web", settings(args.nodes, batch, prof["load_balancer"], drain_timeout),
                data / "web.yml")
    cost = FakeCost()
    with journal_at(args.store, data, durable=not args.no_fsync) as journal:
        ctl = Controller(
            pool=pool, provider=TimedProvider(provider, cost),  # type: ignore[arg-type]
            lb=TimedLoadBalancer(lb, cost),  # type: ignore[arg-type]
            smoke=TimedSmoke(smoke, cost),  # type: ignore[arg-type]
            journal=journal, clock=clock, poll_interval=args.poll,
            workers=args.workers or batch, gather=GATHER,  # as `rollout run` has it
            # New nodes are named after the rollout id, and draws are seeded
            # by name: a fixed id makes a seed give the same latencies again.
            new_id=lambda: f"r{args.seed:08x}",
        )
        profiler = cProfile.Profile() if args.cprofile else None
        cpu0, wall0 = time.process_time(), time.monotonic()
        if profiler is not None:
            profiler.enable()
        result: RolloutResult = ctl.run(new)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.cprofile)
        wall = (time.monotonic() - wall0) * args.speedup  # in simulated seconds
        cpu = time.process_time() - cpu0
        steps = journal.steps(result.id)
        reps = list(journal.get(result.id).replacements)
    theory = theoretical(reps, lat, prof["rise"], prof["interval"], prof["registration"])
    delays = hops(steps, reps, lat, prof["rise"], prof["interval"], prof["registration"])
    return {
        "profile": args.profile, "store": args.store, "seed": args.seed,
        "status": str(result.status), "replaced": len(result.replaced),
        "problems": _problems(provider, lb, new.id, args.nodes),
        "nodes": args.nodes, "batch": batch, "batches": len({r.batch for r in reps}),
        "steps": len(steps), "cpu": cpu, "fake_cpu": cost.seconds, "fake_calls": cost.calls,
        "ctl_cpu": cpu - cost.seconds,
        "cpu_per_step_ms": (cpu - cost.seconds) / max(1, len(steps)) * 1000,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "wall": wall, "theoretical": theory, "ratio": wall / theory if theory else None,
        "hops": delays, "probes": lat.draws("readiness"), "poll": args.poll,
        "speedup": args.speedup,
        "throttle": {"rate": args.throttle, "attempts": throttle.attempts,
                     "throttled": throttle.throttled, "failed_calls": throttle.raised,
                     "backoff_s": round(throttle.backoff, 2)} if throttle else None,
        "model": {k: str(v) for k, v in prof["latencies"].items()},
        "lb": {"rise": prof["rise"], "interval": prof["interval"],
               "registration_delay": prof["registration"]},
    }


def _problems(provider: FakeProvider, lb: FakeLoadBalancer, image_id: str,
              size: int) -> list[str]:
    live = provider.live()
    found = []
    if len(live) != size:
        found.append(f"{len(live)} nodes, expected {size}")
    if {n.image_id for n in live} != {image_id}:
        found.append("not every node is on the new image")
    in_service = sum(1 for m in lb.members() if m.in_service)
    if in_service != size:
        found.append(f"{in_service} members in service, expected {size}")
    return found


def _cause(r: dict[str, Any]) -> str:
    """Why wall exceeds the makespan, from the measured hop delays."""
    gap = r["wall"] - r["theoretical"]
    hops = {k: v for k, v in r["hops"].items() if not k.endswith("p90")
            and not k.startswith("node overhead") and "barrier" not in k}
    top = sorted(hops.items(), key=lambda kv: -kv[1])[:3]
    text = (f"{gap:.1f}s beyond the makespan, {gap / max(1, r['batches']):.2f}s per batch; "
            "largest median delays per hop: " + ", ".join(f"{k} {v:g}s" for k, v in top))
    if r.get("throttle"):
        text += f"; throttling backoff {r['throttle']['backoff_s']:g}s in all"
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        # Each hop waits for a pass of the loop; a starved process makes every pass slow.
        text += f"; host load {load:.1f} on {os.cpu_count()} CPUs"
    return text


def goals(r: dict[str, Any]) -> list[dict[str, Any]]:
    ratio = r["ratio"] or 0.0
    found = [
        {"figure": "controller CPU per node step", "value": round(r["cpu_per_step_ms"], 3),
         "unit": "ms", "goal": "≤ 2 ms", "met": r["cpu_per_step_ms"] <= 2.0},
        {"figure": "peak RSS", "value": round(r["rss_mb"], 1), "unit": "MB", "goal": "≤ 150 MB",
         "met": r["rss_mb"] <= 150},
        {"figure": "wall ÷ theoretical", "value": round(ratio, 3), "unit": "",
         "goal": "≤ 1.05", "met": ratio <= 1.05,
         "detail": f"{r['wall']:.1f}s ÷ {r['theoretical']:.1f}s"},
    ]
    for goal in found:
        if not goal["met"]:
            goal["cause"] = (_cause(r) if goal["figure"].startswith("wall") else
                             f"measured on a host with load {os.getloadavg()[0]:.1f}")
    return found


def report(r: dict[str, Any]) -> bool:
    print(f"profile {r['profile']}: pool {r['nodes']} nodes, {r['batches']} batches of "
          f"{r['batch']}, journal {r['store']}, seed {r['seed']}, poll {r['poll']:g}s, "
          f"speedup {r['speedup']:g}")
    for kind, model in r["model"].items():
        print(f"  {kind:<10} {model}")
    print(f"  LB rise {r['lb']['rise']} x {r['lb']['interval']:g}s, registration delay "
          f"{r['lb']['registration_delay']:g}s; throttling {r['throttle'] or 'none'}")
    print(f"outcome: {r['status']}, {r['replaced']} replaced, {r['steps']} journaled steps, "
          f"{r['probes']} readiness probes; pool check: "
          f"{'ok' if not r['problems'] else '; '.join(r['problems'])}")
    print("median delay per hop beyond the drawn latencies (s): " + ", ".join(
        f"{k} {v:g}" for k, v in r["hops"].items()))
    print(f"CPU: process {r['cpu']:.2f}s, inside the fakes {r['fake_cpu']:.2f}s "
          f"({r['fake_calls']} calls), controller {r['ctl_cpu']:.2f}s")
    print(f"{'figure':<32} {'measured':<28} {'goal':<10} met")
    for g in r["goals"]:
        value = g.get("detail", "") + (" = " if "detail" in g else "") + f"{g['value']}"
        print(f"{g['figure']:<32} {value + ' ' + g['unit']:<28} {g['goal']:<10} "
              f"{'yes' if g['met'] else 'NO'}")
    return all(g["met"] for g in r["goals"]) and not r["problems"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="lab")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--nodes", type=int, default=0, help="pool size [the profile's]")
    parser.add_argument("--batch-percent", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--throttle", type=float, default=-1.0,
                        help="share of API attempts throttled [the profile's]")
    parser.add_argument("--poll", type=float, default=0.0,
                        help="the controller's poll interval [the profile's]")
    parser.add_argument("--workers", type=int, default=0, help="thread pool size [batch size]")
    parser.add_argument("--speedup", type=float, default=0.0, help="[the profile's]")
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--cprofile", default=None, help="write cProfile stats here")
    parser.add_argument("--no-json", action="store_true",
                        help="do not write bench/results/scale_sim.json")
    args = parser.parse_args(argv)
    prof = PROFILES[args.profile]
    args.nodes = args.nodes or prof["nodes"]
    args.poll = args.poll or prof["poll"]
    args.speedup = args.speedup or prof["speedup"]
    args.throttle = prof["throttle"] if args.throttle < 0 else args.throttle
    began = stamp()  # the commit whose code this run loaded
    with tempfile.TemporaryDirectory(dir=args.data_dir) as tmp:
        result = simulate(args, Path(tmp))
    result["goals"] = goals(result)
    ok = report(result)
    if not args.no_json:
        key = f"{args.profile}-{args.store}" + ("" if args.nodes == prof["nodes"] else
                                                f"-{args.nodes}")
        write_result("scale_sim", key, result, stamped=began)
    if args.cprofile:
        pstats.Stats(args.cprofile).sort_stats("cumulative").print_stats(25)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
