"""Fault injection on the REAL lab (nspawn nodes, HAProxy, Ansible), where the
fault is real and cheap to produce. Every test is labelled REAL; the faults
that need fakes are in tests/unit/test_faults.py. (This file is not named
test_faults.py: two test modules of one basename cannot share a pytest run.)

Each test checks the outcome (retried, restored, or halted cleanly with a
message naming the cause) and leaves the pool healthy: 4 nodes on one image,
all UP, no node beyond the pool.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout.backends.lab.images import LabImageStore
from rollout.testing.lab import LabHandle
from tests.functional.rollout_cli import (
    POOL_SIZE,
    ROLE,
    assert_pool_healthy,
    cli,
    cli_json,
    ensure_image,
    events_of,
    next_target,
    nspawn_machines,
    phase_reached,
    pool,
)

pytestmark = pytest.mark.functional


def _lb_view(lab: LabHandle) -> list[tuple[str, str, str, str | None]]:
    return [(n["name"], n["image_id"], n["lb_state"], n["slot"]) for n in pool(lab)]


def variant(lab: LabHandle, dest: Path, **changes: Any) -> Path:
    """A copy of the lab's project whose web pool has ``changes`` (dotted keys
    under ``rollout``), driving the SAME lab (same inventory, same data dir)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(lab.project / "inventories", dest / "inventories")
    shutil.copytree(lab.project / "smoke", dest / "smoke")
    for name in ("roles", "playbooks"):
        (dest / name).symlink_to((lab.project / name).resolve())
    path = dest / "inventories" / "lab" / "group_vars" / "web.yml"
    doc = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = doc["rollout"]
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def run_cli(project: Path, data: Path, *args: str, timeout: float = 600.0,
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout", "--project", str(project), "--data-dir", str(data),
         *args], capture_output=True, text=True, timeout=timeout, check=False)


def popen_cli(project: Path, data: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rollout", "--project", str(project), "--data-dir", str(data),
         *args, "--output", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_event(proc: subprocess.Popen[str], match: Any, timeout: float = 180.0) -> list[Any]:
    """Read JSON events until one matches; all events read so far."""
    import json

    assert proc.stdout is not None
    seen: list[Any] = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        event = json.loads(line)
        seen.append(event)
        if match(event):
            return seen
        assert time.monotonic() < deadline, f"no matching event in {timeout}s: {seen[-3:]}"
    raise AssertionError(f"the run ended first: {seen[-3:]}")


# --- a node that never becomes ready -------------------------------------------------


DEAF = "9.8.0-deaf"  # nginx listens on 8081, not on the pool's service port 80


def test_real_node_that_never_gets_ready_is_relaunched_then_restored(healthy: LabHandle) -> None:
    """REAL: an image whose web server listens on the wrong port, so HTTP on
    the service port never answers and the node never becomes ready. After
    timeouts.ready (3s) the node is destroyed and another launched
    (boot_retries 1); when that one fails too, exit 1 naming the timeout and
    the probe's answer, and the pool is exactly as before."""
    lab = healthy
    ensure_image(lab, DEAF, "--extra-var", "web_port=8081", "--no-smoke")
    before = _lb_view(lab)
    proc = cli(lab, "run", "--role", ROLE, "--version", DEAF, "--ready-timeout", "3s",
               "--canary", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "not ready within timeouts.ready 3s" in proc.stderr, proc.stderr
    assert "refused" in proc.stderr and "restored" in proc.stderr, proc.stderr
    assert _lb_view(lab) == before
    found = re.search(r"rollout (r[0-9a-f]{8}) ", proc.stderr)
    assert found, proc.stderr
    rollout_id = found.group(1)
    shown = cli_json(lab, "show", rollout_id)
    first = shown["replacements"][0]
    assert first["relaunches"] == 1 and first["phase"] == "restored"
    assert not [m for m in nspawn_machines(lab) if rollout_id[-8:] in m]


# --- the smoke suite flakes once -------------------------------------------------------


def test_real_smoke_flake_once_is_retried(healthy: LabHandle, tmp_path: Path) -> None:
    """REAL: the real smoke suite plus a test that fails on its first run only,
    with smoke.retries 1: the runner retries, the rollout succeeds."""
    lab = healthy
    target = next_target(lab)
    marker = tmp_path / "flaked"
    project = variant(lab, tmp_path / "project", **{"smoke.suite": "smoke/flaky",
                                                    "smoke.retries": 1})
    shutil.copytree(project / "smoke" / "web", project / "smoke" / "flaky")
    (project / "smoke" / "flaky" / "test_flaky.py").write_text(
        "from pathlib import Path\n\n\n"
        "def test_flakes_once() -> None:\n"
        f"    marker = Path({str(marker)!r})\n"
        "    if not marker.exists():\n"
        "        marker.write_text('flaked')\n"
        "        raise AssertionError('flaking once on purpose')\n")
    proc = run_cli(project, lab.data.root, "run", "--role", ROLE, "--version", target,
                   "--output", "json")
    assert proc.returncode == 0, proc.stderr
    assert marker.exists(), "the suite never ran the flaky test"
    last = events_of(proc.stdout)[-1]
    assert (last["status"], last["replaced"], last["restored"]) == ("succeeded", POOL_SIZE, 0)
    assert_pool_healthy(lab, target)


# --- the LB's runtime socket stalls -----------------------------------------------------------


class StallingSocket:
    """A unix socket in front of HAProxy's runtime API: forwards each command,
    or, once ``stall()`` is called, accepts and never answers."""

    def __init__(self, path: Path, upstream: Path) -> None:
        self.path, self.upstream = path, upstream
        self.stalled = threading.Event()
        self.closing = threading.Event()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(64)
        self.server.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            data = b""
            try:
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                if self.stalled.is_set():
                    self.closing.wait(60)  # hold the connection, say nothing
                    return
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as up:
                    up.settimeout(10)
                    up.connect(str(self.upstream))
                    up.sendall(data)
                    while chunk := up.recv(65536):
                        conn.sendall(chunk)
            except OSError:
                return

    def stall(self) -> None:
        self.stalled.set()

    def close(self) -> None:
        self.closing.set()
        self.server.close()
        self.path.unlink(missing_ok=True)


def test_real_lb_socket_stall_halts_naming_it_then_resume_recovers(
        healthy: LabHandle, tmp_path: Path) -> None:
    """REAL: the pool's haproxy.runtime is a unix socket that starts answering
    nothing mid-rollout (HAProxy's real API behind it until then). The rollout
    halts (exit 4) naming the socket; nothing is half-swapped (4 nodes still in
    service); once the socket answers again, resume brings the pool to one image."""
    lab = healthy
    target = next_target(lab)
    short = Path(tempfile.mkdtemp(prefix="h10s-"))  # unix socket paths are short
    sock = short / "runtime.sock"
    proxy = StallingSocket(sock, lab.data.lab / "haproxy.sock")
    try:
        project = variant(lab, tmp_path / "project", **{
            "haproxy.runtime": f"unix://{sock}", "timeouts.progress_deadline": "8s"})
        proc = popen_cli(project, lab.data.root, "run", "--role", ROLE, "--version", target)
        wait_event(proc, phase_reached(0, "smoking"))
        proxy.stall()
        _, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 4, stderr
        assert str(sock) in stderr and "resume" in stderr, stderr
        nodes = pool(lab)
        assert sum(1 for n in nodes if n["lb_state"] == "up") >= POOL_SIZE, nodes
        proxy.stalled.clear()
        resumed = run_cli(project, lab.data.root, "resume", "--role", ROLE)
        assert resumed.returncode in (0, 1), resumed.stderr  # finished, or restored
    finally:
        proxy.close()
        shutil.rmtree(short, ignore_errors=True)
    assert_pool_healthy(lab)


# --- a slow drain --------------------------------------------------------------------------------


class SlowUploads:
    """POSTs through the frontend whose bodies trickle in a byte a second, so
    each holds a session on the node it went to."""

    def __init__(self, host: str, port: int, count: int) -> None:
        self.socks = []
        for _ in range(count):
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"POST / HTTP/1.1\r\nHost: lab\r\nContent-Length: 100000\r\n\r\n")
            self.socks.append(s)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.stop.wait(1.0):
            for s in self.socks:
                with contextlib.suppress(OSError):
                    s.sendall(b"x")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for s in self.socks:
            s.close()


def test_real_slow_drain_waits_then_proceeds_and_reports_it(healthy: LabHandle) -> None:
    """REAL: uploads trickling through HAProxy hold a session on every old node;
    the drain waits timeouts.drain (2s) for each, then proceeds, and the journal
    marks those replacements drain_timed_out. The rollout succeeds."""
    lab = healthy
    target = next_target(lab)
    url = lab.frontend.rstrip("/").removeprefix("http://")
    host, port = url.rsplit(":", 1)
    uploads = SlowUploads(host, int(port), 2 * POOL_SIZE)
    try:
        proc = cli(lab, "run", "--role", ROLE, "--version", target, "--drain-timeout", "2s",
                   "--output", "json")
    finally:
        uploads.close()
    assert proc.returncode == 0, proc.stderr
    rid = events_of(proc.stdout)[-1]["rollout_id"]
    shown = cli_json(lab, "show", rid)
    timed_out = [r for r in shown["replacements"] if r["drain_timed_out"]]
    assert timed_out, f"no drain waited: {shown['replacements']}"
    assert shown["waits"]["drain"] >= 2.0 * len(timed_out) * 0.9
    assert_pool_healthy(lab, target)


# --- ansible-runner dies mid-bake ------------------------------------------------------------


def _descendants(root: int) -> dict[int, str]:
    """pid -> command line of every process below ``root``."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(
                b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: dict[int, str] = {}
    for pid in parents:
        p = pid
        while p in parents and p != root and p > 1:
            p = parents[p]
        if p == root and pid != root:
            found[pid] = commands.get(pid, "")
    return found


def test_real_ansible_killed_mid_bake_leaves_no_image_and_no_builder(lab: LabHandle) -> None:
    """REAL: `rollout build` runs; its ansible-playbook process is SIGKILLed in
    the middle of the play. Exit 1 naming the failed play; no image registered,
    no builder node, no build directory left."""
    store = LabImageStore(lab.data)
    before = {i.id for i in store.list()}
    machines = nspawn_machines(lab)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rollout", "--project", str(lab.project), "--data-dir",
         str(lab.data.root), "build", "--role", ROLE, "--version", "7.8.0-killed"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        for pid, command in _descendants(proc.pid).items():
            if "ansible-playbook" in command and "bake.yml" in command:
                time.sleep(1.5)  # into the play: facts gathered, tasks running
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed = pid
                except ProcessLookupError:
                    pass
                break
        time.sleep(0.1)
    out, err = proc.communicate(timeout=180)
    assert killed is not None, f"never saw ansible-playbook: {out}{err}"
    assert proc.returncode == 1, out + err
    assert "rollout:" in err and "Traceback" not in err, err
    assert {i.id for i in store.list()} == before
    assert nspawn_machines(lab) == machines, "a builder node was left running"
    build = lab.data.images / ".build"
    assert not build.is_dir() or not any(build.iterdir())
    assert not any(p.is_dir() and not p.name.startswith(".") and not (p / "manifest.json").exists()
                   for p in lab.data.images.iterdir())


# --- the disk fills under the journal ---------------------------------------------


@pytest.fixture
def small_data_dir(lab: LabHandle) -> Iterator[Path]:
    """A 64 MiB tmpfs as the data directory, whose lab state, images, base and
    evidence are the live lab's (symlinks): only the journal (and logs) live on
    the small filesystem, so filling it fills the journal's disk for real."""
    root = Path(tempfile.mkdtemp(prefix="h10-full-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(root)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        root.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        for name in ("lab", "images", "base", "evidence", "volumes"):
            source = lab.data.root / name
            if source.exists():
                (root / name).symlink_to(source.resolve())
        yield root
    finally:
        subprocess.run(["umount", str(root)], check=False)
        root.rmdir()


def test_real_disk_full_under_the_journal_stops_then_resume_finishes(
        healthy: LabHandle, small_data_dir: Path) -> None:
    """REAL: the journal's filesystem fills up in the middle of a rollout. The
    controller stops (exit 4) naming the journal and saying to free space,
    with every old node still in service; after space is freed, resume
    finishes the rollout on the same journal."""
    lab = healthy
    target = next_target(lab)
    proc = popen_cli(lab.project, small_data_dir, "run", "--role", ROLE, "--version", target)
    wait_event(proc, phase_reached(0, "smoking"))
    filler = small_data_dir / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 4, stderr
    assert str(small_data_dir / "journal.sqlite") in stderr, stderr
    assert "free disk space" in stderr, stderr
    assert sum(1 for n in pool(lab) if n["lb_state"] == "up") >= POOL_SIZE
    filler.unlink()
    resumed = run_cli(lab.project, small_data_dir, "resume", "--role", ROLE)
    assert resumed.returncode == 0, resumed.stderr
    assert_pool_healthy(lab, target)
