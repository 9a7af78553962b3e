"""Webhook notifications against a real HTTP receiver on loopback: what the
receiver gets for a rollout that succeeds, one that fails and restores, and
that a dead or stuck receiver neither fails nor blocks a rollout."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from rollout.app.notify import Notifier, PostFailed
from rollout.app.rollouts import run_rollout
from rollout.config import NotifyOn, PoolSettings, Webhook, validate_model
from rollout.core.phoenix import DAY_SECONDS
from rollout.errors import ConfigError, RolloutFailed
from rollout.events import RolloutStarted
from rollout.inventory import load_environment
from rollout.paths import DataDir
from rollout.testing import FakeWorld
from tests.loopback import serve
from tests.unit.test_session import REPO, FakeWorkspace


@dataclass
class Receiver:
    url: str
    texts: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    #: Answer this many requests with 503 first (the sender must retry).
    fail_first: int = 0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if state.fail_first > 0:
                state.fail_first -= 1
                self.send_response(503)
            else:
                state.texts.append(json.loads(body)["text"])
                state.paths.append(self.path)
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as port:
        state.url = f"http://127.0.0.1:{port}/hooks/T0/secret"
        yield state


def workspace(tmp_path: Path, *hooks: Webhook) -> tuple[FakeWorld, FakeWorkspace]:
    fake = FakeWorld.create(4)
    fake.clock.advance(2 * DAY_SECONDS)
    ws = FakeWorkspace(REPO, load_environment(REPO, "lab"), DataDir(tmp_path / "data"),
                       fake=fake)
    pool = ws.pool("web")
    settings = pool.settings.model_copy(update={"notify": hooks})
    return fake, ws.with_pool(replace(pool, settings=settings))


def test_a_rollout_tells_its_start_and_success_retrying_a_503(
        tmp_path: Path, receiver: Receiver) -> None:
    receiver.fail_first = 1
    fake, ws = workspace(tmp_path, Webhook(url=receiver.url))
    result = run_rollout(ws, "web", version="2.0.0", clock=fake.clock)
    # The command drained the queue before it returned.
    assert len(receiver.texts) == 2, receiver.texts
    started, finished = receiver.texts
    assert started.startswith("lab/web: rolling lab/web to 2.0.0")
    assert finished.startswith(f"lab/web: rollout {result.id} succeeded: 4 replaced")
    assert receiver.paths == ["/hooks/T0/secret"] * 2


def test_a_failed_rollout_tells_each_restore_and_the_failure(
        tmp_path: Path, receiver: Receiver) -> None:
    fake, ws = workspace(tmp_path, Webhook(url=receiver.url,
                                           on=(NotifyOn.FAILURE, NotifyOn.RESTORE)))
    fake.smoke.fail(image=fake.new.id)
    with pytest.raises(RolloutFailed):
        run_rollout(ws, "web", version="2.0.0", clock=fake.clock)
    assert not any("rolling" in t for t in receiver.texts)  # start was not asked for
    assert any(" restored " in t for t in receiver.texts), receiver.texts
    assert " failed: " in receiver.texts[-1]


def test_a_dead_receiver_does_not_fail_the_rollout(tmp_path: Path) -> None:
    dead = Webhook(url="http://127.0.0.1:1/hook", retries=1, timeout=1.0)
    fake, ws = workspace(tmp_path, dead)
    began = time.monotonic()
    result = run_rollout(ws, "web", version="2.0.0", clock=fake.clock)
    assert len(result.replaced) == 4
    assert time.monotonic() - began < 8


def test_a_stuck_receiver_never_blocks_the_event_sink() -> None:
    release = threading.Event()
    posted: list[bytes] = []

    def stuck(url: str, body: bytes, timeout: float) -> None:
        release.wait(10)
        posted.append(body)

    notifier = Notifier([Webhook(url="http://127.0.0.1:9/h")], "lab/web", post=stuck,
                        maxsize=2)
    began = time.monotonic()
    for i in range(10):  # more than the queue holds: the rest are dropped
        notifier(RolloutStarted(rollout_id=f"r{i}", at=0.0, env="lab", role="web"))
    assert time.monotonic() - began < 0.5
    notifier.close(timeout=0.2)  # gives up: bounded
    assert time.monotonic() - began < 1.5
    release.set()


def test_retries_back_off_and_stop_at_a_4xx() -> None:
    calls: list[float] = []

    def refuse(url: str, body: bytes, timeout: float) -> None:
        calls.append(time.monotonic())
        raise PostFailed("HTTP 503", retry=len(calls) < 3)

    notifier = Notifier([Webhook(url="http://127.0.0.1:9/h", retries=5)], "lab/web",
                        post=refuse, backoff=0.05)
    notifier(RolloutStarted(rollout_id="r", at=0.0))
    notifier.close(timeout=5)
    assert len(calls) == 3  # the third answer said: do not retry
    assert calls[2] - calls[1] >= 2 * (calls[1] - calls[0]) * 0.8
    assert notifier.failed == 1 and notifier.delivered == 0


def test_a_webhook_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="notify"):
        validate_model(PoolSettings, {"notify": [{"url": "file:///etc/passwd"}]},
                       "inventories/lab/group_vars/web.yml", prefix="rollout.")
