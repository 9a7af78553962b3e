"""Auto Scaling group membership and launch templates, for ASG pools.

A surge swap keeps the group's desired capacity where it was:

| step                        | call                                        | desired |
|-----------------------------|---------------------------------------------|---------|
| new node running            | ``attach_instances``                        | N + 1   |
| old node retired            | ``detach_instances`` with decrement         | N       |
| old node terminated         | ``terminate_instances`` (no longer a member)| N       |
| rollout succeeded           | launch template: new version, new AMI, default | N    |

Detaching before terminating matters: terminating a member makes the group
launch a replacement from the (old) launch template.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from rollout.backends.aws.session import AwsClients, aws_errors
from rollout.errors import ConfigError, DriverError, NotFoundError

log = logging.getLogger("rollout.backends.aws")

# Lifecycle states in which an instance still counts against desired capacity.
_COUNTED = {"Pending", "Pending:Wait", "Pending:Proceed", "InService", "Warmed:Pending"}


@dataclass(frozen=True)
class Membership:
    """One instance of the group, as Auto Scaling sees it."""

    instance_id: str
    lifecycle: str  # InService, Pending, Standby, Detaching, Terminating...
    protected: bool


@dataclass(frozen=True)
class GroupState:
    name: str
    desired: int
    min_size: int
    max_size: int
    members: dict[str, Membership]
    launch_template: dict[str, str] | None  # {"LaunchTemplateId"/"Name", "Version"}
    target_groups: tuple[str, ...]
    new_instances_protected: bool
    subnets: tuple[str, ...]


class AutoScalingGroup:
    """Operations on one Auto Scaling group, each a single bounded call."""

    def __init__(self, clients: AwsClients, name: str) -> None:
        self.clients = clients
        self.name = name

    def describe(self) -> GroupState:
        with aws_errors("describe auto scaling group", self.name):
            groups = self.clients.paginate(
                "autoscaling",
                "describe_auto_scaling_groups",
                "AutoScalingGroups",
                AutoScalingGroupNames=[self.name],
            )
        if not groups:

            raise NotFoundError(
                f"auto scaling group {self.name!r} does not exist in this region",
                hint="check aws.auto_scaling_group and aws.region in the pool's group_vars",
            )
        g: dict[str, Any] = groups[0]
        members = {
            i["InstanceId"]: Membership(
                i["InstanceId"],
                i.get("LifecycleState", ""),
                bool(i.get("ProtectedFromScaleIn", False)),
            )
            for i in g.get("Instances", [])
        }
        lt = g.get("LaunchTemplate")
        zone_ids = str(g.get("VPCZoneIdentifier") or "")
        return GroupState(
            name=self.name,
            desired=int(g["DesiredCapacity"]),
            min_size=int(g["MinSize"]),
            max_size=int(g["MaxSize"]),
            members=members,
            launch_template=dict(lt) if lt else None,
            target_groups=tuple(g.get("TargetGroupARNs", []) or []),
            new_instances_protected=bool(g.get("NewInstancesProtectedFromScaleIn", False)),
            subnets=tuple(s for s in zone_ids.split(",") if s),
        )

    def attach(self, instance_id: str, *, protect: bool = True) -> None:
        """Make a running instance a member (desired + 1). Idempotent.

        While the rollout runs the new member is protected from scale-in, so a
        scale-in event does not pick the node being brought into service.
        """
        state = self.describe()
        member = state.members.get(instance_id)
        if (
            member is not None
            and member.lifecycle == "InService"
            and (member.protected or not protect)
        ):
            return  # already done: readiness may ask again
        if instance_id not in state.members:
            if state.desired + 1 > state.max_size:

                raise DriverError(
                    f"auto scaling group {self.name!r}: attaching {instance_id} would need "
                    f"desired capacity {state.desired + 1} but MaxSize is {state.max_size}",
                    hint="raise the group's MaxSize by at least the rollout's batch_size",
                )
            with aws_errors("attach instance", f"{instance_id} to group {self.name!r}"):
                self.clients.autoscaling.attach_instances(
                    AutoScalingGroupName=self.name, InstanceIds=[instance_id]
                )
        elif state.members[instance_id].lifecycle == "Standby":
            self.exit_standby(instance_id)
        if protect:
            self.protect([instance_id], True)

    def detach(self, instance_id: str) -> bool:
        """Remove a member with decrement (desired - 1). False if not a member."""
        state = self.describe()
        member = state.members.get(instance_id)
        if member is None or member.lifecycle in (
            "Detaching",
            "Detached",
            "Terminating",
            "Terminated",
        ):
            return False
        if member.protected:
            # Detaching is not a scale-in, so AWS allows it; say so anyway.
            log.warning(
                "%s is protected from scale-in in group %s; the rollout retires it",
                instance_id,
                self.name,
            )
        with aws_errors("detach instance", f"{instance_id} from group {self.name!r}"):
            self.clients.autoscaling.detach_instances(
                AutoScalingGroupName=self.name,
                InstanceIds=[instance_id],
                ShouldDecrementDesiredCapacity=True,
            )
        return True

    def enter_standby(self, instance_id: str) -> None:
        """Take an InService member out of service (desired - 1), so that
        stopping it does not make the group replace it."""
        state = self.describe()
        member = state.members.get(instance_id)
        if member is None or member.lifecycle != "InService":
            return
        with aws_errors("enter standby", f"{instance_id} in group {self.name!r}"):
            self.clients.autoscaling.enter_standby(
                AutoScalingGroupName=self.name,
                InstanceIds=[instance_id],
                ShouldDecrementDesiredCapacity=True,
            )

    def exit_standby(self, instance_id: str) -> None:
        with aws_errors("exit standby", f"{instance_id} in group {self.name!r}"):
            self.clients.autoscaling.exit_standby(
                AutoScalingGroupName=self.name, InstanceIds=[instance_id]
            )

    def protect(self, instance_ids: list[str], protected: bool) -> None:
        if not instance_ids:
            return
        with aws_errors("set instance protection", f"{', '.join(instance_ids)} in {self.name!r}"):
            self.clients.autoscaling.set_instance_protection(
                AutoScalingGroupName=self.name,
                InstanceIds=instance_ids,
                ProtectedFromScaleIn=protected,
            )

    def settle_protection(self) -> None:
        """Give every in-service member the group's own default protection again
        (the rollout protected its new members while it ran)."""
        state = self.describe()
        wrong = [
            m.instance_id
            for m in state.members.values()
            if m.lifecycle in _COUNTED and m.protected != state.new_instances_protected
        ]
        self.protect(wrong, state.new_instances_protected)


class LaunchTemplate:
    """One launch template, by id (``lt-...``) or name."""

    def __init__(self, clients: AwsClients, ref: str) -> None:
        self.clients = clients
        self.ref = ref

    def _which(self) -> dict[str, str]:
        if self.ref.startswith("lt-"):
            return {"LaunchTemplateId": self.ref}
        return {"LaunchTemplateName": self.ref}

    def default_image(self) -> str | None:
        with aws_errors("describe launch template", self.ref):
            versions = self.clients.ec2.describe_launch_template_versions(
                **self._which(), Versions=["$Default"]
            )["LaunchTemplateVersions"]
        if not versions:
            return None
        ami = versions[0].get("LaunchTemplateData", {}).get("ImageId")
        return str(ami) if ami else None

    def point_at(self, ami: str, description: str) -> int | None:
        """A new version with ``ami`` (all else as the default version), made the
        default. Returns the new version number, or None if already there."""
        if self.default_image() == ami:
            return None
        with aws_errors("update launch template", f"{self.ref} to {ami}"):
            created = self.clients.ec2.create_launch_template_version(
                **self._which(),
                SourceVersion="$Default",
                VersionDescription=description[:255],
                LaunchTemplateData={"ImageId": ami},
            )["LaunchTemplateVersion"]
            number = int(created["VersionNumber"])
            self.clients.ec2.modify_launch_template(**self._which(), DefaultVersion=str(number))
        return number


def group_template_ref(state: GroupState) -> tuple[str | None, str | None]:
    """(launch template id or name, version) the group launches from."""
    lt = state.launch_template
    if not lt:
        return None, None
    return lt.get("LaunchTemplateId") or lt.get("LaunchTemplateName"), lt.get("Version")


def point_group_at(
    clients: AwsClients, group: AutoScalingGroup, ami: str, description: str
) -> int | None:
    """Leave the group launching ``ami``: a new default launch template version,
    and the group moved to it when it pins a version number."""
    state = group.describe()
    ref, version = group_template_ref(state)
    if ref is None:

        raise ConfigError(
            f"auto scaling group {group.name!r} has no launch template (a launch "
            "configuration or a mixed instances policy), so rollout cannot point it at "
            f"{ami}",
            hint="move the group to a launch template",
        )
    number = LaunchTemplate(clients, ref).point_at(ami, description)
    if number is not None and version not in (None, "$Default", "$Latest"):
        key = "LaunchTemplateId" if ref.startswith("lt-") else "LaunchTemplateName"
        with aws_errors("update auto scaling group", f"{group.name} to template version {number}"):
            clients.autoscaling.update_auto_scaling_group(
                AutoScalingGroupName=group.name, LaunchTemplate={key: ref, "Version": str(number)}
            )
    return number
