"""Helpers for the functional rollout tests: run the CLI as a subprocess (it is
the contract), read its JSON events as they come, and check the pool's health
the way an operator would (``rollout lab status``, HAProxy's members, the
nspawn processes on the host).
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollout.app.workspace import Workspace
from rollout.model import Member
from rollout.testing.lab import LabHandle
from rollout.testing.loadgen import Load, LoadReport

ROLE = "web"
POOL_SIZE = 4
#: Two good target versions; each test rolls to whichever the pool is not on.
TARGETS = ("7.1.0", "7.2.0")
#: Baked with a /healthz that answers 500 and no smoke gate: every rollout to it fails.
BAD = "7.9.0-bad"

Event = dict[str, Any]


def command(lab: LabHandle, *args: str) -> list[str]:
    return [sys.executable, "-m", "rollout", "--project", str(lab.project),
            "--data-dir", str(lab.data.root), *args]


def cli(lab: LabHandle, *args: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
    """Run ``rollout ARGS`` to the end; its exit code, stdout and stderr."""
    return subprocess.run(command(lab, *args), capture_output=True, text=True,
                          timeout=timeout, check=False)


def cli_json(lab: LabHandle, *args: str) -> Any:
    proc = cli(lab, *args, "--output", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def events_of(stdout: str) -> list[Event]:
    """Every stdout line of ``--output json`` as one JSON object (fails otherwise)."""
    lines = [line for line in stdout.splitlines()]
    assert lines, "no output"
    return [json.loads(line) for line in lines]


def ensure_image(lab: LabHandle, version: str, *build_args: str) -> None:
    """Bake ``version`` of the role unless the data dir already holds it."""
    known = {i["version"] for i in cli_json(lab, "images", "--role", ROLE)}
    if version in known:
        return
    proc = cli(lab, "build", "--role", ROLE, "--version", version, *build_args)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def pool(lab: LabHandle) -> list[dict[str, Any]]:
    """The role's nodes as ``rollout lab status --output json`` lists them."""
    status = cli_json(lab, "lab", "status")
    return sorted((n for n in status["nodes"] if n["role"] == ROLE), key=lambda n: n["name"])


def next_target(lab: LabHandle) -> str:
    versions = {n["image"] for n in pool(lab)}
    target = next(v for v in TARGETS if versions != {v})
    ensure_image(lab, target)
    return target


def members(lab: LabHandle) -> list[Member]:
    ws = Workspace.open(lab.project, "lab", lab.data.root)
    return ws.drivers(ROLE).lb.members()


def nspawn_machines(lab: LabHandle) -> set[str]:
    """Names (-M) of the systemd-nspawn processes of this lab's data dir (an
    image of it, or a bind mount from its node directories): every node the host
    runs for it, listed or not."""
    found: set[str] = set()
    images = str(lab.data.root / "images")
    ours = f"{lab.data.root}/"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not argv or os.path.basename(argv[0]) != "systemd-nspawn":
            continue
        pairs = dict(itertools.pairwise(argv))
        if pairs.get("-D", "").startswith(images) or any(ours in arg for arg in argv[1:]):
            found.add(pairs.get("-M", "?"))
    return found


def assert_pool_healthy(lab: LabHandle, version: str | None = None) -> list[dict[str, Any]]:
    """4 running nodes on one image (``version`` if given), each UP in HAProxy;
    the other slots empty and out of service; no nspawn node beyond the pool."""
    nodes = pool(lab)
    assert len(nodes) == POOL_SIZE, nodes
    assert all(n["state"] == "running" and n["lb_state"] == "up" for n in nodes), nodes
    images = {n["image_id"] for n in nodes}
    assert len(images) == 1, f"pool on several images: {nodes}"
    if version is not None:
        assert {n["image"] for n in nodes} == {version}, nodes
    served = [m for m in members(lab) if m.target]
    assert len(served) == POOL_SIZE, served
    assert all(m.in_service for m in served), served
    addresses = {m.target.rsplit(":", 1)[0] for m in served}
    assert addresses == {n["address"] for n in nodes}, (served, nodes)
    assert all(not m.in_service for m in members(lab) if not m.target)
    assert nspawn_machines(lab) == {n["name"] for n in nodes}
    return nodes


def lock_holder(lab: LabHandle) -> Any:
    rows = cli_json(lab, "status", "--role", ROLE)["pools"]
    return rows[0]["lock"]


class Running:
    """``rollout ARGS --output json`` started with Popen; its events read by a
    thread so waiting for one never blocks past a deadline."""

    def __init__(self, lab: LabHandle, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(command(lab, *args, "--output", "json"),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.events: list[Event] = []
        self.lines: list[str] = []
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stderr = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            event: Event = json.loads(line)
            self.events.append(event)
            self._queue.put(event)
        self._queue.put(None)

    def wait_for(self, match: Callable[[Event], bool], timeout: float = 300.0) -> Event:
        """Block until an event matches; fail if the run ends or time runs out first."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no matching event within {timeout}s: {self.events[-5:]}"
            try:
                event = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            assert event is not None, f"run ended first: {self.finish()} {self.stderr}"
            if match(event):
                return event

    def finish(self, timeout: float = 600.0) -> int:
        """Wait for the exit; its code (stderr kept in ``self.stderr``)."""
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=10)
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        return code


def phase_reached(index: int, phase: str) -> Callable[[Event], bool]:
    return lambda e: (e.get("event") == "phase_changed" and e.get("index") == index
                      and e.get("phase") == phase)


#: Steady, capped load: at full speed the Python generator starves the nodes' boots.
RATE = 400.0


class Loaded:
    """Load through the frontend for the length of a ``with`` block."""

    def __init__(self, lab: LabHandle) -> None:
        self.load = Load(lab.frontend, concurrency=4, rate=RATE, timeout=5.0)
        self.report = LoadReport()

    def __enter__(self) -> Loaded:
        self.load.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.report = self.load.stop()

    def assert_no_failures(self) -> None:
        report = self.report
        assert report.requests > 0
        assert report.failed == 0, report.to_json()


def _nspawn_dir(pid: int) -> str:
    """The -D directory of the systemd-nspawn that ``pid`` (a container process)
    runs under, or "" when none is found."""
    for _ in range(8):  # container processes sit a few levels below their nspawn
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return ""
        parts = argv.split("\0")
        if parts and os.path.basename(parts[0]) == "systemd-nspawn":
            return dict(itertools.pairwise(parts)).get("-D", "")
        pid = int(stat.rpartition(")")[2].split()[1])
        if pid <= 1:
            return ""
    return ""


def lab_netns(data_root: Path, known: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """Network namespaces that belong to the lab of ``data_root``: those whose
    processes run under an nspawn of its images, and empty ones not in ``known``
    (a snapshot taken earlier). Other labs on the machine use /run/netns too."""
    netns = Path("/run/netns")
    found: set[str] = set()
    if not netns.is_dir():
        return found
    images = str(data_root / "images")
    for entry in netns.iterdir():
        pids = subprocess.run(["ip", "netns", "pids", entry.name], capture_output=True,
                              text=True, check=False).stdout.split()
        if not pids:
            if entry.name not in known:
                found.add(entry.name)
        elif any(_nspawn_dir(int(p)).startswith(images) for p in pids):
            found.add(entry.name)
    return found
