"""Time `lab up`: cold (nothing running; base and images cached unless the data
dir is new) and warm (everything already up; the median of several runs).

    .venv/bin/python bench/lab_up.py --bridge rlab1 --subnet 10.231.1.0/24 \\
        --port 18080 --data-dir /var/tmp/rollout-bench --runs 5

Also reports node boot times (start to SSH, to `systemctl is-system-running`
= running) measured on one extra node. Tears the lab down at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from report import write_result

from rollout.backends.lab import nodes
from rollout.backends.lab.images import LabImageStore
from rollout.inventory import load_environment
from rollout.paths import DataDir
from rollout.testing.lab import LabHandle, lab_skip_reason, make_project

REPO = Path(__file__).resolve().parents[1]


def _boot_times(lab: LabHandle) -> tuple[float, float]:
    image = LabImageStore(lab.data).oldest("web")
    ctx = lab.context
    started = time.monotonic()
    nodes.start_node(ctx, "web-bench0", Path(image.location), role="web", env="lab",
                     image_id=image.id, image_version=image.version)
    try:
        nodes.wait_ssh(ctx, "web-bench0", 30)
        to_ssh = time.monotonic() - started
        target = nodes.ssh_target(ctx, "web-bench0")
        while nodes.ssh_run(target, "systemctl is-system-running").stdout.strip() != "running":
            if time.monotonic() - started > 60:
                raise SystemExit("web-bench0 never reached systemd 'running'")
            time.sleep(0.05)
        return to_ssh, time.monotonic() - started
    finally:
        nodes.remove_node(ctx, "web-bench0")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bridge", default="rbench0")
    parser.add_argument("--subnet", default="10.231.249.0/24")
    parser.add_argument("--port", type=int, default=18249)
    parser.add_argument("--data-dir", type=Path, default=Path("/var/tmp/rollout-bench"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    reason = lab_skip_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 5
    with tempfile.TemporaryDirectory(prefix="rollout-bench-") as tmp:
        project = make_project(REPO, Path(tmp) / "project", bridge=args.bridge,
                               subnet=args.subnet, port=args.port)
        lab = LabHandle(project, load_environment(project, "lab"), DataDir(args.data_dir))
        lab.down()  # a cold start: no nodes, network or HAProxy (caches kept)
        try:
            started = time.monotonic()
            lab.up()
            cold = time.monotonic() - started
            warm = []
            for _ in range(args.runs):
                started = time.monotonic()
                lab.up()
                warm.append(time.monotonic() - started)
            to_ssh, to_running = _boot_times(lab)
        finally:
            lab.down()
    print(f"cold lab up (4 nodes, caches warm unless new data dir): {cold:.2f}s")
    print(f"warm lab up: median {statistics.median(warm):.2f}s over {len(warm)} runs "
          f"(min {min(warm):.2f}s, max {max(warm):.2f}s)")
    print(f"node boot: SSH after {to_ssh:.2f}s, systemd running after {to_running:.2f}s")
    write_result("lab_up", "default", {
        "cold_s": round(cold, 2), "warm_median_s": round(statistics.median(warm), 3),
        "warm_runs": [round(w, 3) for w in warm], "node_to_ssh_s": round(to_ssh, 2),
        "node_to_running_s": round(to_running, 2),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
