"""The controller's pause ends the moment a readiness probe answers, instead of
at the next poll: on a real clock with a long poll interval, a 1-node rollout
whose probes take 0.3 s finishes in well under one poll interval."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from rollout.config import Pool
from rollout.engine.controller import Controller
from rollout.model import Image
from rollout.store.journal import Journal
from rollout.store.requests import OperatorRequest
from rollout.testing import (
    FakeClock,
    FakeLoadBalancer,
    FakeProvider,
    FakeSmokeRunner,
    image,
    pool_settings,
)


class _RealClock(FakeClock):
    """Real time (the fakes take a FakeClock; nothing here is virtual)."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def _rollout(tmp_path: Path, *, nodes: int, boot_time: float, probe_cost: float,
             poll: float, workers: int, journal: Journal | None = None,
             probes: dict[str, list[float]] | None = None,
             ) -> tuple[Controller, FakeProvider, Image]:
    """A controller on the real clock over ``nodes`` fake nodes booting for
    ``boot_time``, each readiness probe taking ``probe_cost`` seconds (and its
    start recorded in ``probes``), and the image to roll out."""
    clock = _RealClock()

    def pace(op: str, name: str) -> None:
        if op == "readiness":
            if probes is not None:
                probes.setdefault(name, []).append(time.monotonic())
            time.sleep(probe_cost)

    provider = FakeProvider(clock, boot_time=boot_time, pace=pace)
    old, new = image("web", "1.0.0", 1.0), image("web", "2.0.0", 2.0)
    lb = FakeLoadBalancer(clock, provider, rise=0, interval=0.0, drain_time=0.0)
    provider.pace = None  # seeding is not part of the rollout
    lb.seed(provider.seed(nodes, old))
    provider.pace = pace
    settings = pool_settings(pool_size=nodes, batch_size=nodes, canary=0)
    ctl = Controller(pool=Pool("lab", "web", settings, tmp_path / "web.yml"),
                     provider=provider, lb=lb, smoke=FakeSmokeRunner(clock, duration=0.0),
                     journal=journal or Journal(tmp_path / "j.sqlite", durable=False),
                     clock=clock, poll_interval=poll, workers=workers)
    return ctl, provider, new


def test_a_probe_answer_wakes_the_loop_before_the_poll_interval(tmp_path: Path) -> None:
    poll = 3.0
    ctl, provider, new = _rollout(tmp_path, nodes=1, boot_time=0.0, probe_cost=0.3,
                                  poll=poll, workers=2)  # a probe costs time, like the lab's
    started = time.monotonic()
    result = ctl.run(new)
    took = time.monotonic() - started
    assert str(result.status) == "succeeded"
    assert [n.image_id for n in provider.live()] == [new.id]
    # Waiting for the next poll after the probe would take at least 3 s.
    assert took < poll, f"the rollout took {took:.1f}s: the loop waited for its poll"


def test_a_booting_node_is_probed_at_most_once_per_poll_interval(tmp_path: Path) -> None:
    """Waking on every answer must not turn into probing back to back: with 8
    nodes booting for 1.2 s at once, every answer wakes the loop, yet each node
    gets a probe about every 0.4 s poll (back to back: one per pass)."""
    probes: dict[str, list[float]] = {}
    ctl, _, new = _rollout(tmp_path, nodes=8, boot_time=1.2, probe_cost=0.05, poll=0.4,
                           workers=8, probes=probes)
    result = ctl.run(new)
    assert str(result.status) == "succeeded"
    assert len(probes) == 8
    for name, times in probes.items():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(times) <= 6 and min(gaps) >= 0.4 * 0.9, f"{name} probed {gaps} apart"


class _CountingJournal(Journal):
    def __init__(self, path: Path) -> None:
        super().__init__(path, durable=False)
        self.reads: list[float] = []

    def open_requests(self, rollout_id: str) -> list[OperatorRequest]:
        self.reads.append(time.monotonic())
        return super().open_requests(rollout_id)


def test_operator_requests_are_read_once_per_poll_interval_not_per_pass(
        tmp_path: Path) -> None:
    """Probe answers wake the loop many times per poll interval; the query for
    pause and continue requests runs at most once per interval all the same."""
    journal = _CountingJournal(tmp_path / "j.sqlite")
    ctl, _, new = _rollout(tmp_path, nodes=8, boot_time=1.2, probe_cost=0.05, poll=0.4,
                           workers=8, journal=journal)
    passes = 0
    observe = ctl.observer.observe

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal passes
        passes += 1
        return observe(*args, **kwargs)

    ctl.observer.observe = counted  # type: ignore[method-assign]
    assert str(ctl.run(new).status) == "succeeded"
    gaps = [b - a for a, b in itertools.pairwise(journal.reads)]
    assert journal.reads and min(gaps) >= 0.4 * 0.9, f"requests read {gaps} apart"
    assert passes > 2 * len(journal.reads), (passes, len(journal.reads))  # the loop woke more
