"""One HAProxy backend of fixed slots as a :class:`rollout.protocols.LoadBalancer`.

A slot is EMPTY (placeholder address, MAINT, checks off) or holds one node,
found by its address (``Node.lb_target``). Transitions, all idempotent:

| call               | runtime commands                                          |
|--------------------|-----------------------------------------------------------|
| add (free slot)    | set addr; enable health; state drain; health down; ready  |
| set_admin READY    | from MAINT as add (minus addr); from DRAIN: state ready   |
| set_admin DRAIN    | state drain                                               |
| set_admin MAINT    | state maint                                               |
| remove             | state maint; set addr EMPTY; disable health; weight 100%  |
| set_weight W/None  | set weight W (None: 100%, the configured weight)          |
| stage (blue-green) | set addr; enable health; state drain; health down         |
| switch (blue-green)| one line: state ready (each green); state drain (each blue)|

With a preview backend (``blue_green.preview``), the driver keeps it holding
the main backend's idle side only: the nodes it holds in DRAIN (the staged
green pool; after the switch, the warm blue one). A node leaves the preview
BEFORE it serves or leaves the main backend (in the switch, in the same
runtime-API line, after the main backend's commands), and joins it only AFTER
the main backend holds it drained. A crash between two exchanges therefore
leaves the preview holding idle nodes only (maybe fewer), never a node that
serves or is gone; no reconciliation is needed for it to stay right.

| call               | preview backend                                           |
|--------------------|-----------------------------------------------------------|
| stage, switch      | every main DRAIN node added (as ``add``); others removed  |
| switch             | the ``ready`` nodes to MAINT in the switch's own line     |
| add, remove,       | the node removed from the preview first (set_admin DRAIN  |
| set_admin          | leaves it: a surge's drain is not an idle side)           |

Why the detour through DRAIN and "health down": a server leaving MAINT is
assumed UP by HAProxy before any check has run (status "UP 1/2", check "INI")
and takes traffic at once. Leaving MAINT into DRAIN takes no new sessions;
forcing health down there means READY only gets traffic after ``rise`` passing
checks. Changing DRAIN to READY does not reset the health.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rollout import names
from rollout.config import Pool
from rollout.drivers.haproxy.config import EMPTY_ADDRESS, EMPTY_PORT, backend_spec, is_empty
from rollout.drivers.haproxy.parse import member
from rollout.drivers.haproxy.runtime import HAProxyRuntime
from rollout.errors import ConfigError, DriverError, TransientError
from rollout.model import Admin, LbCapacity, Member, Node, NodeState


def slot_number(slot: str, prefix: str) -> int | None:
    """3 for ``node3`` with prefix ``node``; None for a name not of that form."""
    match = re.fullmatch(re.escape(prefix) + r"([1-9][0-9]*)", slot)
    return int(match.group(1)) if match else None


def slots_of(members: Sequence[Member], target: str) -> list[Member]:
    """The slots holding ``target``; more than one only after a manual edit."""
    return [m for m in members if target and m.target == target]


def free_slot(members: Sequence[Member]) -> Member | None:
    """The lowest-numbered empty slot in MAINT (``members`` is in slot order).
    An empty slot that is READY or DRAIN is left alone: someone is using it."""
    return next((m for m in members if not m.target and m.admin is Admin.MAINT), None)




class HAProxyLoadBalancer:
    """The slots ``<prefix>1..<prefix><slots>`` of one backend."""

    def __init__(
        self,
        runtime: HAProxyRuntime,
        backend: str,
        *,
        service_port: int,
        slot_prefix: str = "node",
        slots: int,
        preview_backend: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.backend = names.backend(backend, "HAProxy load balancer: backend")
        self.service_port = names.port(service_port, f"HAProxy backend {backend!r}: service_port")
        self.slot_prefix = names.backend(slot_prefix, f"HAProxy backend {backend!r}: slot_prefix")
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ConfigError(f"HAProxy backend {backend!r}: slots must be ≥ 1 (got {slots!r})")
        self.slots = slots
        # The preview's own slots (as many as the main backend's), driven as
        # a backend of its own; never observed as the pool's members.
        self.preview = None if preview_backend is None else HAProxyLoadBalancer(
            runtime, preview_backend, service_port=service_port, slot_prefix=slot_prefix,
            slots=slots)

    def capacity(self) -> LbCapacity:
        """The backend's fixed slots: a member needs a free one."""
        return LbCapacity(self.slots, "rollout.haproxy.slots")

    @classmethod
    def for_pool(cls, pool: Pool, runtime: HAProxyRuntime) -> HAProxyLoadBalancer:
        spec = backend_spec(pool)
        return cls(
            runtime,
            spec.name,
            service_port=spec.service_port,
            slot_prefix=spec.slot_prefix,
            slots=spec.slots,
            preview_backend=spec.preview_backend,
        )

    def _where(self) -> str:
        return f"HAProxy backend {self.backend!r} ({self.runtime.url})"

    def members(self) -> list[Member]:
        """Every slot of the backend, in slot order, empty ones included."""
        stats = {row.svname: row for row in self.runtime.show_stat(self.backend)}
        states = self.runtime.show_servers_state(self.backend)
        out: list[tuple[int, Member]] = []
        for state in states:
            number = slot_number(state.srv_name, self.slot_prefix)
            if number is None or number > self.slots:
                continue  # not one of our slots (a hand-written server line)
            stat = stats.get(state.srv_name)
            if stat is None:
                raise TransientError(
                    f"{self._where()}: server {state.srv_name!r} is in 'show servers state' "
                    "but not in 'show stat'",
                    hint="was HAProxy reloaded in between? retry",
                )
            empty = is_empty(state.srv_addr, state.srv_port)
            out.append((number, member(stat, state, empty=empty)))
        if not out:
            raise DriverError(
                f"{self._where()}: no slots named {self.slot_prefix}1..{self.slot_prefix}"
                f"{self.slots}",
                hint="render the config with the pool's backend spec and reload HAProxy",
            )
        return [m for _, m in sorted(out, key=lambda pair: pair[0])]

    def _slot(self, slot: str) -> Member:
        found = next((m for m in self.members() if m.slot == slot), None)
        if found is None:
            raise DriverError(f"{self._where()}: slot {slot!r} vanished (HAProxy reloaded?)")
        return found

    def _target(self, node: Node) -> str:
        return names.address(node.lb_target, f"node {node.name!r}: load-balancer target")

    def _ready(self, slot: str, current: Admin) -> None:
        """Bring a slot to READY without it taking traffic before a check passes."""
        if current is Admin.READY:
            return
        self.runtime.enable_health(self.backend, slot)
        if current is Admin.MAINT:
            self.runtime.set_server_state(self.backend, slot, "drain")
            self.runtime.set_server_health(self.backend, slot, "down")
        self.runtime.set_server_state(self.backend, slot, "ready")

    def add(self, node: Node) -> Member:
        """Put ``node`` in a free slot, READY with checks on; health stays DOWN
        until HAProxy's own check passed ``rise`` times. Idempotent."""
        target = self._target(node)
        self._preview_drop(target)
        members = self.members()
        held = slots_of(members, target)
        if held:
            slot = next((m for m in held if m.admin is Admin.READY), held[0])
            if slot.admin is Admin.READY:
                return slot
            # A slot left half-added (crash) or parked in MAINT/DRAIN: finish it.
            self._ready(slot.slot, slot.admin)
            return self._slot(slot.slot)
        free = free_slot(members)
        if free is None:
            raise DriverError(
                f"no free slot in backend {self.backend} (slots: {self.slots}) for node "
                f"{node.name!r} ({target})",
                hint="remove old nodes first, or raise rollout.haproxy.slots and reload HAProxy",
            )
        self.runtime.set_server_addr(self.backend, free.slot, target, self.service_port)
        if free.weight is not None and free.weight != free.normal_weight:
            self.runtime.set_weight(self.backend, free.slot, None)  # left by a crash
        self._ready(free.slot, free.admin)
        return self._slot(free.slot)

    def stage(self, node: Node) -> Member:
        """Blue-green: ``node`` in a free slot, DRAIN with checks on and health
        forced DOWN, so it is UP only after ``rise`` checks and takes no traffic
        until :meth:`switch`. Idempotent; a slot already READY is left so."""
        target = self._target(node)
        members = self.members()
        held = slots_of(members, target)
        if held:
            slot = held[0]
            if slot.admin is Admin.MAINT:
                self._drained(slot.slot)
            self._preview_sync()
            return self._slot(slot.slot)
        free = free_slot(members)
        if free is None:
            raise DriverError(
                f"no free slot in backend {self.backend} (slots: {self.slots}) for green node "
                f"{node.name!r} ({target})",
                hint="blue-green needs twice pool_size slots: raise rollout.haproxy.slots "
                "and reload HAProxy",
            )
        self.runtime.set_server_addr(self.backend, free.slot, target, self.service_port)
        self._drained(free.slot)
        self._preview_sync()
        return self._slot(free.slot)

    def _drained(self, slot: str) -> None:
        self.runtime.enable_health(self.backend, slot)
        self.runtime.set_server_state(self.backend, slot, "drain")
        self.runtime.set_server_health(self.backend, slot, "down")

    def switch(self, ready: Sequence[Node], drain: Sequence[Node]) -> None:
        """One runtime-API exchange: every ``ready`` slot from DRAIN to READY,
        then every ``drain`` slot to DRAIN (see docs/blue-green.md). A ready
        node whose slot is in MAINT takes the safe path of :meth:`set_admin`
        first (checks must pass again), which is not instant."""
        members = self.members()
        changes: list[tuple[str, str, Admin]] = []
        for node in ready:
            for slot in self._held(members, node):
                if slot.admin is Admin.MAINT:
                    self._preview_drop(slot.target)  # it serves before the line below
                    self._ready(slot.slot, slot.admin)
                elif slot.admin is Admin.DRAIN:
                    changes.append((self.backend, slot.slot, Admin.READY))
        for node in drain:
            changes.extend((self.backend, slot.slot, Admin.DRAIN)
                           for slot in self._held(members, node) if slot.admin is Admin.READY)
        if self.preview is not None:
            # In the same line, after the main backend's commands: a node that
            # now serves is out of the preview before anything else happens.
            serving = {self._target(n) for n in ready}
            changes.extend((self.preview.backend, m.slot, Admin.MAINT)
                           for m in self.preview.members()
                           if m.target in serving and m.admin is not Admin.MAINT)
        self.runtime.set_server_states(changes)
        self._preview_sync()

    def _held(self, members: Sequence[Member], node: Node,
              hint: str = "stage the node in the load balancer first") -> list[Member]:
        """The slots holding ``node``; a DriverError naming it when there are none."""
        held = slots_of(members, self._target(node))
        if not held:
            raise DriverError(
                f"{self._where()}: node {node.name!r} ({self._target(node)}) is in no slot",
                hint=hint,
            )
        return held

    def set_admin(self, node: Node, admin: Admin) -> None:
        """READY, DRAIN or MAINT for every slot holding the node."""
        held = self._held(self.members(), node, hint="add the node to the load balancer first")
        if admin is not Admin.DRAIN:
            self._preview_drop(self._target(node))
        for slot in held:
            if slot.admin is admin:
                continue
            if admin is Admin.READY:
                self._ready(slot.slot, slot.admin)
            else:
                self.runtime.set_server_state(self.backend, slot.slot, admin)

    def remove(self, node: Node) -> None:
        """MAINT, then point the slot back at the EMPTY address with checks off.
        A node in no slot is already removed."""
        target = self._target(node)
        self._preview_drop(target)
        for slot in slots_of(self.members(), target):
            self.runtime.set_server_state(self.backend, slot.slot, "maint")
            self.runtime.set_server_addr(self.backend, slot.slot, EMPTY_ADDRESS, EMPTY_PORT)
            self.runtime.disable_health(self.backend, slot.slot)
            if slot.weight is not None and slot.weight != slot.normal_weight:
                # A canary weight must not outlive the node in the slot.
                self.runtime.set_weight(self.backend, slot.slot, None)

    def set_weight(self, node: Node, weight: int | None) -> None:
        """``weight`` (0..256) for every slot holding the node; None: the
        weight the config gave the slots."""
        held = self._held(self.members(), node, hint="add the node to the load balancer first")
        for slot in held:
            wanted = slot.normal_weight if weight is None else weight
            if slot.weight != wanted or wanted is None:
                self.runtime.set_weight(self.backend, slot.slot, weight)

    # -- the preview backend (blue_green.preview) ---------------------------------

    def preview_members(self) -> list[Member]:
        """The preview backend's slots (none without a preview), for tests and
        tools to look at; never counted among the pool's members."""
        return [] if self.preview is None else self.preview.members()

    def _preview_drop(self, target: str) -> None:
        """Take ``target`` out of the preview (before it serves or goes)."""
        if self.preview is not None:
            for slot in slots_of(self.preview.members(), target):
                self.preview.remove(_stand_in(slot))

    def _preview_sync(self) -> None:
        """The preview := the main backend's DRAIN nodes (the idle side)."""
        if self.preview is None:
            return
        idle = {m.target: m for m in self.members() if m.target and m.admin is Admin.DRAIN}
        for slot in self.preview.members():
            if slot.target and slot.target not in idle:
                self.preview.remove(_stand_in(slot))
        for main in idle.values():
            self.preview.add(_stand_in(main))


def _stand_in(member: Member) -> Node:
    """A Node naming a slot's target, for the preview (which only needs that)."""
    return Node(name=member.slot, address=member.target, role="", env="", image_id="",
                image_version="", state=NodeState.RUNNING, created_at=0.0,
                target=member.target)
