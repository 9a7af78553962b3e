"""A small, bounded HTTP load generator that counts every failure.

It proves zero-drop rollouts in the functional tests and benchmarks: each of
``concurrency`` threads keeps one keep-alive connection and sends GETs until
stopped or until ``max_seconds``/``max_requests`` is reached. Every non-2xx
answer and every socket error is counted; nothing is retried silently.
Traffic goes only to the URL given (the lab's loopback frontend).
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadReport:
    requests: int = 0
    ok: int = 0
    non_2xx: int = 0
    errors: int = 0
    duration: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    error_kinds: Counter[str] = field(default_factory=Counter)
    bodies: Counter[str] = field(default_factory=Counter)  # first line of each 2xx body
    # With ``timeline``: (sent, answered, first line of the body or "error:KIND")
    # per request, on the wall clock (time.time()), to compare with event times.
    timeline: list[tuple[float, float, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.non_2xx + self.errors

    @property
    def rate(self) -> float:
        return self.requests / self.duration if self.duration else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "requests": self.requests, "ok": self.ok, "non_2xx": self.non_2xx,
            "errors": self.errors, "failed": self.failed, "seconds": round(self.duration, 3),
            "rate": round(self.rate, 1), "statuses": dict(self.statuses),
            "error_kinds": dict(self.error_kinds),
        }


class Load:
    """Steady load in background threads: ``start()``, then ``stop() -> LoadReport``."""

    def __init__(self, url: str, *, concurrency: int = 8, max_seconds: float = 600.0,
                 max_requests: int = 10_000_000, timeout: float = 5.0,
                 keep_bodies: bool = False, rate: float | None = None,
                 timeline: bool = False) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http:// URLs are supported (got {url!r})")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.concurrency = concurrency
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.timeout = timeout
        self.keep_bodies = keep_bodies or timeline
        self.timeline = timeline
        # Requests per second over all threads; None means as fast as possible.
        # A cap keeps the load steady and leaves CPU for the nodes on a small host.
        self.rate = rate
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._report = LoadReport()
        self._threads: list[threading.Thread] = []
        self._started = 0.0

    def start(self) -> Load:
        self._started = time.monotonic()
        for i in range(self.concurrency):
            t = threading.Thread(target=self._worker, name=f"load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> LoadReport:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout + 5)
        self._report.duration = time.monotonic() - self._started
        return self._report

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def report(self) -> LoadReport:
        return self._report

    def _worker(self) -> None:
        conn: http.client.HTTPConnection | None = None
        deadline = self._started + self.max_seconds
        interval = self.concurrency / self.rate if self.rate else 0.0
        next_at = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline:
            if interval:
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
            with self._lock:
                if self._report.requests >= self.max_requests:
                    return
                self._report.requests += 1
            sent = time.time()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                conn.request("GET", self.path)
                resp = conn.getresponse()
                body = resp.read()
                status = resp.status
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    conn.close()
                conn = None
                with self._lock:
                    self._report.errors += 1
                    self._report.error_kinds[type(exc).__name__] += 1
                    if self.timeline:
                        self._report.timeline.append(
                            (sent, time.time(), f"error:{type(exc).__name__}"))
                continue
            with self._lock:
                self._report.statuses[status] += 1
                if 200 <= status < 300:
                    self._report.ok += 1
                    if self.keep_bodies:
                        first = body.decode(errors="replace").splitlines()[:1]
                        self._report.bodies[first[0] if first else ""] += 1
                        if self.timeline:
                            self._report.timeline.append(
                                (sent, time.time(), first[0] if first else ""))
                else:
                    self._report.non_2xx += 1
        if conn is not None:
            conn.close()
