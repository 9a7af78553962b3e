"""Realistic timing for the fakes: seeded lognormal latencies with stragglers,
and API throttling answered the way the AWS driver's stack answers it.

    latencies = Latencies({"boot": Lognormal(0.6, 0.25, 0.02, 4.0)}, seed=1)
    provider = FakeProvider(clock, boot=lambda name: latencies.draw("boot", name),
                            pace=Pacer(latencies, clock.sleep, Throttle(0.02, seed=1)))

Each draw is seeded by (seed, what, who, how many draws of that key before),
so the latency a node gets does not depend on which thread asked first, and
:meth:`Latencies.last` gives the value a node actually got (a bench's
theoretical time is computed from those).

:class:`Throttle` models an API that answers a share of attempts with
``Throttling``: the attempt is retried after botocore's own jittered
exponential backoff (its standard retry mode, throttling base 1 s), up to
``max_attempts`` attempts as the AWS clients are configured; when every
attempt was throttled the error goes through the AWS driver's own
translation (:func:`rollout.backends.aws.session.translate`), which makes it
a :class:`~rollout.errors.TransientError`, and the controller handles it as
it handles a real one: an observation is tried again on the next pass, an
action is retried by the core with its backoff.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from botocore.exceptions import ClientError
from botocore.retries.standard import ExponentialBackoff, RetryContext

from rollout.backends.aws.session import translate


@dataclass(frozen=True)
class Lognormal:
    """``median`` seconds times ``exp(N(0, sigma))``; a ``stragglers`` share of
    draws is ``slow`` times longer (a node on a busy host, a slow API call)."""

    median: float
    sigma: float = 0.0
    stragglers: float = 0.0
    slow: float = 1.0

    def draw(self, rng: random.Random) -> float:
        value = self.median * math.exp(rng.gauss(0.0, self.sigma)) if self.sigma else self.median
        if self.stragglers and rng.random() < self.stragglers:
            value *= self.slow
        return value

    def __str__(self) -> str:
        text = f"lognormal(median {self.median:g}s, sigma {self.sigma:g}"
        if self.stragglers:
            text += f", {self.stragglers:.0%} stragglers x{self.slow:g}"
        return text + ")"


class Latencies:
    """Seeded draws per (what, who); a kind without a model takes 0 s."""

    def __init__(self, models: Mapping[str, Lognormal], seed: int = 0) -> None:
        self.models = dict(models)
        self.seed = seed
        self._count: dict[tuple[str, str], int] = {}
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def draw(self, what: str, who: str) -> float:
        model = self.models.get(what)
        if model is None:
            return 0.0
        with self._lock:
            n = self._count.get((what, who), 0)
            self._count[(what, who)] = n + 1
        value = model.draw(random.Random(f"{self.seed}:{what}:{who}:{n}"))
        with self._lock:
            self._last[(what, who)] = value
        return value

    def last(self, what: str, who: str) -> float:
        """The latest draw of ``what`` for ``who`` (0 if none): what it got."""
        with self._lock:
            return self._last.get((what, who), 0.0)

    def draws(self, what: str) -> int:
        with self._lock:
            return sum(n for (w, _), n in self._count.items() if w == what)


class _Throttled:
    """botocore's backoff asks whether the error was throttling: it was."""

    def is_throttling_error_from_context(self, context: RetryContext) -> bool:
        return True


class Throttle:
    """A ``rate`` share of API attempts answered ``Throttling`` (see the module doc)."""

    def __init__(self, rate: float, *, seed: int = 0, max_attempts: int = 5) -> None:
        self.rate = rate
        self.max_attempts = max_attempts
        self._rng = random.Random(f"throttle:{seed}")
        self._lock = threading.Lock()
        self._backoff = ExponentialBackoff(random=self._random,
                                           throttling_detector=_Throttled())
        self.attempts = 0
        self.throttled = 0  # attempts answered Throttling
        self.raised = 0  # calls that failed after every attempt
        self.backoff = 0.0  # seconds slept between attempts

    def _random(self) -> float:
        with self._lock:
            return self._rng.random()

    def call(self, op: str, who: str, sleep: Callable[[float], None]) -> None:
        """Pass, or raise the AWS driver's TransientError for ``op`` of ``who``."""
        for attempt in range(1, self.max_attempts + 1):
            throttled = self._random() < self.rate
            with self._lock:
                self.attempts += 1
                self.throttled += throttled
            if not throttled:
                return
            if attempt < self.max_attempts:
                delay = self._backoff.delay_amount(RetryContext(attempt_number=attempt))
                with self._lock:
                    self.backoff += delay
                sleep(delay)
        with self._lock:
            self.raised += 1
        error = ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, op)
        raise translate(error, op, who)


class Pacer:
    """The ``pace`` hook of the fakes: called as ``pace(op, who)`` before each
    driver call, it throttles (if given) and then takes the call's latency."""

    def __init__(self, latencies: Latencies, sleep: Callable[[float], None],
                 throttle: Throttle | None = None, throttled_ops: frozenset[str] | None = None,
                 ) -> None:
        self.latencies = latencies
        self.sleep = sleep
        self.throttle = throttle
        self.throttled_ops = throttled_ops  # None: every op

    def __call__(self, op: str, who: str) -> None:
        if self.throttle is not None and (self.throttled_ops is None
                                          or op in self.throttled_ops):
            self.throttle.call(op, who, self.sleep)
        seconds = self.latencies.draw(op, who)
        if seconds > 0:
            self.sleep(seconds)
