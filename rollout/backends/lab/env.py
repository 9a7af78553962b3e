"""``lab up``, ``lab down`` and ``lab status``: the whole lab of one environment.

``lab_up`` converges, so running it again is safe and cheap:

1. check root and programs before touching anything;
2. ensure the base image, and a first image (1.0.0) for every lab pool's role;
3. ensure the network and HAProxy (one frontend and backend per pool);
4. per pool: finish removals a dead controller left unfinished, clear LB
   slots whose node is gone, restart nodes whose nspawn died, launch missing
   nodes (from the image the pool already runs, else the role's first image),
   wait until each is ready, register it, and wait until HAProxy reports it UP.

A stop request (``cancel``: the CLI's SIGINT/SIGTERM flag) is honoured inside
the bake and between and during the waits; it, or a ``KeyboardInterrupt``,
undoes what this run started: a bake's builder is removed by the bake, and
every node this run launched leaves the LB and is removed (nodes that were
there before stay). The network and HAProxy stay for the next ``lab up``.

``lab_down`` removes exactly what ``lab_up`` made at run time (nodes, netns,
veths, bridge, our NAT rules, HAProxy and its files) and keeps the caches
(the base image and baked images).
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollout import names
from rollout.backends.lab import haproxy_process, network, nodes, orphans, prometheus
from rollout.backends.lab.base import ensure_base
from rollout.backends.lab.builder import bake_on_lab
from rollout.backends.lab.images import LabImageStore
from rollout.backends.lab.prometheus import lab_metrics_ports
from rollout.backends.lab.provider import LabProvider
from rollout.backends.lab.records import LabContext
from rollout.backends.lab.system import (
    LAB_PROGRAMS,
    find_program,
    require_programs,
    require_root,
)
from rollout.cleanup import shielded
from rollout.clock import SystemClock
from rollout.config import Environment, Pool
from rollout.drivers.haproxy.config import backend_spec, render_config
from rollout.drivers.haproxy.lb import HAProxyLoadBalancer
from rollout.errors import DriverError, Interrupted
from rollout.model import Admin, Health, LaunchSpec, Member, Node, NodeState, VaultOptions
from rollout.paths import DataDir
from rollout.protocols import Clock, LoadBalancer

Events = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


@dataclass(frozen=True)
class NodeStatus:
    """One node as ``lab status`` shows it.

    ``lb_state`` is ``up`` (READY and healthy), ``down`` (READY, failing
    checks), ``drain``, ``maint``, ``unknown`` (no check result, or HAProxy
    unreachable) or ``none`` (not in the load balancer).
    """

    name: str
    address: str
    image: str  # the image version
    image_id: str
    role: str
    lb_state: str
    slot: str | None
    state: str  # a NodeState value

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "address": self.address, "image": self.image,
            "image_id": self.image_id, "role": self.role, "lb_state": self.lb_state,
            "slot": self.slot, "state": self.state,
        }


@dataclass(frozen=True)
class LabStatus:
    env: str
    frontends: dict[str, str]  # role -> URL
    nodes: list[NodeStatus]
    haproxy: bool  # our HAProxy runs
    bridge: str
    subnet: str
    warnings: list[str] = field(default_factory=list)
    builders: list[str] = field(default_factory=list)  # bakes' builder nodes running now
    prometheus: str = ""  # the lab Prometheus' URL while it runs

    @property
    def frontend(self) -> str:
        """The first pool's frontend URL (kept for scripts written for one pool)."""
        return next(iter(self.frontends.values()), "")

    def pools(self) -> list[dict[str, Any]]:
        """Each pool in role order: its role, frontend URL and node names."""
        return [
            {"role": role, "frontend": url,
             "nodes": [n.name for n in self.nodes if n.role == role]}
            for role, url in self.frontends.items()
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "frontend": self.frontend,
            "frontends": dict(self.frontends),
            "pools": self.pools(),
            "haproxy": "running" if self.haproxy else "stopped",
            "bridge": self.bridge,
            "subnet": self.subnet,
            "nodes": [n.to_json() for n in self.nodes],
            "builders": list(self.builders),
            "warnings": list(self.warnings),
            "prometheus": self.prometheus or None,
        }


def lab_pools(env: Environment) -> list[Pool]:
    return [p for _, p in sorted(env.pools.items()) if p.settings.provider == "lab"]


def _load_balancer(data: DataDir, pool: Pool) -> LoadBalancer:
    """The pool's backend in the lab's own HAProxy (through its admin socket)."""
    return HAProxyLoadBalancer.for_pool(pool, haproxy_process.runtime(data))


def haproxy_config_text(env: Environment, data: DataDir) -> str:
    files = haproxy_process.HAProxyFiles.of(data)
    specs = [backend_spec(p) for p in lab_pools(env) if p.settings.load_balancer == "haproxy"]
    ports = lab_metrics_ports(env)
    return render_config(specs, socket_path=files.socket, state_file=files.state,
                         metrics_port=None if ports is None else ports.exporter,
                         request_log_dir=data.lab)


def _lb_state(member: Member | None) -> str:
    if member is None:
        return "none"
    if member.admin is Admin.MAINT:
        return "maint"
    if member.admin is Admin.DRAIN:
        return "drain"
    return {Health.UP: "up", Health.DOWN: "down"}.get(member.health, "unknown")


def _new_name(role: str, taken: set[str]) -> str:
    while True:
        candidate = names.name(f"{role}-{secrets.token_hex(3)}", "node name")
        if candidate not in taken:
            return candidate


def _stale_node(pool: Pool, member: Member) -> Node:
    """A stand-in Node for an LB slot whose node no longer exists."""
    return Node(
        name=member.slot, address=member.target, role=pool.role, env=pool.env, image_id="",
        image_version="", state=NodeState.GONE, created_at=0.0, target=member.target,
    )


def _never() -> bool:
    return False


def lab_up(
    project: Path,
    env: Environment,
    data: DataDir,
    *,
    nodes: int | None = None,
    on_event: Events = _quiet,
    clock: Clock | None = None,
    cancel: Callable[[], bool] = _never,
    vault: VaultOptions | None = None,
    hold: frozenset[str] = frozenset(),
) -> LabStatus:
    """Bring the lab of ``env`` to its desired state; see the module doc.
    Interrupted (after undoing this run's nodes) when ``cancel`` asks to stop;
    ``vault`` is handed to the bakes of roles without an image. The pools of
    the roles in ``hold`` (a rollout owns their nodes) get the network and
    HAProxy but no node is started, stopped or removed."""
    require_root("lab up")
    require_programs(LAB_PROGRAMS)
    clock = clock or SystemClock()
    data.ensure()
    lab = LabContext(data, env.settings.lab)
    launched: dict[str, Node | None] = {}  # name -> node, once its launch returned
    try:
        _up(project, env, data, lab, nodes, on_event, clock, cancel, launched, vault, hold)
    except (Interrupted, KeyboardInterrupt) as exc:
        gone = shielded(lambda: _undo(data, lab, env, launched, on_event))
        text = "lab up interrupted; " + (
            f"removed the node(s) it had started: {', '.join(gone)}" if gone
            else "it had started no node")
        if isinstance(exc, Interrupted) and exc.message != _STOPPED:
            text += f" ({exc.message})"  # e.g. what an interrupted bake cleaned up
        raise Interrupted(
            text, hint="run `rollout lab up` again to finish, or `rollout lab down`",
        ) from None
    return lab_status(env, data)


def _up(
    project: Path, env: Environment, data: DataDir, lab: LabContext, size: int | None,
    on_event: Events, clock: Clock, cancel: Callable[[], bool],
    launched: dict[str, Node | None], vault: VaultOptions | None, hold: frozenset[str],
) -> None:
    ensure_base(data, on_event=on_event)
    images = LabImageStore(data)
    pools = [p for p in lab_pools(env) if p.role not in hold]
    for pool in pools:
        if not images.list(pool.role):
            on_event(f"{pool.role}: no image yet, baking 1.0.0")
            bake_on_lab(project, env, data, pool.role, "1.0.0", on_event=on_event,
                        cancel=cancel, clock=clock, vault=vault)
    _checkpoint(cancel)
    network.ensure_network(lab.settings)
    how = haproxy_process.ensure_haproxy(data, haproxy_config_text(env, data), clock=clock)
    if how != "unchanged":
        on_event(f"HAProxy {how}")
    ports = lab_metrics_ports(env)
    if ports is not None and find_program(prometheus.PROGRAM) is None:
        on_event("prometheus is not installed (apt-get install prometheus): the lab runs "
                 "without it, and its prometheus analyses are inconclusive")
    elif ports is not None:
        how = prometheus.ensure_prometheus(data, ports, clock=clock)
        if how != "unchanged":
            on_event(f"Prometheus {how} on {ports.url}")
    for pool in pools:
        want = size if size is not None else pool.settings.pool_size
        _warn_no_surge_room(pool, want, on_event)
        _converge(data, lab, pool, images, want, on_event, clock, cancel, launched)


_STOPPED = "lab up interrupted"


def _warn_no_surge_room(pool: Pool, size: int, on_event: Events) -> None:
    """A pool that fills its HAProxy slots cannot surge: say so now, not at
    the first rollout (which ``plan`` and ``run`` would refuse)."""
    hap = pool.settings.haproxy
    if hap is None or pool.settings.load_balancer != "haproxy":
        return
    room = hap.slots - size
    if room < pool.settings.batch_size:
        on_event(f"warning: {pool.role}: {size} node(s) in {hap.slots} HAProxy slot(s) leave "
                 f"no room for a surge of batch_size {pool.settings.batch_size}; raise "
                 f"rollout.haproxy.slots to at least {size + pool.settings.batch_size}")


def _checkpoint(cancel: Callable[[], bool]) -> None:
    if cancel():
        raise Interrupted(_STOPPED)


def _undo(data: DataDir, lab: LabContext, env: Environment,
          launched: dict[str, Node | None], on_event: Events) -> list[str]:
    """Take every node this run launched out of its LB and remove it (idempotent)."""
    pools = {p.role: p for p in lab_pools(env)}
    for name, node in launched.items():
        pool = pools.get(node.role) if node is not None else None
        if node is not None and pool is not None and haproxy_process.haproxy_running(data):
            try:
                _load_balancer(data, pool).remove(node)
            except DriverError as exc:
                on_event(f"{name}: could not take it out of HAProxy: {exc}")
        on_event(f"removing {name} (lab up was interrupted)")
        nodes.remove_node(lab, name)
    return sorted(launched)


def _converge(
    data: DataDir, lab: LabContext, pool: Pool, images: LabImageStore, size: int,
    on_event: Events, clock: Clock, cancel: Callable[[], bool],
    launched: dict[str, Node | None],
) -> None:
    provider = LabProvider(lab, pool, images)
    lb = _load_balancer(data, pool)
    present = provider.list()
    for node in present:
        if node.state is NodeState.REMOVING:
            on_event(f"{pool.role}: finishing the removal of {node.name}")
            provider.finish_removal(node)
    present = [n for n in present if n.state is not NodeState.REMOVING]
    addresses = {n.address for n in present}
    for member in lb.members():
        if member.target and member.target not in addresses:
            on_event(f"{pool.role}: clearing slot {member.slot} ({member.target}: no such node)")
            lb.remove(_stale_node(pool, member))
    for node in present:
        if node.state is NodeState.STOPPED:
            on_event(f"{pool.role}: restarting {node.name} (its nspawn had exited)")
            provider.start(node)
    present = sorted((n for n in provider.list() if n.state is not NodeState.REMOVING),
                     key=lambda n: (n.created_at, n.name))
    for extra in present[size:]:
        on_event(f"{pool.role}: removing {extra.name} (pool size is {size})")
        lb.remove(extra)
        nodes.remove_node(lab, extra.name)
    present = present[:size]
    if len(present) < size:
        running = Counter(n.image_id for n in present)
        image = (images.get(running.most_common(1)[0][0]) if running
                 else images.oldest(pool.role))
        taken = {r.name for r in nodes.list_nodes(lab)}
        for _ in range(size - len(present)):
            _checkpoint(cancel)
            name = _new_name(pool.role, taken)
            taken.add(name)
            on_event(f"{pool.role}: launching {name} from {image.id}")
            launched[name] = None  # recorded before the launch: an interrupt undoes it
            node = provider.launch(LaunchSpec(name=name, role=pool.role, env=pool.env,
                                              image=image))
            launched[name] = node
            present.append(node)
    # Nodes already in service passed HAProxy's checks; probe only the others.
    serving = {m.target for m in lb.members() if m.in_service}
    joining = [n for n in present if n.lb_target not in serving]
    _wait_ready(provider, joining, pool, clock, on_event, cancel)
    for node in joining:
        lb.add(node)
    _wait_up(lb, present, pool, clock, cancel)
    on_event(f"{pool.role}: {len(present)} node(s) in service")


def _wait_ready(provider: LabProvider, pending: list[Node], pool: Pool, clock: Clock,
                on_event: Events, cancel: Callable[[], bool]) -> None:
    deadline = clock.now() + pool.settings.timeouts.ready
    waiting = {n.name: n for n in pending}
    last: dict[str, str] = {}
    while waiting:
        for name, node in list(waiting.items()):
            probe = provider.readiness(node)
            if probe.ready:
                del waiting[name]
            else:
                last[name] = probe.detail
        if not waiting:
            return
        if clock.now() > deadline:
            detail = "; ".join(f"{n}: {last.get(n, '')}" for n in sorted(waiting))
            raise DriverError(
                f"{pool.role}: node(s) not ready after {pool.settings.timeouts.ready:.0f}s: "
                f"{detail}",
                hint="see each node's console.log under the data directory's lab/nodes/",
            )
        _checkpoint(cancel)
        clock.sleep(0.2)


def _wait_up(lb: LoadBalancer, want: list[Node], pool: Pool, clock: Clock,
             cancel: Callable[[], bool]) -> None:
    deadline = clock.now() + pool.settings.timeouts.lb_up
    targets = {n.lb_target for n in want}
    while True:
        members = {m.target: m for m in lb.members() if m.target in targets}
        down = sorted(t for t in targets if t not in members or not members[t].in_service)
        if not down:
            return
        if clock.now() > deadline:
            states = ", ".join(f"{t}={_lb_state(members.get(t))}" for t in down)
            raise DriverError(
                f"{pool.role}: HAProxy does not report node(s) UP after "
                f"{pool.settings.timeouts.lb_up:.0f}s: {states}",
                hint=f"check {pool.settings.health_path} on those nodes",
            )
        _checkpoint(cancel)
        clock.sleep(0.2)


def lab_down(env: Environment, data: DataDir, *, on_event: Events = _quiet) -> None:
    """Remove the lab's nodes (orphaned ones too), network, NAT rules and
    HAProxy, and return once each is gone (each removal waits, bounded, for
    its processes to exit); keep the images."""
    require_root("lab down")
    require_programs(["ip", "iptables"])
    lab = LabContext(data, env.settings.lab)
    for rec in nodes.list_nodes(lab):
        on_event(f"removing {rec.name}")
        nodes.remove_node(lab, rec.name)
    # Nodes whose record went but whose init or netns did not (an earlier
    # removal that missed them): found by their init's marker or their veth.
    for name, left in orphans.find_orphans(lab).items():
        on_event(f"killing orphaned node {name} ({left})")
        orphans.remove_orphan(lab, name)
    if haproxy_process.haproxy_running(data):
        on_event("stopping HAProxy")
    haproxy_process.stop_haproxy(data)
    if prometheus.prometheus_pid(data) is not None:
        on_event("stopping Prometheus")
    prometheus.stop_prometheus(data)
    on_event(f"removing bridge {lab.settings.bridge} and its NAT rules")
    network.remove_network(lab.settings)


def lab_status(env: Environment, data: DataDir) -> LabStatus:
    """What runs now: nodes with their image, LB slot and state, and the frontends."""
    lab = LabContext(data, env.settings.lab)
    running = haproxy_process.haproxy_running(data)
    frontends: dict[str, str] = {}
    members: dict[str, Member] = {}
    warnings: list[str] = []
    for pool in lab_pools(env):
        hap = pool.settings.haproxy
        if hap is None:
            continue
        frontends[pool.role] = f"http://{hap.frontend_address}:{hap.frontend_port}/"
        if running:
            try:
                lb = _load_balancer(data, pool)
                members.update({m.target: m for m in lb.members() if m.target})
            except DriverError as exc:
                warnings.append(f"{pool.role}: cannot read HAProxy: {exc}")
    statuses = []
    builders: list[str] = []
    for rec in nodes.list_nodes(lab):
        if rec.removing:
            continue
        if rec.writable:  # a bake's builder, not a pool node
            builders.append(rec.name)
            continue
        member = members.get(rec.address)
        statuses.append(NodeStatus(
            name=rec.name, address=rec.address, image=rec.image_version,
            image_id=rec.image_id, role=rec.role,
            lb_state=_lb_state(member) if running else "unknown",
            slot=member.slot if member else None,
            state=(NodeState.RUNNING if nodes.node_running(lab, rec) else NodeState.STOPPED).value,
        ))
    return LabStatus(
        env=env.name, frontends=frontends, nodes=statuses, haproxy=running,
        bridge=lab.settings.bridge, subnet=lab.settings.subnet, warnings=warnings,
        builders=builders, prometheus=_prometheus_url(env, data),
    )


def _prometheus_url(env: Environment, data: DataDir) -> str:
    ports = lab_metrics_ports(env)
    running = ports is not None and prometheus.prometheus_pid(data) is not None
    return ports.url if ports is not None and running else ""
