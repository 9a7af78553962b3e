"""Time image bakes on a cached base: the median of several runs, with phases.

    .venv/bin/python bench/bake.py --runs 3 [--incremental] \\
        [--data-dir /var/tmp/rollout-bench] [--bridge rbench0 --subnet 10.233.0.0/24]

Each run bakes the web role (with the smoke gate) in a throwaway copy of the
project; ``--incremental`` bakes from the previous image instead of the base.
The base is built first if the data directory has none (not timed). The
images baked here are deleted at the end; the base cache stays.
Goal: an incremental bake takes at most 30 s.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from report import write_result  # noqa: E402

from rollout.backends.lab import base as lab_base  # noqa: E402
from rollout.backends.lab import network  # noqa: E402
from rollout.backends.lab.builder import bake_on_lab  # noqa: E402
from rollout.backends.lab.images import LabImageStore  # noqa: E402
from rollout.inventory import load_environment  # noqa: E402
from rollout.model import Image  # noqa: E402
from rollout.paths import DataDir  # noqa: E402
from rollout.testing.lab import make_project  # noqa: E402

# The milestones of a bake, as its events announce them.
PHASES = (("copy", "copying"), ("boot", "booting"), ("ansible", "running"),
          ("smoke", "smoke-testing"), ("seal", "stopping"), ("done", "registered"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--incremental", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=Path("/var/tmp/rollout-bench-bake"))
    parser.add_argument("--bridge", default="rbake0")
    parser.add_argument("--subnet", default="10.232.0.0/24")
    args = parser.parse_args()

    data = DataDir(args.data_dir).ensure()
    project = make_project(REPO, Path(tempfile.mkdtemp(prefix="bench-bake-")) / "p",
                           bridge=args.bridge, subnet=args.subnet, port=18399)
    env = load_environment(project, "lab")
    had_bridge = Path("/sys/class/net", args.bridge).exists()
    if not lab_base.base_ready(data):
        print("building the base first (not timed)…", flush=True)
    lab_base.ensure_base(data)

    store = LabImageStore(data)
    baked: list[Image] = []
    totals: list[float] = []
    try:
        for run in range(args.runs):
            marks: dict[str, float] = {}
            started = time.monotonic()

            def on_event(message: str, marks: dict[str, float] = marks,
                         started: float = started) -> None:
                for phase, word in PHASES:
                    if message.startswith(word) and phase not in marks:
                        marks[phase] = time.monotonic() - started

            parent = baked[-1] if args.incremental and baked else None
            image = bake_on_lab(project, env, data, "web", f"9.{run}.0", parent=parent,
                         on_event=on_event)
            baked.append(image)
            total = time.monotonic() - started
            totals.append(total)
            steps, last = [], 0.0
            for (phase, _), (following, _) in itertools.pairwise(PHASES):
                end = marks.get(following, total)
                steps.append(f"{phase} {end - marks.get(phase, last):.1f}s")
                last = end
            kind = "incremental" if parent else "from base"
            print(f"run {run + 1}: {total:.1f}s ({kind}): {', '.join(steps)}", flush=True)
    finally:
        for image in baked:
            store.delete(image.id)
        if not had_bridge:
            network.remove_network(env.settings.lab)
    median = statistics.median(totals)
    print(f"median bake: {median:.1f}s over {len(totals)} runs "
          f"(min {min(totals):.1f}s, max {max(totals):.1f}s); goal ≤ 30s")
    kind = "incremental" if args.incremental else "from-base"
    write_result("bake", kind, {
        "runs": [round(t, 2) for t in totals], "median_s": round(median, 2),
        "goals": [{"figure": f"bake of web ({kind}), median", "value": round(median, 1),
                   "unit": "s", "goal": "≤ 30 s", "met": median <= 30.0,
                   "cause": "" if median <= 30.0 else "see the per-phase times printed"}],
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
