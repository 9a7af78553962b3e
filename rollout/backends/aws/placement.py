"""Where a new node of an AWS pool goes: its subnet (the availability zone
with the fewest pool nodes, or the zone its data volume is in) and the launch
template it starts from (the pool's, else its Auto Scaling group's)."""

from __future__ import annotations

from collections import Counter

from rollout.backends.aws.asg import AutoScalingGroup
from rollout.backends.aws.ec2 import template_ref
from rollout.backends.aws.session import AwsClients, aws_errors
from rollout.config import AwsSettings
from rollout.errors import DriverError
from rollout.model import Node


class Placement:
    """Subnet and launch-template choice for one pool; zones are cached."""

    def __init__(self, clients: AwsClients, aws: AwsSettings, group: AutoScalingGroup | None,
                 where: str) -> None:
        self.clients = clients
        self.aws = aws
        self.group = group
        self.where = where
        self._subnet_az: dict[str, str] = {}

    def subnets(self) -> list[str]:
        if self.aws.subnets:
            return list(self.aws.subnets)
        if self.group is not None:
            return list(self.group.describe().subnets)
        return []

    def _learn_zones(self, subnets: list[str]) -> None:
        missing = [s for s in subnets if s not in self._subnet_az]
        if missing:
            with aws_errors("describe subnets", ", ".join(missing)):
                for sub in self.clients.paginate(
                    "ec2", "describe_subnets", "Subnets", SubnetIds=missing
                ):
                    self._subnet_az[str(sub["SubnetId"])] = str(sub["AvailabilityZone"])

    def subnet_in(self, zone: str) -> str | None:
        """A pool subnet in ``zone`` (a data volume cannot leave its zone)."""
        subnets = self.subnets()
        if not subnets:
            return None
        self._learn_zones(subnets)
        for subnet in subnets:
            if self._subnet_az.get(subnet) == zone:
                return subnet
        raise DriverError(
            f"{self.where}: no subnet in {zone}, where the data volume is",
            hint="add a subnet of that availability zone to aws.subnets",
        )

    def pick_subnet(self, nodes: list[Node]) -> str | None:
        """The subnet of the availability zone with the fewest pool nodes."""
        subnets = self.subnets()
        if len(subnets) <= 1:
            return subnets[0] if subnets else None
        self._learn_zones(subnets)
        per_az = Counter(n.labels.get("aws:az", "") for n in nodes)

        def load(subnet: str) -> tuple[int, int]:
            return per_az[self._subnet_az.get(subnet, subnet)], subnets.index(subnet)

        return min(subnets, key=load)

    def template(self) -> dict[str, str] | None:
        ref, version = self.aws.launch_template, self.aws.launch_template_version
        if ref is None and self.group is not None:
            lt = self.group.describe().launch_template
            if lt:
                ref = lt.get("LaunchTemplateId") or lt.get("LaunchTemplateName")
                version = lt.get("Version") or "$Default"
        return template_ref(ref, version) if ref else None
