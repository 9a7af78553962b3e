"""The doorbell: the fast `rollout rollback` client's command-line parsing and
fall-back rules, the listener's credential and request checks, and a rollback
rung at a live controller on the fakes."""

from __future__ import annotations

import json
import os
import pwd
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout.config import Pool
from rollout.core.state import RolloutStatus
from rollout.doorbell import socket_path
from rollout.engine.controller import Controller
from rollout.engine.doorbell import Doorbell, peer_allowed, peer_credentials
from rollout.engine.result import RolloutResult
from rollout.entry import Ask, parse, ring
from rollout.events import Event, RollbackRequested, TrafficSwitched
from rollout.store.journal import Journal
from rollout.testing import FakeClock, FakeWorld, pool_settings


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # A unix socket's path is at most 107 bytes: pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="bell") as name:
        yield Path(name)


@pytest.fixture
def project(short_dir: Path) -> Path:
    root = short_dir / "proj"
    (root / "inventories").mkdir(parents=True)
    (root / "roles").mkdir()
    return root


def _ask(project: Path, data: Path, **changes: str | None) -> Ask:
    fields = {"role": "web", "env": "lab", "output": "json", "data_dir": data,
              "project": project, "state": None, **changes}
    return Ask(**fields)  # type: ignore[arg-type]


# --- the client's parsing --------------------------------------------------------------

def test_a_plain_rollback_resolves_like_the_full_cli(project: Path) -> None:
    ask = parse(["rollback", "--role", "web"], {"ROLLOUT_DATA_DIR": "/d"}, project / "roles")
    assert ask == Ask(role="web", env="lab", output="text", data_dir=Path("/d"),
                      project=project, state=None)


def test_options_before_and_after_the_command(project: Path) -> None:
    ask = parse(["--project", str(project), "--data-dir=/x", "--env", "prod", "--output",
                 "text", "rollback", "--role=web", "--output", "json", "--wait-lock",
                 "--env", "stage", "--no-progress"],
                {"ROLLOUT_ENV": "other", "ROLLOUT_STATE_URL": "sqlite:////s.db"}, Path("/"))
    assert ask == Ask(role="web", env="stage", output="json", data_dir=Path("/x"),
                      project=project, state="sqlite:////s.db")
    ask = parse(["--state", "sqlite:////t.db", "rollback", "--role", "web"],
                {"ROLLOUT_ENV": "other", "ROLLOUT_PROJECT": str(project),
                 "ROLLOUT_STATE_URL": "sqlite:////s.db"}, Path("/"))
    assert ask is not None and (ask.env, ask.state) == ("other", "sqlite:////t.db")


@pytest.mark.parametrize("argv", [
    [],
    ["--help"],
    ["run", "--role", "web"],
    ["rollback"],
    ["rollback", "--role"],
    ["rollback", "--role", "web", "--bogus"],
    ["rollback", "--role", "web", "extra"],
    ["rollback", "--role", "web", "--output", "yaml"],
    ["rollback", "--help", "--role", "web"],
    ["--version", "rollback", "--role", "web"],
    ["--unknown", "x", "rollback", "--role", "web"],
])
def test_anything_else_goes_to_the_full_cli(project: Path, argv: list[str]) -> None:
    assert parse(argv, {}, project) is None


def test_no_project_here_goes_to_the_full_cli(short_dir: Path) -> None:
    assert parse(["rollback", "--role", "web"], {}, short_dir) is None


def test_no_socket_or_an_odd_name_falls_back(project: Path, short_dir: Path) -> None:
    assert ring(_ask(project, short_dir)) is None
    assert ring(_ask(project, short_dir, role="../web")) is None
    assert socket_path(Path("/" + "d" * 100), "lab", "web") is None  # too long to bind


def test_a_stale_socket_falls_back_and_the_next_controller_replaces_it(
        project: Path, short_dir: Path) -> None:
    path = socket_path(short_dir, "lab", "web")
    assert path is not None
    path.parent.mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # a killed controller's socket: a file, no listener
    dead.close()
    assert path.exists()
    assert ring(_ask(project, short_dir)) is None
    bell = Doorbell(path, {"env": "lab", "role": "web", "project": str(project),
                           "state": None})
    assert bell.start()
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        assert Doorbell(path, {}).start() is False  # a live listener is left alone
    finally:
        bell.close()
    assert not path.exists()


# --- the listener's checks ---------------------------------------------------------------

@pytest.mark.parametrize(("peer", "own", "allowed"), [
    (1000, 1000, True), (0, 1000, True), (0, 0, True), (1001, 1000, False),
    (1000, 0, False),
])
def test_only_the_same_user_or_root_may_ring(peer: int, own: int, allowed: bool) -> None:
    assert peer_allowed(peer, own) is allowed


def test_the_credentials_come_from_the_kernel() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert peer_credentials(left) == (os.getpid(), os.geteuid())


def test_a_request_for_another_project_or_store_is_refused(
        project: Path, short_dir: Path) -> None:
    path = socket_path(short_dir, "lab", "web")
    assert path is not None
    bell = Doorbell(path, {"env": "lab", "role": "web", "project": str(project),
                           "state": None})
    assert bell.start()
    try:
        assert ring(_ask(project, short_dir, state="sqlite:////other.db")) is None
        assert ring(_ask(project.parent, short_dir)) is None
        assert bell.take() == []  # nothing reached the controller
    finally:
        bell.close()


# --- a rollback rung at a live controller ----------------------------------------------

class PacedDoorbell(Doorbell):
    """A doorbell for a controller on a virtual clock: each wait lets the
    virtual time pass (and a real millisecond, for the other thread)."""

    def __init__(self, path: Path, expect: dict[str, object], *, clock: FakeClock) -> None:
        super().__init__(path, expect)
        self.clock = clock

    def wait(self, seconds: float) -> None:
        self.clock.sleep(seconds)
        super().wait(0.001)


def test_a_rung_rollback_is_journaled_with_the_callers_identity_and_streamed(
        project: Path, short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = FakeWorld.create(2)
    journal_path = short_dir / "journal.sqlite"
    path = socket_path(short_dir, "lab", "web")
    assert path is not None
    bell = PacedDoorbell(path, {"env": "lab", "role": "web", "project": str(project),
                                "state": None}, clock=world.clock)
    assert bell.start()
    switched = threading.Event()
    events: list[Event] = []

    def sink(event: Event) -> None:
        events.append(event)
        bell.publish(event)
        if isinstance(event, TrafficSwitched):
            switched.set()

    pool = Pool("lab", "web", pool_settings(pool_size=2, strategy="blue_green",
                                            scale_down_delay=10**6), project / "web.yml")
    journal = Journal(journal_path, durable=False)
    ctl = Controller(pool=pool, provider=world.provider, lb=world.lb, smoke=world.smoke,
                     journal=journal, clock=world.clock, on_event=sink, workers=0,
                     doorbell=bell)
    results: list[RolloutResult] = []

    def drive() -> None:
        try:
            results.append(ctl.run(world.new))
        finally:
            bell.finish(journal, events[0].rollout_id, world.clock.now())
            bell.close()

    thread = threading.Thread(target=drive)
    thread.start()
    try:
        assert switched.wait(30)
        code = ring(_ask(project, short_dir))
    finally:
        thread.join(30)
    assert code == 0
    assert results[0].status is RolloutStatus.ABORTED
    assert world.problems(2, world.old.id) == []
    by = f"{pwd.getpwuid(os.geteuid()).pw_name}@{socket.gethostname()}:{os.getpid()}"
    asked = [e for e in journal.events(results[0].id) if isinstance(e, RollbackRequested)]
    assert [e.by for e in asked] == [by]
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed[0]["event"] == "rollback_requested" and printed[0]["by"] == by
    assert all("ts" in p for p in printed)
    assert (printed[-1]["event"], printed[-1]["status"]) == ("rollout_finished", "aborted")
    assert not path.exists()
