"""The lab benches' shared set-up: their flags, and a throwaway project copy
with its own bridge, subnet, port and data directory, torn down afterwards.

    parser = argparse.ArgumentParser(...)
    _lab.add_lab_args(parser, bridge="rbench1", subnet="10.231.248.0/24", port=18248,
                      data_dir="/var/tmp/rollout-bench")
    args = parser.parse_args()
    with _lab.bench_lab(args, tune=lambda web: web.update(pool_size=4)) as lab:
        lab.up()
        ...
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from rollout.inventory import load_environment
from rollout.paths import DataDir
from rollout.testing.lab import LabHandle, lab_skip_reason, make_project, share_base_cache

REPO = Path(__file__).resolve().parents[1]

#: The exit code of a bench that cannot run here (not root, no nspawn, ...).
CANNOT_RUN = 5


def add_lab_args(parser: argparse.ArgumentParser, *, bridge: str, subnet: str, port: int,
                 data_dir: str, base_cache: bool = True) -> None:
    """The flags every lab bench takes: its own network and data directory, so
    it never meets another lab on the host."""
    parser.add_argument("--bridge", default=bridge)
    parser.add_argument("--subnet", default=subnet)
    parser.add_argument("--port", type=int, default=port, help="the pool's frontend port")
    parser.add_argument("--data-dir", type=Path, default=Path(data_dir))
    if base_cache:
        parser.add_argument("--base-cache", type=Path, default=None,
                            help="a prebuilt base cache to link in (saves the debootstrap)")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")


def cli(lab: LabHandle, *args: str) -> list[str]:
    """The command line of ``rollout ARGS`` against this lab's project and data."""
    return [sys.executable, "-m", "rollout", "--project", str(lab.project),
            "--data-dir", str(lab.data.root), *args]


def ensure_image(lab: LabHandle, version: str, role: str = "web") -> None:
    """Bake ``role`` at ``version`` unless the lab's image store has it (not timed)."""
    listed = subprocess.run(cli(lab, "images", "--role", role, "--output", "json"),
                            capture_output=True, text=True, check=True)
    if version not in {i["version"] for i in json.loads(listed.stdout)}:
        print(f"baking {version} (not timed)...", flush=True)
        subprocess.run(cli(lab, "build", "--role", role, "--version", version),
                       check=True, capture_output=True)


def cannot_run() -> str | None:
    """Why no lab can run on this host (printed by the bench), or None."""
    reason = lab_skip_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
    return reason


@contextmanager
def bench_lab(args: argparse.Namespace, *, tune: Callable[[dict[str, Any]], None] | None = None,
              down: bool = True) -> Iterator[LabHandle]:
    """A lab on a temporary copy of the project, with ``tune`` applied to the
    ``web`` pool's ``rollout`` settings; brought down on the way out unless
    ``--keep`` (or ``down=False``: a bench that tears it down itself)."""
    data = DataDir(args.data_dir)
    share_base_cache(data, getattr(args, "base_cache", None))
    with tempfile.TemporaryDirectory(prefix="rollout-bench-") as tmp:
        project = make_project(REPO, Path(tmp) / "project", bridge=args.bridge,
                               subnet=args.subnet, port=args.port)
        if tune is not None:
            web = project / "inventories/lab/group_vars/web.yml"
            settings = yaml.safe_load(web.read_text())
            tune(settings["rollout"])
            web.write_text(yaml.safe_dump(settings))
        lab = LabHandle(project, load_environment(project, "lab"), data.ensure())
        try:
            yield lab
        finally:
            if down and not args.keep:
                lab.down()
