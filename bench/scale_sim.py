"""Roll a simulated 1,000-node pool in batches of 10% with the public fakes.

    .venv/bin/python bench/scale_sim.py                 # 1000 nodes, lab latencies
    .venv/bin/python bench/scale_sim.py --nodes 200 --speedup 4
    .venv/bin/python bench/scale_sim.py --profile /tmp/sim.prof

What runs for real: the controller (:class:`rollout.engine.controller.Controller`: the
decision core, the executor loop and its thread pool) and the journal (SQLite
on disk, ``synchronous=FULL`` unless ``--no-fsync``). What is simulated: the
provider, the load balancer and the smoke gate (``rollout.testing`` fakes).

Why a REAL clock: the goal compares wall time with the theoretical time
(batches x per-node time), which only means something when the controller's own
work (deciding over 1,000 replacements, journal fsyncs, thread hand-offs) costs
real time on the same timeline as the latencies. A pure virtual clock hides
exactly that cost, and it cannot model concurrency either: a FakeClock's
``sleep`` advances one shared clock, so 100 smoke runs "in parallel" add up to
100 x the smoke time. So the fakes run on :class:`RealTimeClock`, whose
``sleep`` really sleeps (divided by ``--speedup``, 1 by default = real
latencies) and whose ``now`` is real elapsed time (times the speedup).

Figures:

* controller CPU per node step: (process CPU time - CPU spent inside the fakes)
  ÷ journaled steps (launch, smoke, lb_add, lb_set_admin, lb_remove, destroy).
  The fakes' own CPU (e.g. the fake LB rebuilding 1,100 members per call) is
  measured with per-thread CPU clocks around every fake call and left out,
  because a real driver's cost is I/O wait, not our CPU. Both are printed.
* peak RSS: ``ru_maxrss`` of this process.
* wall time against theoretical: batches x (boot + smoke + rise x interval +
  drain), all nodes of a batch in parallel.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rollout.config import Pool, PoolSettings
from rollout.engine.controller import Controller, RolloutResult
from rollout.model import Image, LaunchSpec, Member, Node, Readiness, SmokeResult
from rollout.store.journal import Journal
from rollout.testing import (
    FakeClock,
    FakeImageStore,
    FakeLoadBalancer,
    FakeProvider,
    FakeSmokeRunner,
    image,
)

T = TypeVar("T")


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
        self.set_admin = cost.timed(inner.set_admin)
        self.remove: Callable[[Node], None] = cost.timed(inner.remove)


class TimedSmoke:
    def __init__(self, inner: FakeSmokeRunner, cost: FakeCost) -> None:
        self.run: Callable[[Node, Image], SmokeResult] = cost.timed(inner.run)


def settings(nodes: int, batch: int, drain_timeout: float) -> PoolSettings:
    # An ELBv2-style pool: the HAProxy settings cap slots at 1,000, fewer than
    # a 1,000-node surge needs; the fakes behind it are the same either way.
    return PoolSettings.model_validate({
        "provider": "lab", "load_balancer": "elbv2",
        "aws": {"target_group_arn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:"
                                    "targetgroup/sim/0123456789abcdef"},
        "pool_size": nodes, "batch_size": batch, "canary": 0, "soak": 0,
        "min_healthy": "100%", "max_unavailable": 0,
        "timeouts": {"ready": 120, "smoke": 120, "lb_up": 120, "drain": drain_timeout,
                     "progress_deadline": 600},
    })


def simulate(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    clock = RealTimeClock(args.speedup)
    provider = FakeProvider(clock, boot_time=args.boot)
    old, new = image("web", "1.0.0", 1.0), image("web", "2.0.0", 2.0)
    lb = FakeLoadBalancer(clock, provider, rise=args.rise, interval=args.interval,
                          drain_time=args.drain)
    lb.seed(provider.seed(args.nodes, old))
    smoke = FakeSmokeRunner(clock, duration=args.smoke)
    FakeImageStore([old, new])
    batch = max(1, args.nodes * args.batch_percent // 100)
    pool = Pool("sim", "web", settings(args.nodes, batch, drain_timeout=args.drain * 10),
                data / "web.yml")
    cost = FakeCost()
    journal = Journal(data / "journal.sqlite", durable=not args.no_fsync)
    ctl = Controller(
        pool=pool, provider=TimedProvider(provider, cost),  # type: ignore[arg-type]
        lb=TimedLoadBalancer(lb, cost),  # type: ignore[arg-type]
        smoke=TimedSmoke(smoke, cost),  # type: ignore[arg-type]
        journal=journal, clock=clock, poll_interval=args.poll, workers=args.workers or batch,
    )
    profiler = cProfile.Profile() if args.profile else None
    cpu0, wall0 = time.process_time(), time.monotonic()
    if profiler is not None:
        profiler.enable()
    result: RolloutResult = ctl.run(new)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    wall = (time.monotonic() - wall0) * args.speedup  # in simulated seconds
    cpu = time.process_time() - cpu0
    steps = journal.steps(result.id)
    batches = -(-args.nodes // batch)
    per_node = args.boot + args.smoke + args.rise * args.interval + args.drain
    problems = [p for p in _problems(provider, lb, new.id, args.nodes)]
    return {
        "status": str(result.status), "replaced": len(result.replaced), "problems": problems,
        "nodes": args.nodes, "batch": batch, "batches": batches, "steps": len(steps),
        "cpu": cpu, "fake_cpu": cost.seconds, "fake_calls": cost.calls,
        "ctl_cpu": cpu - cost.seconds,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "wall": wall, "per_node": per_node, "theoretical": batches * per_node,
        "waits": result.waits,
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


def report(r: dict[str, Any], args: argparse.Namespace) -> bool:
    per_step_ms = r["ctl_cpu"] / max(1, r["steps"]) * 1000
    ratio = r["wall"] / r["theoretical"]
    goals = [
        ("controller CPU per node step", f"{per_step_ms:.2f} ms", "≤ 2 ms", per_step_ms <= 2.0),
        ("peak RSS", f"{r['rss_mb']:.0f} MB", "≤ 150 MB", r["rss_mb"] <= 150),
        ("wall / theoretical", f"{r['wall']:.1f}s / {r['theoretical']:.1f}s = {ratio:.3f}",
         "≤ 1.05", ratio <= 1.05),
    ]
    print(f"pool {r['nodes']} nodes, {r['batches']} batches of {r['batch']}, "
          f"per-node time {r['per_node']:g}s (boot {args.boot:g} + smoke {args.smoke:g} + "
          f"rise {args.rise}x{args.interval:g} + drain {args.drain:g}), speedup {args.speedup:g}, "
          f"journal fsync {'off' if args.no_fsync else 'on'}")
    print(f"outcome: {r['status']}, {r['replaced']} replaced, {r['steps']} journaled steps; "
          f"pool check: {'ok' if not r['problems'] else '; '.join(r['problems'])}")
    print(f"CPU: process {r['cpu']:.2f}s, inside the fakes {r['fake_cpu']:.2f}s "
          f"({r['fake_calls']} calls), controller {r['ctl_cpu']:.2f}s")
    print(f"{'figure':<32} {'measured':<28} {'goal':<10} met")
    for name, value, goal, met in goals:
        print(f"{name:<32} {value:<28} {goal:<10} {'yes' if met else 'NO'}")
    return all(m for *_, m in goals) and not r["problems"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--batch-percent", type=int, default=10)
    # Defaults: what the lab measured per node (boot ~0.6 s, smoke ~1.1 s,
    # HAProxy rise 2 x 0.5 s) and a short drain.
    parser.add_argument("--boot", type=float, default=0.6)
    parser.add_argument("--smoke", type=float, default=1.1)
    parser.add_argument("--rise", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--drain", type=float, default=0.3)
    parser.add_argument("--poll", type=float, default=0.1, help="the controller's poll interval")
    parser.add_argument("--workers", type=int, default=0, help="thread pool size [batch size]")
    parser.add_argument("--speedup", type=float, default=1.0)
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--profile", default=None, help="write cProfile stats here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.data_dir) as tmp:
        result = simulate(args, Path(tmp))
    ok = report(result, args)
    if args.profile:
        pstats.Stats(args.profile).sort_stats("cumulative").print_stats(25)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
