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
from typing import Any

from rollout.backends.aws.session import AwsClients, aws_errors
from rollout.config import AwsSettings
from rollout.errors import ConfigError, DriverError
from rollout.model import Admin, Health, LbCapacity, Member, Node

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
    ``instance`` targets (the target id is the node's instance id)."""

    def __init__(
        self,
        target_group_arn: str,
        *,
        clients: AwsClients,
        health_source: HealthSource | None = None,
    ) -> None:
        if not target_group_arn.startswith("arn:"):
            raise ConfigError(
                f"aws.target_group_arn: {target_group_arn!r} is not an ARN",
                hint="copy the target group's ARN from the console or CLI",
            )
        self.arn = target_group_arn
        self.clients = clients
        self.health_source = health_source or describe_target_health(clients)
        self._deregistered: set[str] = set()
        self._delay: float | None = None

    def stage(self, node: Node) -> Member:
        """A single target group cannot hold a node that is checked but takes
        no traffic: blue-green on ELBv2 is not built yet."""
        raise ConfigError(f"target group {self.arn}: blue-green is not supported on ELBv2 yet",
                          hint="use strategy surge for an aws pool")

    def switch(self, ready: Sequence[Node], drain: Sequence[Node]) -> None:
        """See :meth:`stage`."""
        raise ConfigError(f"target group {self.arn}: blue-green is not supported on ELBv2 yet",
                          hint="use strategy surge for an aws pool")

    def set_weight(self, node: Node, weight: int | None) -> None:
        """Targets of one ELBv2 target group have no weights (weights are
        between target groups, in a listener's forward action): refused."""
        raise ConfigError(
            f"ELBv2 target group {self.arn}: targets have no weights (node {node.name})",
            hint="remove the weight steps from canary_steps for this pool",
        )

    def capacity(self) -> LbCapacity:
        """ELBv2's quota of targets per target group (the AWS default)."""
        return LbCapacity(TARGETS_PER_GROUP, "the ELBv2 quota \"targets per target group\" "
                          "(Service Quotas)")

    @classmethod
    def from_settings(cls, settings: AwsSettings, **kwargs: Any) -> Elbv2LoadBalancer:
        if not settings.target_group_arn:
            raise ConfigError("load_balancer elbv2 needs aws.target_group_arn")
        clients = kwargs.pop("clients", None) or AwsClients.from_settings(settings)
        return cls(settings.target_group_arn, clients=clients, **kwargs)

    def _target(self, node: Node) -> str:
        target = node.lb_target
        if not target.startswith("i-"):
            raise DriverError(
                f"target group {self.arn}: node {node.name} has no instance id (target {target!r})",
                hint="an ELBv2 pool needs the aws provider",
            )
        return target

    def members(self) -> list[Member]:
        found: dict[str, Member] = {}
        for desc in self.health_source(self.arn):
            tid = str(desc["Target"]["Id"])
            state = str(desc.get("TargetHealth", {}).get("State", "unavailable"))
            admin, health = _MAP.get(state, (Admin.READY, Health.UNKNOWN))
            port = desc["Target"].get("Port")
            found[tid] = Member(
                slot=tid,
                target=tid,
                admin=admin,
                health=health,
                sessions=1 if admin is Admin.DRAIN else 0,
                port=int(port) if port is not None else None,
            )
        for tid in sorted(self._deregistered - set(found)):
            found[tid] = Member(slot=tid, target=tid, admin=Admin.MAINT, health=Health.UNKNOWN)
        return list(found.values())

    def member(self, node: Node) -> Member | None:
        target = self._target(node)
        return next((m for m in self.members() if m.target == target), None)

    def _register(self, target: str) -> None:
        with aws_errors("register target", f"{target} in {self.arn}"):
            self.clients.elbv2.register_targets(TargetGroupArn=self.arn, Targets=[{"Id": target}])
        self._deregistered.discard(target)

    def _deregister(self, target: str) -> None:
        try:
            with aws_errors("deregister target", f"{target} from {self.arn}"):
                self.clients.elbv2.deregister_targets(
                    TargetGroupArn=self.arn, Targets=[{"Id": target}]
                )
        except DriverError as exc:
            # InvalidTarget: not registered (or the instance is gone): done already.
            if "InvalidTarget" not in str(exc):
                raise

    def add(self, node: Node) -> Member:
        target = self._target(node)
        existing = self.member(node)
        if existing is None or existing.admin is not Admin.READY:
            self._register(target)
            existing = self.member(node)
        return existing or Member(
            slot=target, target=target, admin=Admin.READY, health=Health.UNKNOWN
        )

    def set_admin(self, node: Node, admin: Admin) -> None:
        target = self._target(node)
        if admin is Admin.READY:
            current = self.member(node)
            if current is None or current.admin is not Admin.READY:
                self._register(target)
            return
        # DRAIN and MAINT both deregister: ELBv2 drains a deregistered target
        # for the deregistration delay and then drops it.
        self._deregister(target)
        self._deregistered.add(target)

    def remove(self, node: Node) -> None:
        target = self._target(node)
        self._deregister(target)
        self._deregistered.discard(target)

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
