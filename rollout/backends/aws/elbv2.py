"""The ELBv2 load balancer: the members of one target group.

ELBv2 has no separate drain: deregistering a target *is* the drain. The target
shows ``draining`` until its connections close or the target group's
``deregistration_delay.timeout_seconds`` passes, then it is gone.

| ELBv2 target state          | Member admin | Member health | sessions |
|-----------------------------|--------------|---------------|----------|
| healthy                     | READY        | UP            | 0        |
| initial                     | READY        | UNKNOWN       | 0        |
| unhealthy                   | READY        | DOWN          | 0        |
| unavailable (checks off)    | READY        | UNKNOWN       | 0        |
| draining                    | DRAIN        | UNKNOWN       | 1        |
| unused                      | MAINT        | UNKNOWN       | 0        |
| (gone after a deregister)   | MAINT        | UNKNOWN       | 0        |

ELBv2 exposes no per-target connection count, so ``sessions`` is a stand-in:
1 while the target drains, 0 once ELBv2 is done with it. The decision core
waits for ``sessions == 0`` before it moves on, which is therefore exactly
"the target is no longer draining": the deregistration delay is honoured.
Set ``timeouts.drain`` at least as long as that delay
(:meth:`Elbv2LoadBalancer.deregistration_delay`). The other counters (5xx,
check failures) are per target group in CloudWatch, not per target, so they
stay 0 and the canary's 5xx comparison has nothing to go on for ELBv2.

Targets this object deregistered are still reported, as MAINT, until
:meth:`remove`, like an HAProxy slot in maintenance; another process sees
them gone. ``add``/``set_admin(READY)`` register (again): restoring a node
means registering it again, and it is in service only once ELBv2 says
``healthy`` (``initial`` is not enough).

Target health comes from ``health_source(target_group_arn)``, which returns
``describe_target_health``'s ``TargetHealthDescriptions``. The default asks
ELBv2; tests pass a scripted one (moto never reports initial, unhealthy or
draining).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rollout.backends.aws.listener import Forward, Listener
from rollout.backends.aws.preview import PreviewRule
from rollout.backends.aws.session import AwsClients, aws_errors
from rollout.backends.aws.weights import NORMAL_WEIGHT, member_weight, split, until_healthy
from rollout.clock import SystemClock
from rollout.config import AwsSettings
from rollout.errors import ConfigError, DriverError
from rollout.model import Admin, Health, LbCapacity, Member, Node
from rollout.protocols import Clock

HealthSource = Callable[[str], list[dict[str, Any]]]

_MAP: dict[str, tuple[Admin, Health]] = {
    "healthy": (Admin.READY, Health.UP),
    "initial": (Admin.READY, Health.UNKNOWN),
    "unhealthy": (Admin.READY, Health.DOWN),
    "unhealthy.draining": (Admin.DRAIN, Health.DOWN),
    "unavailable": (Admin.READY, Health.UNKNOWN),
    "draining": (Admin.DRAIN, Health.UNKNOWN),
    "unused": (Admin.MAINT, Health.UNKNOWN),
}


def describe_target_health(clients: AwsClients) -> HealthSource:
    """The production health source: ELBv2's own view of every target."""

    def source(arn: str) -> list[dict[str, Any]]:
        with aws_errors("describe target health", arn):
            reply = clients.elbv2.describe_target_health(TargetGroupArn=arn)
        return list(reply.get("TargetHealthDescriptions", []))

    return source


#: ELBv2's default quota of targets per target group in a region.
TARGETS_PER_GROUP = 1000


class Elbv2LoadBalancer:
    """``rollout.protocols.LoadBalancer`` over one ELBv2 target group of
    ``instance`` targets (the target id is the node's instance id), or, with
    a :class:`~rollout.backends.aws.listener.Listener`, over the pool's two
    target groups behind that listener (blue-green and weighted canary
    steps; see docs/AWS.md).

    With two groups, a target of the group the listener serves reports as
    above; a target of the idle group (weight 0) is checked but takes no
    traffic, so it reports DRAIN with its health and no sessions: a staged
    green node, or a warm blue one after the switch. A target in both groups
    reports the entry that decides its traffic (see :meth:`members`).
    """

    def __init__(
        self,
        target_group_arn: str,
        *,
        clients: AwsClients,
        health_source: HealthSource | None = None,
        listener: Listener | None = None,
        clock: Clock | None = None,
        rise_timeout: float = 300.0,
        poll: float = 5.0,
    ) -> None:
        if not target_group_arn.startswith("arn:"):
            raise ConfigError(
                f"aws.target_group_arn: {target_group_arn!r} is not an ARN",
                hint="copy the target group's ARN from the console or CLI",
            )
        self.arn = target_group_arn
        self.clients = clients
        self.health_source = health_source or describe_target_health(clients)
        self.listener = listener
        # For a weight step, which waits for ELBv2's check of the group the
        # node moves to.
        self.clock: Clock = clock or SystemClock()
        self.rise_timeout = rise_timeout
        self.poll = poll
        self._deregistered: set[str] = set()
        self._delay: float | None = None

    def capacity(self) -> LbCapacity:
        """ELBv2's quota of targets per target group (the AWS default)."""
        return LbCapacity(TARGETS_PER_GROUP, "the ELBv2 quota \"targets per target group\" "
                          "(Service Quotas)")

    @classmethod
    def from_settings(cls, settings: AwsSettings, *, preview: bool = False,
                      **kwargs: Any) -> Elbv2LoadBalancer:
        """``preview``: the pool's ``blue_green.preview``, which puts
        ``aws.preview_rule_arn`` in rollout's hands."""
        if not settings.target_group_arn:
            raise ConfigError("load_balancer elbv2 needs aws.target_group_arn")
        clients = kwargs.pop("clients", None) or AwsClients.from_settings(settings)
        listener = None
        if settings.listener_arn and settings.alternate_target_group_arn:
            rule = settings.preview_rule_arn if preview else None
            listener = Listener(settings.listener_arn,
                                (settings.target_group_arn, settings.alternate_target_group_arn),
                                clients=clients,
                                preview=PreviewRule(rule, clients=clients) if rule else None)
        return cls(settings.target_group_arn, clients=clients, listener=listener, **kwargs)

    def _target(self, node: Node) -> str:
        target = node.lb_target
        if not target.startswith("i-"):
            raise DriverError(
                f"target group {self.arn}: node {node.name} has no instance id (target {target!r})",
                hint="an ELBv2 pool needs the aws provider",
            )
        return target

    # --- observation ---------------------------------------------------------------

    def _forward(self) -> Forward:
        if self.listener is None:
            return Forward({self.arn: 1}, self.arn)
        return self.listener.read()

    def _entries(self, forward: Forward) -> list[_Entry]:
        """Every registration in the pool's groups, as ELBv2 reports it."""
        entries = []
        for arn in forward.weights:
            for desc in self.health_source(arn):
                port = desc["Target"].get("Port")
                entries.append(_Entry(
                    arn, str(desc["Target"]["Id"]),
                    str(desc.get("TargetHealth", {}).get("State", "unavailable")),
                    int(port) if port is not None else None))
        return entries

    def members(self) -> list[Member]:
        """Each target once. A target registered in both groups (it moves
        between them for a weight step) reports the registration that is not
        draining, then the UP one, then one in a group that takes traffic,
        then the one in the canary (idle) group: the one its traffic follows.
        A target draining from a group at weight 0 is not reported there: it
        takes no traffic, so its removal is over as far as rollout is
        concerned (a warm blue node retires without waiting for the delay)."""
        forward = self._forward()
        entries = self._entries(forward)
        best: dict[str, _Entry] = {}
        for entry in entries:
            if entry.state.endswith("draining") and not forward.takes_traffic(entry.arn):
                continue  # leaving a group at weight 0: nothing to wait for
            current = best.get(entry.target)
            if current is None or _rank(entry, forward) > _rank(current, forward):
                best[entry.target] = entry
        found = {tid: self._member(entry, forward, entries) for tid, entry in best.items()}
        for tid in sorted(self._deregistered - set(found)):
            found[tid] = Member(slot=tid, target=tid, admin=Admin.MAINT, health=Health.UNKNOWN)
        return list(found.values())

    def _member(self, entry: _Entry, forward: Forward, entries: list[_Entry]) -> Member:
        admin, health = _MAP.get(entry.state, (Admin.READY, Health.UNKNOWN))
        serves = forward.takes_traffic(entry.arn)
        if not serves and admin is not Admin.DRAIN:
            # Idle group: health-checked (it stays in the listener at weight
            # 0), no traffic. "unused": the listener does not name it yet.
            admin = Admin.DRAIN
            health = Health.UNKNOWN if entry.state == "unused" else health
        weight: int | None = None
        if self.listener is not None:
            weight = NORMAL_WEIGHT
            if serves and entry.arn == forward.idle and admin is Admin.READY:
                weight = member_weight(
                    _live(entries, forward.serving), _live(entries, forward.idle),
                    (forward.weights[forward.serving], forward.weights[forward.idle]))
        return Member(
            slot=entry.target, target=entry.target, admin=admin, health=health,
            sessions=1 if entry.state.endswith("draining") else 0, port=entry.port,
            weight=weight, normal_weight=NORMAL_WEIGHT if self.listener is not None else None)

    def member(self, node: Node) -> Member | None:
        target = self._target(node)
        return next((m for m in self.members() if m.target == target), None)

    def _groups_of(self, target: str, forward: Forward) -> dict[str, str]:
        """The groups ``target`` is registered in (not draining): arn -> state."""
        return {e.arn: e.state for e in self._entries(forward)
                if e.target == target and not e.state.endswith("draining")}

    # --- registrations -------------------------------------------------------------

    def _register(self, target: str, arn: str | None = None) -> None:
        arn = arn or self.arn
        with aws_errors("register target", f"{target} in {arn}"):
            self.clients.elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": target}])
        self._deregistered.discard(target)

    def _deregister(self, target: str, arn: str | None = None) -> None:
        arn = arn or self.arn
        try:
            with aws_errors("deregister target", f"{target} from {arn}"):
                self.clients.elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": target}])
        except DriverError as exc:
            # InvalidTarget: not registered (or the instance is gone): done already.
            if "InvalidTarget" not in str(exc):
                raise

    def _leave(self, target: str) -> None:
        """Deregister ``target`` from every group. When it is the last target
        of a canary group that takes traffic, the listener first sends all
        traffic back to the serving group (an empty group must not get any)."""
        forward = self._forward()
        groups = self._groups_of(target, forward)
        if self.listener is not None and forward.takes_traffic(forward.idle):
            rest = [e for e in self._entries(forward) if e.arn == forward.idle
                    and e.target != target and not e.state.endswith("draining")]
            if forward.idle in groups and not rest:
                self.listener.serve(forward.serving)
        for arn in groups or {self.arn: ""}:
            self._deregister(target, arn)

    def add(self, node: Node) -> Member:
        target = self._target(node)
        existing = self.member(node)
        if existing is None or existing.admin is not Admin.READY:
            self._register(target, self._forward().serving)
            existing = self.member(node)
        return existing or Member(
            slot=target, target=target, admin=Admin.READY, health=Health.UNKNOWN
        )

    def set_admin(self, node: Node, admin: Admin) -> None:
        target = self._target(node)
        if admin is Admin.READY:
            current = self.member(node)
            if current is None or current.admin is not Admin.READY:
                self._register(target, self._forward().serving)
            return
        # DRAIN and MAINT both deregister: ELBv2 drains a deregistered target
        # for the deregistration delay and then drops it.
        self._leave(target)
        self._deregistered.add(target)

    def remove(self, node: Node) -> None:
        target = self._target(node)
        self._leave(target)
        self._deregistered.discard(target)

    # --- blue-green and weights (the listener) ----------------------------------------

    def _listener(self, what: str) -> Listener:
        if self.listener is None:
            raise ConfigError(
                f"target group {self.arn}: {what} needs aws.listener_arn and "
                "aws.alternate_target_group_arn (a single target group cannot hold a node "
                "that is checked but takes no traffic, and its targets have no weights)",
                hint="add both keys to the pool's rollout.aws (see docs/AWS.md)")
        return self.listener

    def stage(self, node: Node) -> Member:
        """Register ``node`` in the idle group, which the listener keeps at
        weight 0: health-checked, no traffic. A node already serving is left."""
        listener, target = self._listener(f"blue-green (node {node.name})"), self._target(node)
        forward = listener.read()
        if not forward.attached or forward.weights[forward.idle] != 0:
            # The weighted form keeps the idle group attached, hence checked.
            listener.serve(forward.serving)
        else:
            listener.sync_preview()
        if not self._groups_of(target, forward):
            self._register(target, forward.idle)
        return self.member(node) or Member(slot=target, target=target, admin=Admin.DRAIN,
                                           health=Health.UNKNOWN)

    def switch(self, ready: Sequence[Node], drain: Sequence[Node]) -> None:
        """One ``modify_listener``: the group holding the ``ready`` nodes takes
        all traffic, the other (holding ``drain``) keeps its targets, checked,
        at weight 0. A ready node in neither group is registered in the group
        that is to serve first; a drain node in that group is deregistered."""
        listener = self._listener("a blue-green switch")
        forward = listener.read()
        homes = [self._groups_of(self._target(n), forward) for n in ready]
        to = forward.idle if ready and any(forward.idle in h for h in homes) else forward.serving
        if not ready:
            to = forward.idle
        for node, home in zip(ready, homes, strict=True):
            if not home:
                self._register(self._target(node), to)
        if forward.weights[to] != 1 or forward.weights[_other(forward, to)] != 0:
            listener.serve(to)
        else:
            listener.sync_preview()  # a switch re-asserted after a kill (core/bluegreen.py)
        for node in drain:
            if to in self._groups_of(self._target(node), forward):
                self._deregister(self._target(node), to)
                self._deregistered.add(self._target(node))

    def set_weight(self, node: Node, weight: int | None) -> None:
        """A canary weight: the node moves to the idle (canary) group, and the
        listener's weighted forward gives that group the share of its targets
        at ``weight`` beside the serving group's at NORMAL_WEIGHT each. None
        moves it back, the canary group's weight back to 0 when it is the last
        canary. Either way the node is registered in the group it moves to
        and polled (on the clock, up to ``rise_timeout``) until ELBv2 says
        ``healthy`` there; only then do the weights change and is it
        deregistered from the group it leaves: it never takes traffic from a
        group that has not checked it, and it is never in neither."""
        listener = self._listener(f"a weight step (node {node.name})")
        target, forward = self._target(node), listener.read()
        serving, idle = forward.serving, forward.idle
        groups = self._groups_of(target, forward)
        if weight is None and idle not in groups:
            return
        to, leaves = (serving, idle) if weight is None else (idle, serving)
        if to not in groups:
            self._register(target, to)
        until_healthy(lambda: next((e.state for e in self._entries(self._forward())
                                    if e.arn == to and e.target == target), "absent"),
                      f"target group {to}: node {node.name} ({target})", self.clock,
                      timeout=self.rise_timeout, poll=self.poll)
        entries = self._entries(forward)
        others = _live(entries, serving) - (1 if serving in groups or to == serving else 0)
        if weight is None:
            rest = _live(entries, idle) - 1
            weights = (1, 0)
            if rest:
                each = member_weight(others, rest + 1, (forward.weights[serving],
                                                        forward.weights[idle]))
                weights = split(others, rest, each)
        else:
            weights = split(others, _live(entries, idle), weight)
            if weights[1] >= weights[0]:
                raise ConfigError(
                    f"listener {listener.arn}: weight {weight} for node {node.name} would give "
                    "the canary group half the traffic or more; on ELBv2 it must stay below half",
                    hint="use canary weight steps below 50 %")
        listener.forward(dict(zip((serving, idle), weights, strict=True)))
        if leaves in groups:
            self._deregister(target, leaves)

    def deregistration_delay(self) -> float:
        """The target group's ``deregistration_delay.timeout_seconds``."""
        if self._delay is None:
            with aws_errors("describe target group attributes", self.arn):
                attrs = self.clients.elbv2.describe_target_group_attributes(
                    TargetGroupArn=self.arn
                )["Attributes"]
            value = {a["Key"]: a["Value"] for a in attrs}.get(
                "deregistration_delay.timeout_seconds", "300"
            )
            self._delay = float(value)
        return self._delay

    def check(self) -> None:
        """Fail early, naming the ARN, when the target group does not exist."""
        with aws_errors("describe target group", self.arn):
            groups = self.clients.elbv2.describe_target_groups(TargetGroupArns=[self.arn])[
                "TargetGroups"
            ]
        if groups and groups[0].get("TargetType", "instance") != "instance":
            raise ConfigError(
                f"target group {self.arn} has target type {groups[0]['TargetType']!r}; "
                "rollout registers instances",
                hint="use a target group of type instance",
            )


@dataclass(frozen=True)
class _Entry:
    """One registration: a target in one group, in an ELBv2 state."""

    arn: str
    target: str
    state: str
    port: int | None


def _rank(entry: _Entry, forward: Forward) -> tuple[bool, bool, bool, bool]:
    return (not entry.state.endswith("draining"), entry.state == "healthy",
            forward.takes_traffic(entry.arn), entry.arn != forward.serving)


def _live(entries: list[_Entry], arn: str) -> int:
    """How many targets of group ``arn`` are registered and not draining."""
    return sum(1 for e in entries if e.arn == arn and not e.state.endswith("draining"))


def _other(forward: Forward, arn: str) -> str:
    return next(a for a in forward.weights if a != arn)
