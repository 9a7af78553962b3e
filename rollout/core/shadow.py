"""The dark-launch comparison, pure: which recorded requests are replayed, and
what the new node's answers against the old node's say.

    step         rule
    -----------  -----------------------------------------------------------------
    sample       GET and HEAD only; excluded paths (prefix or glob) dropped;
                 distinct (method, target, headers), newest first, ``sample`` of them
    headers      Cookie and Authorization removed unless ``allow_headers`` names them
    compare      a mismatch when the status classes differ (2xx, 4xx...; no answer
                 is its own class), the body hashes differ (``body_hash``), or the
                 new node is slower than the old by more than ``latency_tolerance``

    recorded replayable   mismatch share          verdict
    --------------------  ----------------------  ------------------------------------
    < min_requests        (not replayed)          INCONCLUSIVE (passes through only
                                                  with ``inconclusive: pass``)
    >= min_requests       > threshold             FAILED
    >= min_requests       <= threshold            PASSED
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rollout.config_shadow import OnTooFew, ShadowSettings
from rollout.core.analysis import VerdictKind

#: The methods a replay may send: they change nothing on the server.
IDEMPOTENT = frozenset({"GET", "HEAD"})
#: Headers that carry a user's credentials: never replayed unless allowed.
SENSITIVE = frozenset({"cookie", "authorization"})
#: The name the gate's measurements are journaled under.
GATE = "shadow"


@dataclass(frozen=True)
class Request:
    """One recorded request: ``target`` is the path with its query string."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass(frozen=True)
class Response:
    """One node's answer to a replay; ``status`` None: no answer (``error`` says why)."""

    status: int | None
    latency: float
    body_hash: str = ""
    error: str = ""

    @property
    def status_class(self) -> str:
        return "no answer" if self.status is None else f"{self.status // 100}xx"

    def text(self) -> str:
        if self.status is None:
            return f"no answer ({self.error})" if self.error else "no answer"
        return f"{self.status} in {self.latency * 1000:.0f}ms"


@dataclass(frozen=True)
class Mismatch:
    """A replayed request the two nodes answered differently."""

    method: str
    target: str
    old: str
    new: str
    why: str

    def text(self) -> str:
        return f"{self.method} {self.target}: old {self.old}, new {self.new} ({self.why})"


@dataclass(frozen=True)
class ShadowTarget:
    """What a replay is about: the new node against one old in-service node,
    both at ``port`` (the pool's service port)."""

    new_node: str
    new_address: str
    old_node: str
    old_address: str
    port: int


@dataclass(frozen=True)
class ShadowVerdict:
    """The gate's verdict, with every mismatch; ``passes`` says whether the
    node may take traffic (an inconclusive gate may, if so configured)."""

    kind: VerdictKind
    recorded: int
    replayed: int
    mismatches: tuple[Mismatch, ...]
    reason: str
    passes: bool

    @property
    def share(self) -> float:
        return len(self.mismatches) / self.replayed if self.replayed else 0.0


def excluded(path: str, patterns: Iterable[str]) -> bool:
    """Is ``path`` excluded by a prefix or a glob of ``patterns``?"""
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            if fnmatch.fnmatchcase(path, pattern):
                return True
        elif path == pattern or path.startswith(pattern.rstrip("/") + "/") or (
                pattern.endswith("/") and path.startswith(pattern)):
            return True
    return False


def strip(headers: Iterable[tuple[str, str]], allow: Iterable[str] = ()) -> tuple[
        tuple[str, str], ...]:
    """``headers`` without the sensitive ones ``allow`` does not name."""
    allowed = {a.lower() for a in allow}
    return tuple((k, v) for k, v in headers
                 if k.lower() not in SENSITIVE or k.lower() in allowed)


def replayable(recorded: Iterable[Request], settings: ShadowSettings) -> list[Request]:
    """The recorded requests a replay may send, headers stripped, newest first,
    each distinct request once."""
    seen: set[Request] = set()
    out: list[Request] = []
    for req in reversed(list(recorded)):
        method = req.method.upper()
        if method not in IDEMPOTENT or excluded(req.path, settings.exclude):
            continue
        clean = Request(method, req.target, strip(req.headers, settings.allow_headers))
        if clean not in seen:
            seen.add(clean)
            out.append(clean)
    return out


def choose(recorded: Sequence[Request], settings: ShadowSettings) -> tuple[Request, ...]:
    """The sample to replay: at most ``settings.sample`` replayable requests."""
    return tuple(replayable(recorded, settings)[: settings.sample])


def compare(req: Request, old: Response, new: Response,
            settings: ShadowSettings) -> Mismatch | None:
    """The mismatch between the two answers to ``req``, if any."""
    why = ""
    if old.status_class != new.status_class:
        why = f"status {old.status_class} became {new.status_class}"
    elif settings.body_hash and req.method != "HEAD" and old.body_hash != new.body_hash:
        why = "the body differs"
    elif new.latency - old.latency > settings.latency_tolerance:
        why = (f"{(new.latency - old.latency) * 1000:.0f}ms slower, more than "
               f"latency_tolerance {settings.latency_tolerance * 1000:.0f}ms")
    if not why:
        return None
    return Mismatch(req.method, req.target, old.text(), new.text(), why)


def too_few(recorded: int, settings: ShadowSettings) -> ShadowVerdict:
    """The verdict when fewer than ``min_requests`` replayable requests were recorded."""
    passes = settings.inconclusive is OnTooFew.PASS
    tail = ("inconclusive: pass lets the node through" if passes
            else "the node is refused (set rollout.shadow.inconclusive: pass to let it through)")
    reason = (f"shadow gate inconclusive: {recorded} replayable requests recorded, fewer "
              f"than min_requests {settings.min_requests}; {tail}")
    return ShadowVerdict(VerdictKind.INCONCLUSIVE, recorded, 0, (), reason, passes)


def judge(recorded: int, pairs: Sequence[tuple[Request, Response, Response]],
          settings: ShadowSettings) -> ShadowVerdict:
    """The verdict on ``pairs`` (request, old answer, new answer) replayed out
    of ``recorded`` replayable requests."""
    if recorded < settings.min_requests or not pairs:
        return too_few(recorded, settings)
    found = tuple(m for req, old, new in pairs
                  if (m := compare(req, old, new, settings)) is not None)
    share = len(found) / len(pairs)
    if share > settings.threshold:
        first = found[0]
        reason = (f"shadow gate failed: {len(found)} of {len(pairs)} replayed requests "
                  f"mismatched ({share:.0%}, more than threshold {settings.threshold:.0%}); "
                  f"first: {first.text()}")
        return ShadowVerdict(VerdictKind.FAILED, recorded, len(pairs), found, reason, False)
    reason = (f"shadow gate passed: {len(found)} of {len(pairs)} replayed requests "
              f"mismatched (threshold {settings.threshold:.0%})")
    return ShadowVerdict(VerdictKind.PASSED, recorded, len(pairs), found, reason, True)


__all__ = ["GATE", "IDEMPOTENT", "SENSITIVE", "Mismatch", "Request", "Response",
           "ShadowTarget", "ShadowVerdict", "choose", "compare", "excluded", "judge",
           "replayable", "strip", "too_few"]
