"""SIGTERM while a readiness probe or a smoke test's HTTP check hangs (issue
14, item 8): the controller stops within 1 s, the stop is journaled, and
``resume`` finishes the rollout.

The fakes stand in for the pool, except the new node's readiness probe, or its
smoke test: a real HTTP GET (total deadline 10 s) against a loopback server
that answers one byte a second, so it hangs for as long as the controller
would let it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rollout.config import HttpCheck, Pool
from rollout.core.state import RolloutStatus
from rollout.drivers.probe import ProbeError, http_get
from rollout.drivers.smoke import http_check
from rollout.engine.controller import Controller
from rollout.engine.flights import ABANDONED
from rollout.errors import Interrupted
from rollout.model import Image, Node, Readiness, SmokeResult
from rollout.store.journal import Journal
from rollout.testing import FakeProvider, FakeSmokeRunner, FakeWorld, pool_settings
from tests.slow_server import SlowServer

PROBE_DEADLINE = 10.0


class SlowProbes(FakeProvider):
    """A FakeProvider whose new nodes' readiness is a real, slow HTTP probe
    while ``slow`` is set."""

    def __init__(self, base: FakeProvider, server: SlowServer) -> None:
        self.__dict__.update(base.__dict__)
        self.server = server
        self.slow = threading.Event()
        self.hanging = threading.Event()  # a probe is inside the slow GET

    def readiness(self, node: Node) -> Readiness:
        if self.slow.is_set() and node.image_id != "":
            old = node.name.startswith("web-base")
            if not old:
                self.hanging.set()
                try:
                    http_get(self.server.host, self.server.port, "/", PROBE_DEADLINE)
                except ProbeError as exc:
                    return Readiness(False, str(exc))
        return super().readiness(node)


def test_sigterm_while_a_probe_hangs_stops_within_a_second_then_resume_finishes(
        tmp_path: Path) -> None:
    world = FakeWorld.create(4)
    with SlowServer() as server:
        provider = SlowProbes(world.provider, server)
        world.lb.provider = provider
        provider.slow.set()
        stop = threading.Event()
        pool = Pool("lab", "web", pool_settings(pool_size=4), tmp_path / "web.yml")
        journal = Journal(tmp_path / "journal.sqlite", durable=False)
        ctl = Controller(pool=pool, provider=provider, lb=world.lb, smoke=world.smoke,
                         journal=journal, clock=world.clock, workers=2, poll_interval=0.05,
                         stop_requested=stop.is_set)
        stopped_at: list[float] = []

        def signal_when_hanging() -> None:
            assert provider.hanging.wait(30), "no probe reached the slow server"
            time.sleep(0.3)  # well inside the probe's 10 s
            stopped_at.append(time.monotonic())
            stop.set()  # what the CLI's SIGTERM handler does

        signaller = threading.Thread(target=signal_when_hanging, daemon=True)
        signaller.start()
        with pytest.raises(Interrupted):
            ctl.run(world.new)
        took = time.monotonic() - stopped_at[0]
        signaller.join(timeout=5)
        assert took < 1.0, f"the controller took {took:.2f}s to stop"
        (state,) = journal.rollouts("lab", "web")
        assert state.status is RolloutStatus.INTERRUPTED
        assert any(e.kind == "rollout_finished" for e in journal.events(state.id))
        # Nothing half-done: the interrupted replacement was restored.
        assert world.problems(4, world.old.id) == []
        provider.slow.clear()
        result = Controller(pool=pool, provider=provider, lb=world.lb, smoke=world.smoke,
                            journal=journal, clock=world.clock, workers=2,
                            poll_interval=0.05).resume()
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.problems(4, world.new.id) == []


class SlowSmoke(FakeSmokeRunner):
    """A smoke gate whose HTTP check is a real GET against the slow server."""

    def __init__(self, base: FakeSmokeRunner, server: SlowServer) -> None:
        self.__dict__.update(base.__dict__)
        self.server = server
        self.slow = threading.Event()
        self.hanging = threading.Event()

    def run(self, node: Node, image: Image) -> SmokeResult:
        if self.slow.is_set():
            self.hanging.set()
            error = http_check(self.server.host, self.server.port, HttpCheck(),
                               PROBE_DEADLINE)
            return SmokeResult(error is None, PROBE_DEADLINE, error or "passed")
        return super().run(node, image)


def test_sigterm_while_a_smoke_check_hangs_stops_within_a_second_then_resume_finishes(
        tmp_path: Path) -> None:
    world = FakeWorld.create(4)
    with SlowServer() as server:
        smoke = SlowSmoke(world.smoke, server)
        smoke.slow.set()
        stop = threading.Event()
        pool = Pool("lab", "web", pool_settings(pool_size=4), tmp_path / "web.yml")
        journal = Journal(tmp_path / "journal.sqlite", durable=False)
        ctl = Controller(pool=pool, provider=world.provider, lb=world.lb, smoke=smoke,
                         journal=journal, clock=world.clock, workers=2, poll_interval=0.05,
                         stop_requested=stop.is_set)
        stopped_at: list[float] = []

        def signal_when_hanging() -> None:
            assert smoke.hanging.wait(30), "no smoke test reached the slow server"
            time.sleep(0.3)
            stopped_at.append(time.monotonic())
            stop.set()

        threading.Thread(target=signal_when_hanging, daemon=True).start()
        with pytest.raises(Interrupted):
            ctl.run(world.new)
        took = time.monotonic() - stopped_at[0]
        assert took < 1.0, f"the controller took {took:.2f}s to stop"
        (state,) = journal.rollouts("lab", "web")
        assert state.status is RolloutStatus.INTERRUPTED
        smokes = [s for s in journal.steps(state.id) if s.kind == "smoke"]
        assert smokes and smokes[-1].error == ABANDONED and not smokes[-1].ok
        assert world.problems(4, world.old.id) == []  # the new node is gone again
        smoke.slow.clear()
        result = Controller(pool=pool, provider=world.provider, lb=world.lb, smoke=smoke,
                            journal=journal, clock=world.clock, workers=2,
                            poll_interval=0.05).resume()
    assert result.status is RolloutStatus.SUCCEEDED
    assert world.problems(4, world.new.id) == []
