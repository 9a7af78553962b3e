"""Journal write latency and CPU per node step, SQLite and PostgreSQL side by side.

    .venv/bin/python bench/state_store.py                  # 1000 steps, batches of 1
    .venv/bin/python bench/state_store.py --steps 2000 --batch 100

A node step is what the controller journals around one driver call: the
fenced intent (``begin_steps``: the steps row and its step_started event, in
one transaction) and, after the call, the fenced outcome (``commit``: the
outcome, the changed rollout state and the step_finished event). With
``--batch K`` K steps share each of those two transactions, as the
controller does for a batch of K nodes. A lease is held throughout, so every
write carries the epoch check.

SQLite runs on a file in a temporary directory with ``synchronous=FULL``;
PostgreSQL on a throwaway local cluster (unix socket, ``fsync=on``,
``synchronous_commit=on``) from :mod:`rollout.testing.postgres`. Figures
only; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from report import write_result

from rollout.core.batches import Plan
from rollout.core.decide import new_state
from rollout.events import StepFinished, StepStarted
from rollout.store.journal import Journal
from rollout.store.lease import Lease
from rollout.store.stores import open_store
from rollout.testing import FakeWorld, pool_settings
from rollout.testing.postgres import PostgresCluster, skip_reason


def run(store: Journal, steps: int, batch: int) -> dict[str, float]:
    world = FakeWorld.create(2)
    plan = Plan(batches=((world.provider.live()[0],), (world.provider.live()[1],)),
                skipped=(), canary=True)
    state = new_state("r00000001", "bench", "web", world.new, pool_settings(pool_size=2),
                      plan, time.time())
    lease = Lease(store, "bench/web", ttl=60.0).acquire()
    store.create(state)
    latencies: list[float] = []
    cpu0 = time.process_time()
    done = 0
    while done < steps:
        k = min(batch, steps - done)
        now = time.time()
        intents = [(0, "lb_set_admin", f"web-{done + i}", now, "drain") for i in range(k)]
        started = tuple(StepStarted(state.id, now, index=0, node=n, step=kind)
                        for _, kind, n, _, _ in intents)
        t0 = time.perf_counter()
        ids = store.begin_steps(state.id, intents, started)
        latencies.append(time.perf_counter() - t0)
        state = replace(state, last_progress=now, message=f"step {done}")
        finished = [(step_id, True, "", now, 0.01) for step_id in ids]
        ended = tuple(StepFinished(state.id, now, index=0, node=f"web-{done}", step="x")
                      for _ in ids)
        t0 = time.perf_counter()
        store.commit(state, events=ended, finished=finished)
        latencies.append(time.perf_counter() - t0)
        done += k
    cpu = time.process_time() - cpu0
    lease.release()
    ordered = sorted(latencies)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000,
        "per_step_ms": sum(latencies) / steps * 1000,
        "cpu_per_step_ms": cpu / steps * 1000,
        "writes": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="simulated node steps")
    parser.add_argument("--batch", type=int, default=1, help="steps per transaction")
    args = parser.parse_args()
    results: dict[str, dict[str, float] | str] = {}
    with tempfile.TemporaryDirectory(prefix="rollout-bench-") as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'journal.sqlite'}")
        results["SQLite (file, synchronous=FULL)"] = run(store, args.steps, args.batch)
        store.close()
    reason = skip_reason()
    if reason is not None:
        results["PostgreSQL"] = f"skipped: {reason}"
    else:
        with PostgresCluster.start(fsync=True) as pg:
            store = open_store(pg.create_database("bench"))
            results["PostgreSQL (local socket, fsync=on)"] = run(store, args.steps, args.batch)
            store.close()
    print(f"{args.steps} node steps, {args.batch} per transaction, 2 fenced writes each")
    print(f"{'store':<38} {'writes':>7} {'median ms':>10} {'p95 ms':>8} "
          f"{'write ms/step':>14} {'CPU ms/step':>12}")
    for name, figures in results.items():
        if isinstance(figures, str):
            print(f"{name:<38} {figures}")
            continue
        print(f"{name:<38} {figures['writes']:>7.0f} {figures['median_ms']:>10.2f} "
              f"{figures['p95_ms']:>8.2f} {figures['per_step_ms']:>14.2f} "
              f"{figures['cpu_per_step_ms']:>12.2f}")
    write_result("state_store", f"batch-{args.batch}",
                 {"steps": args.steps, "batch": args.batch, "stores": results})


if __name__ == "__main__":
    main()
