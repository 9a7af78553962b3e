"""A clock on virtual time for the fakes and your own tests: ``sleep`` advances it."""

from __future__ import annotations

import threading


class FakeClock:
    """Virtual time: ``sleep`` advances ``now`` at once. Thread-safe."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.slept = 0.0  # total virtual seconds slept, to check for busy loops

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._now += seconds
                self.slept += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
