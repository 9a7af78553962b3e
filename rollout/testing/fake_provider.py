"""FakeProvider: nodes that boot on virtual time, with injectable failures."""

from __future__ import annotations

import builtins
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from rollout.errors import DriverError
from rollout.model import (
    Image,
    LaunchSpec,
    Node,
    NodeState,
    Readiness,
    Setup,
    SshTarget,
)
from rollout.protocols import Provider
from rollout.testing.clock import FakeClock
from rollout.testing.rules import FailureRule, take_rule


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
    :meth:`finish_removal`.

    For timing runs (see :mod:`rollout.testing.latency`): ``boot`` gives each
    launched node its own boot time (by name; default ``boot_time``), and
    ``pace(op, name)`` is called before every call, outside the fake's lock, to
    take the call's latency (a readiness probe's cost) or raise its throttling."""

    def __init__(
        self, clock: FakeClock, *, role: str = "web", env: str = "lab", boot_time: float = 1.0,
        setup: tuple[Setup, ...] = (), two_step_removal: bool = False,
        boot: Callable[[str], float] | None = None,
        pace: Callable[[str, str], None] | None = None,
    ) -> None:
        self.clock = clock
        self.role = role
        self.env = env
        self.boot_time = boot_time
        self.setup = setup
        self.two_step_removal = two_step_removal
        self.boot = boot
        self.pace = pace
        self.machines: dict[str, _Machine] = {}
        self.calls: list[tuple[str, str]] = []
        self._rules: list[FailureRule] = []
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
            self._rules.append(FailureRule(op, times, node, image, error, raises))

    def never_ready(self, *, node: str | None = None, image: str | None = None) -> None:
        with self._lock:
            self._never.append((node, image))
            for machine in self.machines.values():
                if self._is_never(machine.node):
                    machine.never_ready = True

    # --- the Provider protocol ---------------------------------------------------

    def list(self) -> list[Node]:
        self._pace("list", "")
        with self._lock:
            self._check("list", "", "")
            return [self._current(m) for m in self.machines.values()
                    if m.node.state is not NodeState.GONE]

    def launch(self, spec: LaunchSpec) -> Node:
        self._pace("launch", spec.name)
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
            boot = self.boot(spec.name) if self.boot is not None else self.boot_time
            machine = _Machine(node, self.clock.now() + boot, owed=list(self.setup))
            machine.never_ready = self._is_never(node)
            self.machines[spec.name] = machine
            return node

    def readiness(self, node: Node) -> Readiness:
        """A volume is owed as soon as the machine runs, a group membership once
        it answers (as on AWS)."""
        self._pace("readiness", node.name)
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
        self._pace("stop", node.name)
        with self._lock:
            self.calls.append(("stop", node.name))
            self._check("stop", node.name, node.image_id)
            machine = self._machine(node.name)
            machine.node = replace(machine.node, state=NodeState.STOPPED)
            machine.ready_at = math.inf

    def start(self, node: Node) -> Node:
        self._pace("start", node.name)
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
        self._pace("destroy", node.name)
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
        self.take_rule("attach_volume", node, Setup.ATTACH_VOLUME)

    def join_group(self, node: Node) -> None:
        self.take_rule("join_group", node, Setup.JOIN_GROUP)

    def finish_removal(self, node: Node) -> None:
        self._pace("finish_removal", node.name)
        with self._lock:
            self.calls.append(("finish_removal", node.name))
            self._check("finish_removal", node.name, node.image_id)
            machine = self.machines.get(node.name)
            if machine is not None and machine.node.state is NodeState.REMOVING:
                machine.node = replace(machine.node, state=NodeState.GONE)

    def take_rule(self, op: str, node: Node, step: Setup) -> None:
        self._pace(op, node.name)
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

    def ready_since_each(self, names: Iterable[str], now: float) -> dict[str, float | None]:
        """:meth:`ready_since` of each name at ``now``, under one lock: the fake
        LB asks this for all its members at once, so that a members() call over
        1,000 slots costs the controller's process (which runs the fakes) one
        pass, not 1,000 lock round trips and clock reads."""
        out: dict[str, float | None] = {}
        with self._lock:
            for name in names:
                machine = self.machines.get(name)
                if machine is None or machine.never_ready:
                    out[name] = None
                    continue
                node = machine.node
                if node.state is NodeState.PENDING and now >= machine.ready_at:
                    node = machine.node = replace(node, state=NodeState.RUNNING)
                ready = node.state is NodeState.RUNNING and now >= machine.ready_at
                out[name] = machine.ready_at if ready else None
        return out

    def live(self) -> builtins.list[Node]:
        """Nodes that exist (any state but GONE), ignoring injected failures."""
        with self._lock:
            return [self._current(m) for m in self.machines.values()
                    if m.node.state is not NodeState.GONE]

    # --- internals ------------------------------------------------------------------------

    def _pace(self, op: str, name: str) -> None:
        if self.pace is not None:
            self.pace(op, name)

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
        rule = take_rule(self._rules, op, name, image)
        if rule is not None:
            raise rule.raises(f"fake provider: {op} {name}: {rule.error}")
