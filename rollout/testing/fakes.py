"""Public fakes of every driver, and a fake clock, for tests of the core and of
your own hooks. They run on virtual time: nothing sleeps for real.

    clock = FakeClock()
    provider = FakeProvider(clock, boot_time=1.0)
    provider.seed(4, old_image)
    lb = FakeLoadBalancer(clock, provider)
    lb.seed(provider.list())
    provider.fail("launch", node="web-...")        # the next launch of that name fails
    provider.never_ready(image=new_image.id)        # nodes of that image never get ready
    lb.stuck_sessions(node.lb_target, 3)             # its drain never finishes
    lb.set_error_rate(new_image.id, 0.2)             # 20% of its responses are 5xx
    smoke = FakeSmokeRunner(clock); smoke.fail(image=new_image.id, times=1)  # flake once
    provider.fail("readiness", raises=KeyError)       # a driver bug, not a driver error

Like the real drivers, the fakes never change anything when observed (``list``,
``readiness``, ``members``). ``FakeProvider(setup=(Setup.ATTACH_VOLUME,
Setup.JOIN_GROUP))`` makes every launched node owe those steps (an AWS pool
with data volumes in an ASG), and ``two_step_removal=True`` lists a destroyed
node as REMOVING until ``finish_removal`` (the lab's nspawn nodes).

Health in :class:`FakeLoadBalancer` follows the provider: a member is UP once
its node is ready and ``rise`` checks of ``interval`` seconds have passed.
"""

from __future__ import annotations

import builtins
import copy
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from rollout.config import PoolSettings, Timeouts
from rollout.errors import DriverError, NotFoundError
from rollout.model import (
    Admin,
    Health,
    Image,
    LaunchSpec,
    LbCapacity,
    Member,
    Node,
    NodeState,
    Readiness,
    Setup,
    SmokeResult,
    SshTarget,
)
from rollout.protocols import ImageStore, Provider


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


@dataclass
class _Rule:
    op: str
    times: int | None  # None: every time
    node: str | None
    image: str | None
    error: str
    raises: type[Exception] = DriverError


def _take(rules: list[_Rule], op: str, name: str, image: str) -> _Rule | None:
    for rule in rules:
        if rule.op != op or (rule.node and rule.node != name) or (
            rule.image and rule.image != image
        ):
            continue
        if rule.times is not None:
            rule.times -= 1
            if rule.times <= 0:
                rules.remove(rule)
        return rule
    return None


@dataclass
class _Machine:
    node: Node
    ready_at: float
    never_ready: bool = False
    owed: list[Setup] = field(default_factory=list)  # setup steps not yet taken


class FakeProvider(Provider):
    """Nodes that boot in ``boot_time`` virtual seconds; launch is idempotent by
    name; failures are injected with :meth:`fail` and :meth:`never_ready`.
    ``launches_from`` is what :meth:`on_rollout_succeeded` last pointed new
    nodes at (as an ASG's launch template would be), None until then.
    ``setup`` lists the steps a launched (or restarted) node owes before it is
    ready; with ``two_step_removal`` a destroyed node stays REMOVING until
    :meth:`finish_removal`."""

    def __init__(
        self, clock: FakeClock, *, role: str = "web", env: str = "lab", boot_time: float = 1.0,
        setup: tuple[Setup, ...] = (), two_step_removal: bool = False,
    ) -> None:
        self.clock = clock
        self.role = role
        self.env = env
        self.boot_time = boot_time
        self.setup = setup
        self.two_step_removal = two_step_removal
        self.machines: dict[str, _Machine] = {}
        self.calls: list[tuple[str, str]] = []
        self._rules: list[_Rule] = []
        self._never: list[tuple[str | None, str | None]] = []
        self._count = 0
        self._lock = threading.RLock()
        self.launches_from: Image | None = None

    # --- setting up -------------------------------------------------------------

    def add_node(
        self, name: str, image: Image, *, rollout_id: str | None = None, ready: bool = True
    ) -> Node:
        """A node that exists already (the initial pool has no rollout_id)."""
        with self._lock:
            self._count += 1
            node = Node(
                name=name, address=self._address(), role=self.role, env=self.env,
                image_id=image.id, image_version=image.version, state=NodeState.RUNNING,
                created_at=self.clock.now() + self._count * 1e-3, rollout_id=rollout_id,
                labels={"rollout_id": rollout_id} if rollout_id else {},
            )
            ready_at = self.clock.now() if ready else math.inf
            self.machines[name] = _Machine(node, ready_at)
            return node

    def seed(self, count: int, image: Image, prefix: str | None = None) -> list[Node]:
        """``count`` running, ready nodes of ``image``: the pool before a rollout."""
        prefix = prefix or f"{self.role}-base"
        return [self.add_node(f"{prefix}-{i}", image) for i in range(count)]

    def fail(
        self, op: str, *, times: int | None = 1, node: str | None = None,
        image: str | None = None, error: str = "injected failure",
        raises: type[Exception] = DriverError,
    ) -> None:
        """Make ``op`` (launch, readiness, stop, start, destroy, list,
        attach_volume, join_group, finish_removal) raise ``raises`` (DriverError;
        TransientError; or KeyError for a bug) ``times`` times (None: always),
        for one node or image."""
        with self._lock:
            self._rules.append(_Rule(op, times, node, image, error, raises))

    def never_ready(self, *, node: str | None = None, image: str | None = None) -> None:
        with self._lock:
            self._never.append((node, image))
            for machine in self.machines.values():
                if self._is_never(machine.node):
                    machine.never_ready = True

    # --- the Provider protocol ---------------------------------------------------

    def list(self) -> list[Node]:
        with self._lock:
            self._check("list", "", "")
            return [self._current(m) for m in self.machines.values()
                    if m.node.state is not NodeState.GONE]

    def launch(self, spec: LaunchSpec) -> Node:
        with self._lock:
            self.calls.append(("launch", spec.name))
            existing = self.machines.get(spec.name)
            if existing is not None and existing.node.state is not NodeState.GONE:
                return self._current(existing)
            self._check("launch", spec.name, spec.image.id)
            self._count += 1
            node = Node(
                name=spec.name, address=self._address(), role=spec.role, env=spec.env,
                image_id=spec.image.id, image_version=spec.image.version,
                state=NodeState.PENDING, created_at=self.clock.now(), rollout_id=spec.rollout_id,
                labels={"rollout_id": spec.rollout_id} if spec.rollout_id else {},
            )
            machine = _Machine(node, self.clock.now() + self.boot_time, owed=list(self.setup))
            machine.never_ready = self._is_never(node)
            self.machines[spec.name] = machine
            return node

    def readiness(self, node: Node) -> Readiness:
        """A volume is owed as soon as the machine runs, a group membership once
        it answers (as on AWS)."""
        with self._lock:
            self._check("readiness", node.name, node.image_id)
            machine = self.machines.get(node.name)
            owed = machine.owed if machine is not None else []
            running = machine is not None and self._current(machine).state is NodeState.RUNNING
            if running and Setup.ATTACH_VOLUME in owed:
                return Readiness(False, "data volume not attached", setup=Setup.ATTACH_VOLUME)
            if self.is_ready(node.name):
                if Setup.JOIN_GROUP in owed:
                    return Readiness(False, "not in service in its group", ssh=True,
                                     systemd="running", http=True, setup=Setup.JOIN_GROUP)
                return Readiness(True, "ready", ssh=True, systemd="running", http=True)
            return Readiness(False, "booting", ssh=False, systemd="starting", http=False)

    def stop(self, node: Node) -> None:
        with self._lock:
            self.calls.append(("stop", node.name))
            self._check("stop", node.name, node.image_id)
            machine = self._machine(node.name)
            machine.node = replace(machine.node, state=NodeState.STOPPED)
            machine.ready_at = math.inf

    def start(self, node: Node) -> Node:
        with self._lock:
            self.calls.append(("start", node.name))
            self._check("start", node.name, node.image_id)
            machine = self._machine(node.name)
            if machine.node.state is NodeState.STOPPED:
                machine.node = replace(machine.node, state=NodeState.PENDING)
                machine.ready_at = self.clock.now() + self.boot_time
                # A stopped group member left service (standby): it rejoins.
                if Setup.JOIN_GROUP in self.setup and Setup.JOIN_GROUP not in machine.owed:
                    machine.owed.append(Setup.JOIN_GROUP)
            return self._current(machine)

    def destroy(self, node: Node) -> None:
        with self._lock:
            self.calls.append(("destroy", node.name))
            self._check("destroy", node.name, node.image_id)
            machine = self.machines.get(node.name)
            if machine is not None and machine.node.state is not NodeState.GONE:
                state = NodeState.REMOVING if self.two_step_removal else NodeState.GONE
                machine.node = replace(machine.node, state=state)
                machine.ready_at = math.inf

    def ssh(self, node: Node) -> SshTarget:
        return SshTarget(host=node.address, host_key_policy="ignore")

    def on_rollout_succeeded(self, image: Image) -> None:
        self.launches_from = image

    def attach_volume(self, node: Node) -> None:
        self._take("attach_volume", node, Setup.ATTACH_VOLUME)

    def join_group(self, node: Node) -> None:
        self._take("join_group", node, Setup.JOIN_GROUP)

    def finish_removal(self, node: Node) -> None:
        with self._lock:
            self.calls.append(("finish_removal", node.name))
            self._check("finish_removal", node.name, node.image_id)
            machine = self.machines.get(node.name)
            if machine is not None and machine.node.state is NodeState.REMOVING:
                machine.node = replace(machine.node, state=NodeState.GONE)

    def _take(self, op: str, node: Node, step: Setup) -> None:
        with self._lock:
            self.calls.append((op, node.name))
            self._check(op, node.name, node.image_id)
            machine = self._machine(node.name)
            if step in machine.owed:
                machine.owed.remove(step)

    # --- for the fake LB and for assertions -----------------------------------------

    def is_ready(self, name: str) -> bool:
        with self._lock:
            machine = self.machines.get(name)
            if machine is None or machine.never_ready:
                return False
            node = self._current(machine)
            return node.state is NodeState.RUNNING and self.clock.now() >= machine.ready_at

    def ready_since(self, name: str) -> float | None:
        with self._lock:
            machine = self.machines.get(name)
            return machine.ready_at if machine is not None and self.is_ready(name) else None

    def live(self) -> builtins.list[Node]:
        """Nodes that exist (any state but GONE), ignoring injected failures."""
        with self._lock:
            return [self._current(m) for m in self.machines.values()
                    if m.node.state is not NodeState.GONE]

    # --- internals ------------------------------------------------------------------------

    def _address(self) -> str:
        return f"10.0.{self._count // 250}.{self._count % 250 + 1}"

    def _machine(self, name: str) -> _Machine:
        machine = self.machines.get(name)
        if machine is None or machine.node.state is NodeState.GONE:
            raise DriverError(f"fake provider: no node {name!r}")
        return machine

    def _current(self, machine: _Machine) -> Node:
        node = machine.node
        if node.state is NodeState.PENDING and self.clock.now() >= machine.ready_at:
            node = machine.node = replace(node, state=NodeState.RUNNING)
        return node

    def _is_never(self, node: Node) -> bool:
        return any((n is None or n == node.name) and (i is None or i == node.image_id)
                   for n, i in self._never)

    def _check(self, op: str, name: str, image: str) -> None:
        rule = _take(self._rules, op, name, image)
        if rule is not None:
            raise rule.raises(f"fake provider: {op} {name}: {rule.error}")


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


class FakeLoadBalancer:
    """LB members whose health follows the provider's readiness after ``rise``
    checks; drained sessions fall to 0 over ``drain_time``; in-service members
    serve ``rps`` requests per virtual second, a share of them 5xx."""

    def __init__(
        self, clock: FakeClock, provider: FakeProvider, *, rise: int = 2,
        interval: float = 0.5, drain_time: float = 0.5, sessions: int = 2, rps: float = 10.0,
        slots: int | None = None,
    ) -> None:
        self.clock = clock
        self.provider = provider
        self.rise = rise
        self.interval = interval
        self.drain_time = drain_time
        self.sessions = sessions
        self.rps = rps
        self.slots = slots
        self._members: dict[str, _Slot] = {}
        self._rules: list[_Rule] = []
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
        """Make ``op`` (members, add, set_admin, remove) raise ``raises``."""
        with self._lock:
            self._rules.append(_Rule(op, times, target, None, error, raises))

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
        with self._lock:
            self._check("members", "")
            out = [self._member(s) for s in self._members.values()]
            if self.slots is not None:
                used = {m.slot for m in out}
                for k in range(1, self.slots + 1):
                    if f"node{k}" not in used:
                        out.append(Member(f"node{k}", "", Admin.MAINT, Health.UNKNOWN))
            return out

    def add(self, node: Node) -> Member:
        with self._lock:
            self._check("add", node.lb_target)
            slot = self._members.get(node.lb_target)
            if slot is None:
                if self.slots is not None and len(self._members) >= self.slots:
                    raise DriverError(f"fake LB: no free slot for {node.name}")
                slot = self._new_slot(node)
            return self._member(slot)

    def set_admin(self, node: Node, admin: Admin) -> None:
        with self._lock:
            self._check("set_admin", node.lb_target)
            slot = self._members.get(node.lb_target)
            if slot is None:
                raise DriverError(f"fake LB: no member for {node.name} ({node.lb_target})")
            before = self._member(slot)
            if admin is Admin.DRAIN and slot.admin is not Admin.DRAIN:
                slot.drained_at = self.clock.now()
                slot.drain_from = before.sessions
            if admin is Admin.READY and slot.admin is Admin.MAINT:
                slot.checks_since = self.clock.now()  # back from MAINT: checks start over
                slot.last_health = Health.UNKNOWN
            slot.admin = admin

    def remove(self, node: Node) -> None:
        with self._lock:
            self._check("remove", node.lb_target)
            self._members.pop(node.lb_target, None)

    # --- internals -------------------------------------------------------------------

    def _new_slot(self, node: Node) -> _Slot:
        used = {s.slot for s in self._members.values()}
        k = 1
        while f"node{k}" in used:
            k += 1
        now = self.clock.now()
        slot = _Slot(f"node{k}", node.lb_target, node.name, node.image_id, Admin.READY, now,
                     counted_until=now)
        self._members[node.lb_target] = slot
        return slot

    def _health(self, slot: _Slot) -> Health:
        now = self.clock.now()
        since = self.provider.ready_since(slot.node)
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
        health = self._health(slot)
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
        elif slot.admin is Admin.DRAIN and self.drain_time > 0:
            left = 1.0 - (now - slot.drained_at) / self.drain_time
            sessions = max(0, math.ceil(slot.drain_from * left))
        else:
            sessions = 0
        return Member(
            slot=slot.slot, target=slot.target, admin=slot.admin, health=health,
            sessions=sessions, total_sessions=int(slot.total), http_5xx=int(slot.errors),
            check_downs=slot.check_downs,
        )

    def _check(self, op: str, target: str) -> None:
        rule = _take(self._rules, op, target, "")
        if rule is not None:
            raise rule.raises(f"fake LB: {op} {target}: {rule.error}")


class FakeSmokeRunner:
    """A smoke gate taking ``duration`` virtual seconds; fails as injected."""

    def __init__(self, clock: FakeClock, duration: float = 0.5) -> None:
        self.clock = clock
        self.duration = duration
        self.runs: list[tuple[str, str, bool]] = []  # (node, image id, passed)
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()

    def fail(
        self, *, image: str | None = None, node: str | None = None, times: int | None = None,
        summary: str = "1 failed", raise_error: bool = False,
    ) -> None:
        """Fail matching runs (``times`` None: always; 1: a flake). With
        ``raise_error`` the runner raises DriverError instead of reporting."""
        with self._lock:
            op = "raise" if raise_error else "fail"
            self._rules.append(_Rule(op, times, node, image, summary))

    def run(self, node: Node, image: Image) -> SmokeResult:
        self.clock.sleep(self.duration)
        with self._lock:
            if _take(self._rules, "raise", node.name, image.id) is not None:
                raise DriverError(f"fake smoke: cannot reach {node.name}")
            rule = _take(self._rules, "fail", node.name, image.id)
            self.runs.append((node.name, image.id, rule is None))
        if rule is not None:
            return SmokeResult(False, self.duration, rule.error, failures=(rule.error,))
        return SmokeResult(True, self.duration, "5 passed")


class FakeImageStore(ImageStore):
    """Images in memory; :meth:`update_manifest` replaces the stored image."""

    def __init__(self, images: list[Image] | None = None) -> None:
        self.images: list[Image] = list(images or [])

    def add(self, image: Image) -> Image:
        self.images.append(image)
        return image

    def list(self, role: str | None = None) -> list[Image]:
        return [i for i in self.images if role is None or i.role == role]

    def get(self, image_id: str) -> Image:
        for image in self.images:
            if image.id == image_id:
                return image
        raise NotFoundError(f"no image {image_id!r}", hint="list images with `rollout images`")

    def latest(self, role: str) -> Image:
        images = self.list(role)
        if not images:
            raise NotFoundError(f"no image of role {role!r}", hint="bake one with `rollout bake`")
        return max(images, key=lambda i: i.created_at)

    def by_version(self, role: str, version: str) -> Image:
        for image in self.list(role):
            if image.version == version:
                return image
        raise NotFoundError(f"no image of role {role!r} with version {version!r}")

    def update_manifest(
        self, image_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Image:
        old = self.get(image_id)
        manifest = change(copy.deepcopy({"id": old.id, **old.manifest}))
        if manifest.get("id") != old.id:
            raise DriverError(f"fake image store: an update may not change the id of {old.id}")
        new = replace(old, manifest=manifest)
        self.images = [new if i.id == old.id else i for i in self.images]
        return new


def image(role: str = "web", version: str = "1.0.0", created_at: float = 0.0) -> Image:
    """A ready-made image for tests: id ``ROLE-VERSION``."""
    return Image(id=f"{role}-{version}", role=role, version=version, created_at=created_at)


def pool_settings(**overrides: object) -> PoolSettings:
    """Valid settings of a small HAProxy-fronted pool, for tests. Timeout keys
    (ready, smoke, lb_up, drain, progress_deadline) go under ``timeouts``."""
    data: dict[str, object] = {
        "pool_size": 4, "soak": 0, "haproxy": {"backend": "web", "frontend_port": 8080,
                                               "slots": 16},
    }
    timeouts = {k: v for k, v in overrides.items() if k in Timeouts.model_fields}
    data.update({k: v for k, v in overrides.items() if k not in timeouts})
    if timeouts:
        data["timeouts"] = timeouts
    return PoolSettings.model_validate(data)


@dataclass
class FakeWorld:
    """A pool of ``size`` nodes on ``old``, in a fake LB, ready to roll to ``new``."""

    clock: FakeClock
    provider: FakeProvider
    lb: FakeLoadBalancer
    smoke: FakeSmokeRunner
    images: FakeImageStore
    old: Image
    new: Image

    @classmethod
    def create(cls, size: int = 4, *, role: str = "web", boot_time: float = 1.0,
               setup: tuple[Setup, ...] = (), two_step_removal: bool = False,
               **lb_options: Any) -> FakeWorld:
        clock = FakeClock()
        provider = FakeProvider(clock, role=role, boot_time=boot_time, setup=setup,
                                two_step_removal=two_step_removal)
        old, new = image(role, "1.0.0", 1.0), image(role, "2.0.0", 2.0)
        lb = FakeLoadBalancer(clock, provider, **lb_options)
        lb.seed(provider.seed(size, old))
        return cls(clock, provider, lb, FakeSmokeRunner(clock), FakeImageStore([old, new]),
                   old, new)

    def in_service(self) -> int:
        return sum(1 for m in self.lb.members() if m.in_service)

    def problems(self, size: int, image_id: str | None = None) -> list[str]:
        """What differs from a settled pool of ``size`` nodes (all on ``image_id``
        if given, all in service, no other node and no other LB member)."""
        found: list[str] = []
        nodes = self.provider.live()
        members = {m.target: m for m in self.lb.members() if m.target}
        if len(nodes) != size:
            found.append(f"{len(nodes)} nodes exist, expected {size}: "
                         f"{sorted(n.name for n in nodes)}")
        images = {n.image_id for n in nodes}
        if image_id is not None and images != {image_id}:
            found.append(f"images {sorted(images)}, expected {image_id}")
        elif len(images) > 1:
            found.append(f"mixed images {sorted(images)}")
        for node in nodes:
            member = members.pop(node.lb_target, None)
            if node.state is not NodeState.RUNNING:
                found.append(f"{node.name} is {node.state.value}")
            if member is None:
                found.append(f"{node.name} is not in the LB")
            elif not member.in_service:
                found.append(f"{node.name} is {member.admin.value}/{member.health.value}")
        found.extend(f"LB member {t} has no node" for t in members)
        return found
