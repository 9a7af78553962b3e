"""SIGTERM (what a Jenkins abort and a systemd stop send) during `rollout build`
and `rollout lab up`, on the real lab, through the CLI as a subprocess.

Each test signals the command while a builder or a node is up, then checks
what an operator would: exit 130, nothing registered, and no builder, node,
network namespace, nspawn machine, build directory or temporary directory left.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rollout.backends.lab.env import lab_down
from rollout.backends.lab.images import LabImageStore
from rollout.backends.lab.nodes import LabContext, list_nodes
from rollout.inventory import load_environment
from rollout.paths import DataDir
from rollout.testing.lab import LabHandle, lab_skip_reason, make_project, share_base_cache
from tests.functional.rollout_cli import Event, Running, lab_netns, nspawn_machines

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def handle(tmp_path_factory: pytest.TempPathFactory, lab_data: DataDir) -> Iterator[LabHandle]:
    """A lab of its own (project copy, bridge, subnet, frontend port and data
    directory), none of it brought up: these tests start and interrupt `lab up`
    and take down whatever they brought up, so they must not share the session's
    lab. Baked images are shared with the session's data directory."""
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    _KNOWN.update(_all_netns())
    project = make_project(
        REPO, tmp_path_factory.mktemp("signals-project"),
        bridge=os.environ.get("ROLLOUT_LAB_SIGNALS_BRIDGE", "rtsig0"),
        subnet=os.environ.get("ROLLOUT_LAB_SIGNALS_SUBNET", "10.231.251.0/24"),
        port=int(os.environ.get("ROLLOUT_LAB_SIGNALS_PORT", "18260")),
    )
    data = DataDir(tmp_path_factory.mktemp("signals-data"))
    shared = os.environ.get("ROLLOUT_BASE_CACHE")
    share_base_cache(data, Path(shared) if shared else None)
    lab_data.images.mkdir(parents=True, exist_ok=True)
    data.images.symlink_to(lab_data.images.resolve(), target_is_directory=True)
    handle = LabHandle(project, load_environment(project, "lab"), data.ensure())
    yield handle
    lab_down(handle.env, handle.data)


def _all_netns() -> frozenset[str]:
    netns = Path("/run/netns")
    return frozenset(p.name for p in netns.iterdir()) if netns.is_dir() else frozenset()


# Namespaces that exist before a test runs belong to other labs (or to the pool).
_KNOWN: set[str] = set()


def _world(lab: LabHandle) -> dict[str, object]:
    """What a command may leave behind, as sets an operator can compare: only
    this data directory's (other labs run on the machine too)."""
    images = lab.data.images
    build = images / ".build"
    return {
        "node records": {r.name for r in list_nodes(LabContext(lab.data, lab.env.settings.lab))},
        "netns": lab_netns(lab.data.root, _KNOWN),
        "nspawn machines": nspawn_machines(lab),
        "images": {i.id for i in LabImageStore(lab.data).list()},
        "build dirs": {p.name for p in build.iterdir()} if build.is_dir() else set(),
        "unregistered": {p.name for p in images.iterdir() if p.is_dir()
                         and not p.name.startswith(".") and not (p / "manifest.json").exists()}
        if images.is_dir() else set(),
    }


@pytest.fixture
def tmp() -> Iterator[Path]:
    """The child's temporary directory: its own (other processes on the machine
    use /tmp too) and short (ansible's SSH control sockets live below it, and a
    socket path holds at most 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="rb-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmp)}


def _message(prefix: str) -> Callable[[Event], bool]:
    return lambda e: e.get("event") == "message" and str(e.get("text", "")).startswith(prefix)


def _terminate(run: Running, when: Callable[[Event], bool], timeout: float = 300) -> int:
    try:
        run.wait_for(when, timeout=timeout)
        run.proc.send_signal(signal.SIGTERM)
        return run.finish(timeout=180)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            run.finish()


def test_sigterm_during_build_removes_the_builder(handle: LabHandle, tmp: Path) -> None:
    before = _world(handle)
    run = Running(handle, "build", "--role", "web", "--version", "2.9.5-sigterm",
                  env=_env(tmp))
    # Mid-play: the builder is booted, Ansible runs against it.
    code = _terminate(run, _message("task: "))
    assert code == 130, (code, run.stderr)
    assert "interrupted; the builder was removed and nothing registered" in run.stderr
    assert not any(e.get("event") == "image_registered" for e in run.events)
    assert _world(handle) == before
    assert sorted(p.name for p in tmp.iterdir()) == []


def test_sigterm_during_the_bake_of_lab_up_removes_the_builder(
        handle: LabHandle, tmp: Path, tmp_path: Path) -> None:
    """A data directory with no image yet: `lab up` bakes web 1.0.0 first."""
    data = DataDir(tmp_path / "data")
    share_base_cache(data, handle.data.base_cache.resolve())
    fresh = LabHandle(handle.project, handle.env, data.ensure())
    before = _world(fresh)
    run = Running(fresh, "lab", "up", env=_env(tmp))
    code = _terminate(run, _message("task: "))
    assert code == 130, (code, run.stderr)
    assert "nothing registered" in run.stderr and "lab up interrupted" in run.stderr
    assert _world(fresh) == before
    assert sorted(p.name for p in tmp.iterdir()) == []


def test_sigterm_during_lab_up_removes_the_nodes_it_started(
        handle: LabHandle, tmp: Path) -> None:
    before = _world(handle)
    assert before["node records"] == set(), "the lab must be down before this test"
    run = Running(handle, "lab", "up", env=_env(tmp))
    try:
        launch = run.wait_for(_message("web: launching "), timeout=600)
        name = str(launch["text"]).split()[2]
        # Signal once that node's systemd-nspawn runs: a node is up.
        deadline = time.monotonic() + 60
        while name not in nspawn_machines(handle) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert name in nspawn_machines(handle), f"node {name} never ran: {run.events[-5:]}"
        run.proc.send_signal(signal.SIGTERM)
        code = run.finish(timeout=180)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            run.finish()
    assert code == 130, (code, run.stderr)
    assert "lab up interrupted; removed the node(s) it had started" in run.stderr
    assert name in run.stderr
    after = _world(handle)
    # lab up may have baked the role's first image before it launched nodes.
    assert {**after, "images": before["images"]} == before
    assert sorted(p.name for p in tmp.iterdir()) == []
