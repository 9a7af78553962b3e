"""FakeLoadBalancer: a backend whose health follows a FakeProvider's nodes."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rollout.errors import DriverError
from rollout.model import (
    Admin,
    Health,
    LbCapacity,
    Member,
    Node,
)
from rollout.testing.clock import FakeClock
from rollout.testing.fake_provider import FakeProvider
from rollout.testing.rules import FailureRule, take_rule


@dataclass
class _Slot:
    slot: str
    target: str
    node: str
    image: str
    admin: Admin
    checks_since: float
    last_health: Health = Health.UNKNOWN
    drained_at: float = 0.0
    drain_from: int = 0
    stuck: int | None = None
    total: float = 0.0
    errors: float = 0.0
    check_downs: int = 0
    counted_until: float = 0.0
    weight: int = 100
    drain_time: float = 0.0


#: The weight of a member nobody re-weighted (like a server line's ``weight``).
NORMAL_WEIGHT = 100


class FakeLoadBalancer:
    """LB members whose health follows the provider's readiness after ``rise``
    checks; drained sessions fall to 0 over ``drain_time``; in-service members
    serve ``rps`` requests per virtual second, a share of them 5xx.

    For timing runs (see :mod:`rollout.testing.latency`): ``drain`` gives each
    drained node its own drain time (by node name; default ``drain_time``, an
    ELBv2 target's deregistration delay), checks of a new member start
    ``registration_delay`` seconds after it was added (ELBv2's registration),
    and ``pace(op, name)`` is called before every call, outside the fake's
    lock, to take the call's latency or raise its throttling."""

    def __init__(
        self, clock: FakeClock, provider: FakeProvider, *, rise: int = 2,
        interval: float = 0.5, drain_time: float = 0.5, sessions: int = 2, rps: float = 10.0,
        slots: int | None = None, drain: Callable[[str], float] | None = None,
        registration_delay: float = 0.0, pace: Callable[[str, str], None] | None = None,
    ) -> None:
        self.clock = clock
        self.provider = provider
        self.rise = rise
        self.interval = interval
        self.drain_time = drain_time
        self.sessions = sessions
        self.rps = rps
        self.slots = slots
        self.drain = drain
        self.registration_delay = registration_delay
        self.pace = pace
        self._members: dict[str, _Slot] = {}
        self._rules: list[FailureRule] = []
        self._error_rates: dict[str, float] = {}
        self._lock = threading.RLock()
        self._next = 0

    def capacity(self) -> LbCapacity | None:
        """``slots`` when given (like HAProxy's), else unbounded."""
        return LbCapacity(self.slots, "slots") if self.slots is not None else None

    def seed(self, nodes: list[Node]) -> None:
        """Put ``nodes`` in the pool, READY and already UP."""
        with self._lock:
            for node in nodes:
                slot = self._new_slot(node)
                slot.checks_since = -math.inf
                slot.last_health = Health.UP

    def fail(
        self, op: str, *, times: int | None = 1, target: str | None = None,
        error: str = "injected socket error", raises: type[Exception] = DriverError,
    ) -> None:
        """Make ``op`` (members, add, set_admin, remove, set_weight) raise ``raises``."""
        with self._lock:
            self._rules.append(FailureRule(op, times, target, None, error, raises))

    def stuck_sessions(self, target: str, sessions: int) -> None:
        """The member keeps ``sessions`` open forever (a drain that never ends)."""
        with self._lock:
            self._members[target].stuck = sessions

    def set_error_rate(self, key: str, rate: float) -> None:
        """Share of 5xx responses for members of an image id or a node name."""
        with self._lock:
            self._error_rates[key] = rate

    def flap(self, target: str, times: int = 1) -> None:
        with self._lock:
            self._members[target].check_downs += times

    # --- the LoadBalancer protocol ---------------------------------------------------

    def members(self) -> list[Member]:
        self._pace("members", "")
        with self._lock:
            self._check("members", "")
            # One clock read and one provider lookup for all members (the
            # answers are those of per-member calls at this instant).
            now = self.clock.now()
            slots = list(self._members.values())
            since = self.provider.ready_since_each([s.node for s in slots], now)
            out = [self._view(s, now, since[s.node]) for s in slots]
            if self.slots is not None:
                used = {m.slot for m in out}
                for k in range(1, self.slots + 1):
                    if f"node{k}" not in used:
                        out.append(Member(f"node{k}", "", Admin.MAINT, Health.UNKNOWN))
            return out

    def add(self, node: Node) -> Member:
        self._pace("add", node.name)
        with self._lock:
            self._check("add", node.lb_target)
            slot = self._members.get(node.lb_target)
            if slot is None:
                if self.slots is not None and len(self._members) >= self.slots:
                    raise DriverError(f"fake LB: no free slot for {node.name}")
                slot = self._new_slot(node)
            return self._member(slot)

    def set_admin(self, node: Node, admin: Admin) -> None:
        self._pace("set_admin", node.name)
        with self._lock:
            self._check("set_admin", node.lb_target)
            slot = self._members.get(node.lb_target)
            if slot is None:
                raise DriverError(f"fake LB: no member for {node.name} ({node.lb_target})")
            before = self._member(slot)
            if admin is Admin.DRAIN and slot.admin is not Admin.DRAIN:
                slot.drained_at = self.clock.now()
                slot.drain_from = before.sessions
                slot.drain_time = self._drain_time(slot)
            if admin is Admin.READY and slot.admin is Admin.MAINT:
                slot.checks_since = self.clock.now()  # back from MAINT: checks start over
                slot.last_health = Health.UNKNOWN
            slot.admin = admin

    def stage(self, node: Node) -> Member:
        """As :meth:`add`, but the member is DRAIN (checked, no traffic)."""
        self._pace("stage", node.name)
        with self._lock:
            self._check("stage", node.lb_target)
            slot = self._members.get(node.lb_target)
            if slot is None:
                if self.slots is not None and len(self._members) >= self.slots:
                    raise DriverError(f"fake LB: no free slot for {node.name}")
                slot = self._new_slot(node)
                slot.admin = Admin.DRAIN
                slot.drained_at = self.clock.now()
                slot.drain_time = self._drain_time(slot)
            elif slot.admin is Admin.MAINT:
                slot.admin = Admin.DRAIN
            return self._member(slot)

    def switch(self, ready: Sequence[Node], drain: Sequence[Node]) -> None:
        """All at once, under one lock (as HAProxy's one-line batch)."""
        self._pace("switch", "")
        with self._lock:
            self._check("switch", "")
            for node in ready:
                slot = self._members.get(node.lb_target)
                if slot is None:
                    raise DriverError(f"fake LB: no member for {node.name} ({node.lb_target})")
                slot.admin = Admin.READY
            for node in drain:
                slot = self._members.get(node.lb_target)
                if slot is not None and slot.admin is Admin.READY:
                    slot.admin = Admin.DRAIN
                    slot.drained_at = self.clock.now()
                    slot.drain_from = self._member(slot).sessions
                    slot.drain_time = self._drain_time(slot)

    def remove(self, node: Node) -> None:
        self._pace("remove", node.name)
        with self._lock:
            self._check("remove", node.lb_target)
            self._members.pop(node.lb_target, None)

    def set_weight(self, node: Node, weight: int | None) -> None:
        """Members weigh :data:`NORMAL_WEIGHT` unless told otherwise."""
        self._pace("set_weight", node.name)
        with self._lock:
            self._check("set_weight", node.lb_target)
            slot = self._members.get(node.lb_target)
            if slot is None:
                raise DriverError(f"fake LB: no member for {node.name} ({node.lb_target})")
            slot.weight = NORMAL_WEIGHT if weight is None else weight

    # --- internals -------------------------------------------------------------------

    def _pace(self, op: str, name: str) -> None:
        if self.pace is not None:
            self.pace(op, name)

    def _drain_time(self, slot: _Slot) -> float:
        return self.drain(slot.node) if self.drain is not None else self.drain_time

    def _new_slot(self, node: Node) -> _Slot:
        used = {s.slot for s in self._members.values()}
        k = 1
        while f"node{k}" in used:
            k += 1
        now = self.clock.now()
        slot = _Slot(f"node{k}", node.lb_target, node.name, node.image_id, Admin.READY,
                     now + self.registration_delay, counted_until=now,
                     drain_time=self.drain_time)
        self._members[node.lb_target] = slot
        return slot

    def _health(self, slot: _Slot, now: float, since: float | None) -> Health:
        if since is None:
            health = Health.DOWN if slot.last_health is not Health.UNKNOWN else Health.UNKNOWN
        elif now >= max(since, slot.checks_since) + self.rise * self.interval:
            health = Health.UP
        else:
            health = slot.last_health if slot.last_health is not Health.UP else Health.UP
        if slot.last_health is Health.UP and health is Health.DOWN:
            slot.check_downs += 1
        slot.last_health = health
        return health

    def _member(self, slot: _Slot) -> Member:
        now = self.clock.now()
        return self._view(slot, now, self.provider.ready_since(slot.node))

    def _view(self, slot: _Slot, now: float, since: float | None) -> Member:
        """The member at ``now``, its node ready since ``since`` (None: not ready)."""
        health = self._health(slot, now, since)
        serving = slot.admin is Admin.READY and health is Health.UP
        if serving:
            served = self.rps * max(0.0, now - slot.counted_until)
            rate = self._error_rates.get(slot.node, self._error_rates.get(slot.image, 0.0))
            slot.total += served
            slot.errors += served * rate
        slot.counted_until = now
        if slot.stuck is not None:
            sessions = slot.stuck
        elif serving:
            sessions = self.sessions
        elif slot.admin is Admin.DRAIN and slot.drain_time > 0:
            left = 1.0 - (now - slot.drained_at) / slot.drain_time
            sessions = max(0, math.ceil(slot.drain_from * left))
        else:
            sessions = 0
        return Member(
            slot=slot.slot, target=slot.target, admin=slot.admin, health=health,
            sessions=sessions, total_sessions=int(slot.total), http_5xx=int(slot.errors),
            check_downs=slot.check_downs, weight=slot.weight, normal_weight=NORMAL_WEIGHT,
        )

    def _check(self, op: str, target: str) -> None:
        rule = take_rule(self._rules, op, target, "")
        if rule is not None:
            raise rule.raises(f"fake LB: {op} {target}: {rule.error}")
