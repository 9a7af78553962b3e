"""Phoenix replacement: which nodes are old enough to be replaced, right now.

``rollout phoenix --role R --max-age 7d`` replaces nodes older than the age with
fresh nodes from the image the pool already runs. This module is the pure
decision: the nodes, the clock, the budget, the maintenance window and the
times of earlier phoenix replacements go in; a :class:`PhoenixDecision` comes
out. The controller then replaces ``decision.replace`` through the same safe
path as a rollout. Because the decision depends only on the observed world, a
run from cron or a timer is idempotent: nodes replaced by an earlier (or
crashed) run are young and are skipped, and they count against the budget.

Rules, in order:

1. Only RUNNING nodes are considered; PENDING, STOPPED and GONE nodes are
   skipped (they belong to a rollout in flight or are a standby).
2. The running nodes must all run one image, the one the replacements will
   use. A mix means an unfinished rollout: the run is not allowed.
3. A node is due when its age (``now - created_at``) is strictly greater
   than ``max_age``; ``0s`` makes every running node due (a full refresh).
   Due nodes are taken oldest first (ties by name).
4. Outside the maintenance window nothing is allowed.
5. The budget caps how many due nodes are taken: ``per_run`` per invocation,
   ``per_day`` per *rolling 24 hours* (not per calendar day, so a window that
   spans midnight cannot spend two days' budget in one night). ``history``
   holds the times of earlier phoenix replacements of this pool.

Maintenance window grammar (case-insensitive; several spans joined with ``;``)::

    WINDOW := SPAN (";" SPAN)*
    SPAN   := DAYS " " HH:MM "-" HH:MM [" " TZ]
    DAYS   := "daily" | DAY ("-" DAY)? ("," DAY ("-" DAY)?)*
    DAY    := mon | tue | wed | thu | fri | sat | sun
    TZ     := UTC (the default) or an IANA zone such as Europe/Berlin

Examples: ``"Mon-Fri 02:00-04:00 UTC"``, ``"daily 01:00-03:00"``,
``"Sat,Sun 22:00-06:00 Europe/Berlin"``. An end at or before the start means
the span runs past midnight into the next day; the DAYS name the day it
opens. ``24:00`` is allowed as an end.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rollout.core.state import Phase, RolloutState
from rollout.durations import format_duration, parse_duration
from rollout.errors import ConfigError
from rollout.model import Member, Node, NodeState

DAY_SECONDS = 86400.0
#: ``RolloutState.kind`` of the rollouts a phoenix run starts (its budget counts them).
KIND = "phoenix"
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(
    r"^(?P<days>\S+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})(?:\s+(?P<tz>\S+))?$"
)


@dataclass(frozen=True)
class PhoenixBudget:
    """At most ``per_run`` replacements per invocation and ``per_day`` in any
    rolling 24 hours. ``None`` means no cap."""

    per_run: int | None = None
    per_day: int | None = None

    def __post_init__(self) -> None:
        for option, value in (("--max-per-run", self.per_run), ("--max-per-day", self.per_day)):
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ConfigError(
                    f"{option}: a budget must be a whole number of nodes ≥ 1 (got {value!r})",
                    hint=f"leave {option} out for no cap",
                )


@dataclass(frozen=True)
class WindowSpan:
    """One span: on ``days`` (0 = Monday), from ``start`` to ``end`` minutes
    after local midnight; ``end <= start`` runs past midnight."""

    days: frozenset[int]
    start: int
    end: int
    tz: str


@dataclass(frozen=True)
class MaintenanceWindow:
    """When phoenix may replace nodes; build it with :func:`parse_window`."""

    text: str
    spans: tuple[WindowSpan, ...]

    def closes_at(self, now: float) -> float | None:
        """The time the open span containing ``now`` closes, or None when closed."""
        ends = [end for span in self.spans for start, end in _occurrences(span, now) if
                start <= now < end]
        return max(ends) if ends else None

    def is_open(self, now: float) -> bool:
        return self.closes_at(now) is not None

    def next_open(self, now: float) -> float | None:
        """When the window next opens after ``now`` (None if it never does)."""
        starts = [start for span in self.spans for start, _ in _occurrences(span, now, ahead=8)
                  if start > now]
        return min(starts) if starts else None

    def __str__(self) -> str:
        return self.text


def _occurrences(span: WindowSpan, now: float, ahead: int = 1) -> list[tuple[float, float]]:
    """(start, end) times of ``span`` opening from yesterday to ``ahead`` days on.
    Dates are walked in the span's zone so that DST shifts land right."""
    zone = ZoneInfo(span.tz)
    today = datetime.fromtimestamp(now, zone).date()
    found = []
    for offset in range(-1, ahead + 1):
        day = today + timedelta(days=offset)
        if day.weekday() not in span.days:
            continue
        midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
        start = midnight + timedelta(minutes=span.start)
        length = span.end - span.start if span.end > span.start else span.end + 1440 - span.start
        end = start + timedelta(minutes=length)
        found.append((start.timestamp(), end.timestamp()))
    return found


def _minutes(value: str, option: str, text: str, *, is_end: bool) -> int:
    hours, minutes = (int(part) for part in value.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not is_end)):
        raise ConfigError(
            f"{option}: {value!r} in {text!r} is not a time of day",
            hint="write times as HH:MM from 00:00 to 23:59 (24:00 only as an end)",
        )
    return hours * 60 + minutes


def _days(value: str, option: str, text: str) -> frozenset[int]:
    if value == "daily":
        return frozenset(range(7))
    days: set[int] = set()
    for part in value.split(","):
        first, _, last = part.partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise ConfigError(
                f"{option}: {part!r} in {text!r} is not a day or range of days",
                hint="use daily, a day such as Mon, a range such as Mon-Fri, or a list Sat,Sun",
            )
        lo, hi = _DAYS.index(first), _DAYS.index(last or first)
        # Fri-Mon wraps over the weekend.
        span = range(lo, hi + 1) if lo <= hi else [*range(lo, 7), *range(0, hi + 1)]
        days.update(span)
    return frozenset(days)


def parse_window(text: str, option: str = "--window") -> MaintenanceWindow:
    """Parse a maintenance window (grammar in the module docstring).

    Raises ConfigError naming ``option`` when the text does not parse.
    """
    spans = []
    for raw in text.split(";"):
        part = " ".join(raw.strip().split())
        match = _SPAN.match(part.lower())
        if not match:
            raise ConfigError(
                f"{option}: {raw.strip()!r} is not a maintenance window",
                hint="write DAYS HH:MM-HH:MM [TZ], e.g. 'Mon-Fri 02:00-04:00 UTC' or "
                "'daily 01:00-03:00'",
            )
        tz = "UTC"
        if match.group("tz"):
            # Zone names are case-sensitive on disk; find the original spelling.
            tz = part.split()[-1]
            if tz.lower() == "utc":
                tz = "UTC"
            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(
                    f"{option}: unknown time zone {tz!r} in {raw.strip()!r}",
                    hint="use UTC or an IANA zone name such as Europe/Berlin",
                ) from None
        start = _minutes(match.group("start"), option, text, is_end=False)
        end = _minutes(match.group("end"), option, text, is_end=True)
        if start == end:
            raise ConfigError(
                f"{option}: {raw.strip()!r} opens and closes at the same time",
                hint="for a window open all day write 'daily 00:00-24:00'",
            )
        spans.append(WindowSpan(_days(match.group("days"), option, text), start, end, tz))
    return MaintenanceWindow(text=text.strip(), spans=tuple(spans))


def parse_max_age(value: str, option: str = "--max-age") -> float:
    """Seconds from a duration such as ``7d`` (``0s`` means every node is due);
    ConfigError naming ``option``."""
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ConfigError(
            f"{option}: {exc}", hint="use a duration such as 7d, 36h or 90m"
        ) from None
    return seconds


class PhoenixStatus(StrEnum):
    """How a phoenix run ended (``rollout phoenix`` exits 0 for all three)."""

    SKIPPED = "skipped"  # try again later: locked, unfinished, unhealthy, window, budget
    NOTHING_DUE = "nothing_due"
    REPLACED = "replaced"


@dataclass(frozen=True)
class Skipped:
    node: str
    reason: str


@dataclass(frozen=True)
class PhoenixDecision:
    """What a phoenix run should do now.

    ``replace`` lists the nodes to replace, oldest first; it is empty when
    ``allowed`` is False (``reason`` says why) or when nothing is due.
    ``image_id`` is the image the replacements use: the one the pool runs.
    ``closes_at`` is when the maintenance window closes, so the controller
    can stop starting new replacements then.
    """

    allowed: bool
    reason: str
    replace: tuple[Node, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    image_id: str | None = None
    closes_at: float | None = None
    deferred: tuple[str, ...] = field(default=())  # due, but over the budget

    def to_json(self) -> dict[str, object]:
        return {
            "event": "phoenix_plan",
            "allowed": self.allowed,
            "reason": self.reason,
            "image": self.image_id,
            "replace": [n.name for n in self.replace],
            "skipped": [{"node": s.node, "reason": s.reason} for s in self.skipped],
            "deferred": list(self.deferred),
            "closes_at": self.closes_at,
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M UTC")


def select_for_phoenix(
    nodes: Sequence[Node],
    *,
    now: float,
    max_age: float,
    budget: PhoenixBudget | None = None,
    window: MaintenanceWindow | None = None,
    history: Sequence[float] = (),
) -> PhoenixDecision:
    """Decide which nodes a phoenix run replaces now (rules in the module docstring)."""
    if max_age < 0:
        raise ConfigError(f"--max-age: the age must be zero or more (got {max_age!r} s)")
    skipped: list[Skipped] = []
    running: list[Node] = []
    for node in sorted(nodes, key=lambda n: n.name):
        if node.state is NodeState.RUNNING:
            running.append(node)
        else:
            skipped.append(Skipped(node.name, f"not running ({node.state.value})"))

    images = sorted({n.image_id for n in running})
    if len(images) > 1:
        return PhoenixDecision(
            allowed=False,
            reason=f"the pool runs several images ({', '.join(images)}): a rollout is "
            "unfinished; finish, resume or abort it before phoenix replaces nodes",
            skipped=tuple(skipped),
        )
    image_id = images[0] if images else None

    due: list[Node] = []
    for node in sorted(running, key=lambda n: (n.created_at, n.name)):
        age = now - node.created_at
        if age > max_age:
            due.append(node)
        else:
            skipped.append(Skipped(
                node.name,
                f"age {format_duration(max(age, 0.0))} is within max-age "
                f"{format_duration(max_age)}",
            ))

    def refuse(reason: str) -> PhoenixDecision:
        return PhoenixDecision(allowed=False, reason=reason, skipped=tuple(skipped),
                               image_id=image_id, deferred=tuple(n.name for n in due))

    if not due:
        return PhoenixDecision(allowed=True, reason="no node is older than the max-age",
                               skipped=tuple(skipped), image_id=image_id)

    closes_at = None
    if window is not None:
        closes_at = window.closes_at(now)
        if closes_at is None:
            opens = window.next_open(now)
            when = f"; it opens next at {_iso(opens)}" if opens is not None else ""
            return refuse(f"outside the maintenance window {window}{when}")

    take = len(due)
    if budget is not None and budget.per_run is not None:
        take = min(take, budget.per_run)
    if budget is not None and budget.per_day is not None:
        recent = sorted(t for t in history if now - DAY_SECONDS < t <= now)
        left = budget.per_day - len(recent)
        if left <= 0:
            # The budget frees up as the oldest replacement leaves the 24 h span.
            frees = recent[len(recent) - budget.per_day] + DAY_SECONDS
            return refuse(
                f"the per-day budget is spent: {len(recent)} of {budget.per_day} nodes "
                f"replaced in the last 24 h; the next one is allowed at {_iso(frees)}"
            )
        take = min(take, left)

    chosen, over = due[:take], due[take:]
    reason = f"{len(chosen)} of {len(due)} due nodes will be replaced"
    if over:
        reason += f"; {len(over)} left for a later run by the budget"
    return PhoenixDecision(
        allowed=True, reason=reason, replace=tuple(chosen), skipped=tuple(skipped),
        image_id=image_id, closes_at=closes_at, deferred=tuple(n.name for n in over),
    )


def pool_health_problem(nodes: Sequence[Node], members: Sequence[Member], floor: int) -> str | None:
    """Why the pool is too unhealthy for phoenix to touch, or None when it is fine.

    Phoenix is routine maintenance: it only runs when every running node is in
    service and the in-service count is at or above the floor. Anything else is
    a problem for a person, not for a cron job.
    """
    in_service = {m.target for m in members if m.in_service}
    running = [n for n in nodes if n.state is NodeState.RUNNING]
    out = sorted(n.name for n in running if n.lb_target not in in_service)
    count = sum(1 for n in running if n.lb_target in in_service)
    if count < floor:
        named = f" (out of service: {', '.join(out)})" if out else ""
        return (f"only {count} nodes are in service, below the floor of {floor}{named}; "
                "phoenix skips an unhealthy pool: check `rollout lab status`")
    if out:
        return (f"nodes not in service: {', '.join(out)}; phoenix skips an unhealthy pool: "
                f"fix them or use `rollout replace NODE`")
    return None


def phoenix_history(rollouts: Sequence[RolloutState], now: float) -> list[float]:
    """When earlier phoenix runs finished replacing nodes, within the last day
    (the ``history`` of :func:`select_for_phoenix`)."""
    times = []
    for state in rollouts:
        if state.kind != KIND:
            continue
        for rep in state.replacements:
            if rep.phase is Phase.DONE:
                at = rep.entered.get(Phase.DONE.value, state.finished_at or state.started_at)
                if now - DAY_SECONDS < at <= now:
                    times.append(at)
    return sorted(times)
