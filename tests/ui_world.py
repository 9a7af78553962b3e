"""A dashboard over the fakes: a FakeWorld's pool and a real journal in a
temporary data directory, with a rollout that can run in a thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rollout.app.ui.sources import PoolSource
from rollout.config import Pool
from rollout.engine.controller import Controller, RolloutResult
from rollout.model import Image
from rollout.store.journal import Journal
from rollout.testing import FakeClock, FakeWorld, pool_settings


class SlowClock(FakeClock):
    """Virtual time that also passes a little real time per sleep, so a
    rollout on the fakes lasts long enough to be watched."""

    def __init__(self, ratio: float) -> None:
        super().__init__()
        self.ratio = ratio

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds * self.ratio)
        super().sleep(seconds)


class WorldSources:
    """:class:`rollout.app.ui.sources.Sources` over a FakeWorld."""

    env = "lab"

    def __init__(self, world: FakeWorld, data: Path) -> None:
        self.world = world
        self.clock = world.clock
        self.path = data / "journal.sqlite"

    def pools(self) -> list[PoolSource]:
        return [PoolSource("web", self.world.provider, self.world.lb)]

    def images(self) -> list[Image]:
        return self.world.images.list()

    def journal(self) -> Journal:
        return Journal(self.path, read_only=True)


def world(size: int = 3, ratio: float = 0.0) -> FakeWorld:
    made = FakeWorld.create(size)
    if ratio:
        clock = SlowClock(ratio)
        made.clock = made.provider.clock = made.lb.clock = made.smoke.clock = clock
    return made


def rollout(made: FakeWorld, data: Path, **settings: object) -> Controller:
    pool = Pool("lab", "web", pool_settings(pool_size=len(made.provider.live()), **settings),
                data / "web.yml")
    return Controller(pool=pool, provider=made.provider, lb=made.lb, smoke=made.smoke,
                      journal=Journal(data / "journal.sqlite", durable=False),
                      clock=made.clock, on_event=lambda e: None, workers=0)


def run_in_thread(ctl: Controller, image: Image) -> tuple[threading.Thread, list[RolloutResult]]:
    results: list[RolloutResult] = []
    thread = threading.Thread(target=lambda: results.append(ctl.run(image)), daemon=True)
    thread.start()
    return thread, results
