"""Finding a pool's EC2 instances and turning them into nodes: the read-only
half of :class:`rollout.backends.aws.provider.AwsProvider`. Every call here
describes; none changes anything."""

from __future__ import annotations

import builtins
import logging
from typing import Any

from rollout.backends.aws import (
    TAG_ENV,
    TAG_NAME,
    TAG_ROLE,
)
from rollout.backends.aws.asg import AutoScalingGroup, GroupState
from rollout.backends.aws.ec2 import (
    LIVE_STATES,
    instance_node,
)
from rollout.backends.aws.images import AwsImageStore
from rollout.backends.aws.session import AwsClients, aws_errors
from rollout.config import AwsSettings
from rollout.errors import NotFoundError
from rollout.model import Image, Node

log = logging.getLogger("rollout.backends.aws")


class PoolInstances:
    """The instances of one pool (role in an environment), by its tags and its
    Auto Scaling group."""

    def __init__(self, clients: AwsClients, env: str, role: str, aws: AwsSettings,
                 group: AutoScalingGroup | None, images: AwsImageStore) -> None:
        self.clients = clients
        self.env = env
        self.role = role
        self.aws = aws
        self.group = group
        self.images = images
        self._ami_images: dict[str, Image | None] = {}

    def list(self) -> builtins.list[Node]:
        """Every live node of the pool: tagged instances, plus members the
        group launched itself (they carry our tags only if the group
        propagates them; they are the pool's nodes either way)."""
        instances = {str(i["InstanceId"]): i for i in self.describe(self.pool_filters())}
        group = None
        if self.group is not None:
            group = self.group.describe()
            extra = [m for m in group.members if m not in instances]
            if extra:
                live = [{"Name": "instance-state-name", "Values": LIVE_STATES}]
                for inst in self.describe(live, extra):
                    instances[str(inst["InstanceId"])] = inst
        return self.nodes(builtins.list(instances.values()), group)


    def describe(
        self, filters: builtins.list[dict[str, Any]], ids: builtins.list[str] | None = None
    ) -> builtins.list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"Filters": filters}
        if ids:
            kwargs["InstanceIds"] = ids
        with aws_errors("describe instances", f"of pool {self.env}/{self.role}"):
            reservations = self.clients.paginate(
                "ec2", "describe_instances", "Reservations", **kwargs
            )
        return [i for r in reservations for i in r.get("Instances", [])]

    def pool_filters(self) -> builtins.list[dict[str, Any]]:
        return [
            {"Name": f"tag:{TAG_ROLE}", "Values": [self.role]},
            {"Name": f"tag:{TAG_ENV}", "Values": [self.env]},
            {"Name": "instance-state-name", "Values": LIVE_STATES},
        ]

    def _image_of(self, amis: set[str]) -> None:
        unknown = sorted(a for a in amis if a not in self._ami_images)
        if unknown:
            found = self.images.by_ami(unknown)
            for ami in unknown:  # AMIs are immutable, so this never goes stale
                self._ami_images[ami] = found.get(ami)

    def nodes(
        self, instances: builtins.list[dict[str, Any]], group: GroupState | None = None
    ) -> builtins.list[Node]:
        lifecycle: dict[str, str] = {}
        if self.group is not None and instances:
            group = group or self.group.describe()
            lifecycle = {m.instance_id: m.lifecycle for m in group.members.values()}
        self._image_of({str(i.get("ImageId", "")) for i in instances if i.get("ImageId")})
        nodes = [
            instance_node(
                i,
                role=self.role,
                env=self.env,
                image=self._ami_images.get(str(i.get("ImageId", ""))),
                ssh_address=self.aws.ssh_address,
                lifecycle=lifecycle.get(str(i["InstanceId"])),
            )
            for i in instances
        ]
        return sorted(nodes, key=lambda n: (n.created_at, n.name))

    def find(self, node: Node) -> dict[str, Any] | None:
        """The live instance behind ``node`` (by instance id, else by name)."""
        if node.target.startswith("i-"):
            try:
                found = self.describe(
                    [{"Name": "instance-state-name", "Values": LIVE_STATES}], [node.target]
                )
            except NotFoundError:  # InvalidInstanceID.NotFound: long gone
                return None
            return found[0] if found else None
        by_name = self.by_name(node.name)
        return by_name[0] if by_name else None

    def by_name(self, name: str) -> builtins.list[dict[str, Any]]:
        return self.describe(
            [*self.pool_filters(), {"Name": f"tag:{TAG_NAME}", "Values": [name]}]
        )
