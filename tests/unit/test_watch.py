"""`rollout watch` follows a rollout that another process runs (on the fakes,
slowed down to real time) to its end, and exits with the rollout's code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from rollout.paths import DataDir
from rollout.store.journal import Journal
from tests.unit.test_session import REPO

#: Runs a rollout of lab/web on the fakes in its own process. Its smoke runs
#: wait for the file ``release`` next to the data directory, so that the
#: watcher attaches while the rollout runs.
DRIVER = """
import sys, time
from pathlib import Path
from rollout.app.rollouts import run_rollout
from rollout.core.phoenix import DAY_SECONDS
from rollout.inventory import load_environment
from rollout.paths import DataDir
from rollout.testing import FakeWorld
from tests.unit.test_session import REPO, FakeWorkspace

fake = FakeWorld.create(4)
fake.clock.advance(2 * DAY_SECONDS)
if sys.argv[2] == "fail":
    fake.smoke.fail(image=fake.new.id)
slow = fake.smoke.run
release = Path(sys.argv[1]).parent / "release"
def run(node, image):
    while not release.exists():
        time.sleep(0.05)
    time.sleep(0.1)
    return slow(node, image)
fake.smoke.run = run
ws = FakeWorkspace(REPO, load_environment(REPO, "lab"), DataDir(Path(sys.argv[1])), fake=fake)
run_rollout(ws, "web", version="2.0.0", clock=fake.clock)
"""


def _start(data: Path, how: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(data), how], cwd=REPO, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_running(data: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if _journal_path(data).exists():
            with closing(Journal(_journal_path(data))) as journal:
                if journal.unfinished("lab", "web") is not None:
                    return
        time.sleep(0.05)
    raise AssertionError("the rollout did not start")


def _journal_path(data: Path) -> Path:
    return DataDir(data).journal


def _watch_cmd(data: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "rollout", "--project", str(REPO), "--data-dir", str(data),
            "watch", *args, "--poll", "0.1", "--output", "json"]


def _watch(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_watch_cmd(data, *args), capture_output=True, text=True,
                          timeout=120, check=False, cwd=REPO)


@pytest.mark.parametrize(("how", "code", "status"), [("ok", 0, "succeeded"),
                                                      ("fail", 1, "failed")])
def test_watch_follows_another_process_to_the_end(tmp_path: Path, how: str, code: int,
                                                   status: str) -> None:
    data = tmp_path / "data"
    proc = _start(data, how)
    try:
        _wait_running(data, proc)
        watcher = subprocess.Popen(_watch_cmd(data, "--role", "web"), cwd=REPO, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert watcher.stdout is not None
        first = watcher.stdout.readline()  # attached: it printed the events so far
        (tmp_path / "release").touch()
        rest, err = watcher.communicate(timeout=120)
    finally:
        (tmp_path / "release").touch()
        proc.wait(60)
    assert watcher.returncode == code, err
    events = [json.loads(line) for line in (first + rest).splitlines()]
    kinds = [e["event"] for e in events]
    # It attached while the rollout ran, so it saw phases change live...
    assert "phase_changed" in kinds
    # ...and ended with the rollout's own last word.
    assert events[-1]["event"] == "rollout_finished"
    assert events[-1]["status"] == status
    assert proc.returncode == code


def test_watch_of_a_finished_rollout_returns_its_code_at_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (tmp_path / "release").touch()
    proc = _start(data, "fail")
    proc.wait(120)
    with closing(Journal(_journal_path(data))) as journal:
        rid = journal.history("lab", "web", limit=1)[0].state.id
    watched = _watch(data, rid)
    assert watched.returncode == 1
    assert "failed" in watched.stderr


def test_watch_without_a_running_rollout_is_a_usage_error(tmp_path: Path) -> None:
    watched = _watch(tmp_path / "data", "--role", "web")
    assert watched.returncode == 2
    assert "no running rollout" in watched.stderr
