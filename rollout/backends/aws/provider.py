"""The AWS provider: the nodes of a pool are EC2 instances, plain or in an ASG.

Nodes are found by their tags (``rollout:role`` and ``rollout:env``), which
every launch writes together with the image id and version, the rollout id and
``rollout:created-by``; reap and phoenix rely on them, so only this module
writes them. For an ASG pool the group's members count as nodes too.

| Node field   | from                                                          |
|--------------|---------------------------------------------------------------|
| name         | the ``Name`` tag when it is a valid node name, else the instance id |
| target       | the instance id (what an ELBv2 *instance* target group knows) |
| address      | the private IP, or the public one with ``aws.ssh_address: public`` |
| image_id     | the rollout image of the instance's AMI (its ``rollout:image-id``),  |
|              | else the instance's tag, else the AMI id                      |
| labels       | the instance tags plus ``aws:ami``, ``aws:az``, ``aws:asg-state``   |

Readiness is: the instance is ``running``, its instance and system status
checks are ``ok``, its data volume (if the pool keeps one) is attached, then
``probe(node)`` answers, then (ASG pools) it is an in-service, protected
member of the group. The default probe (:func:`tcp_http_probe`) connects to
SSH (port 22) and GETs the pool's ``health_path`` on ``service_port``; tests
pass a scripted probe because moto's instances have no network.

Readiness only reads. When the volume waits to be attached or the node to
join its group, it says so (``Readiness.setup``) and the core takes the step
as a journaled action: :meth:`AwsProvider.attach_volume`,
:meth:`AwsProvider.join_group`.

ASG pools (``aws.auto_scaling_group``): see :mod:`rollout.backends.aws.asg` for the
desired-capacity choreography. A new node joins once it is ready (the
``AttachInstances`` API wants a running instance); a retired one is detached
with decrement before it is terminated, so the group never launches a
replacement of its own. The application layer calls
:meth:`AwsProvider.on_rollout_succeeded` (the Provider hook) when a rollout
succeeds, to leave the launch template pointing at the new AMI.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import time
from dataclasses import replace
from typing import Any

from rollout import names
from rollout.backends.aws import (
    CREATED_BY,
    TAG_ASG,
    TAG_CREATED_BY,
    TAG_ENV,
    TAG_IMAGE_ID,
    TAG_IMAGE_VERSION,
    TAG_NAME,
    TAG_ROLE,
    TAG_ROLLOUT_ID,
)
from rollout.backends.aws.asg import AutoScalingGroup, GroupState, LaunchTemplate, point_group_at
from rollout.backends.aws.ec2 import (
    LIVE_STATES,
    Probe,
    instance_node,
    run_params,
    ssh_target_for,
    tcp_http_probe,
)
from rollout.backends.aws.images import AwsImageStore
from rollout.backends.aws.placement import Placement
from rollout.backends.aws.session import AwsClients, aws_errors, tag_list, tags_of
from rollout.backends.aws.volumes import PoolVolumes
from rollout.clock import SystemClock
from rollout.config import AwsSettings, Pool, PoolSettings
from rollout.errors import ConfigError, DriverError, NotFoundError
from rollout.model import Image, LaunchSpec, Node, Readiness, Setup, SshTarget
from rollout.protocols import Clock, Provider

log = logging.getLogger("rollout.backends.aws")


class AwsProvider(Provider):
    """``rollout.protocols.Provider`` over EC2 (and an ASG when configured)."""

    def __init__(
        self,
        env: str,
        role: str,
        settings: PoolSettings,
        *,
        clients: AwsClients | None = None,
        probe: Probe | None = None,
        images: AwsImageStore | None = None,
        where: str = "aws settings",
        clock: Clock | None = None,
    ) -> None:
        self.env = names.name(env, "environment")
        self.role = names.name(role, "role")
        if settings.aws is None:
            raise ConfigError(f"{where}: provider aws needs the key 'aws'")
        self.aws: AwsSettings = settings.aws
        aws = self.aws
        if not (aws.launch_template or aws.instance_type or aws.auto_scaling_group):
            raise ConfigError(
                f"{where}: rollout.backends.aws needs launch_template, instance_type or "
                "auto_scaling_group to know what to launch",
                hint="set aws.launch_template (preferred) or aws.instance_type",
            )
        self.clients = clients or AwsClients.from_settings(aws)
        self.images = images or AwsImageStore(self.clients)
        self.group = (
            AutoScalingGroup(self.clients, aws.auto_scaling_group)
            if aws.auto_scaling_group
            else None
        )
        self.probe: Probe = probe or (
            lambda node: tcp_http_probe(
                node, http_port=settings.service_port, path=settings.health_path
            )
        )
        self._ami_images: dict[str, Image | None] = {}
        self.placement = Placement(self.clients, self.aws, self.group,
                                   f"pool {self.env}/{self.role}")
        # One EBS volume per slot, handed from an old node to its replacement.
        self.volumes = PoolVolumes(
            self.clients, self.env, self.role, size=aws.volume_size,
            volume_type=aws.volume_type, device=aws.volume_device,
            clock=clock or SystemClock(),
        ) if settings.volume else None

    @classmethod
    def from_pool(cls, pool: Pool, **kwargs: Any) -> AwsProvider:
        return cls(pool.env, pool.role, pool.settings, where=str(pool.source), **kwargs)

    # -- observing -------------------------------------------------------

    def _describe(
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

    def _pool_filters(self) -> builtins.list[dict[str, Any]]:
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

    def _nodes(
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

    def list(self) -> builtins.list[Node]:
        instances = {str(i["InstanceId"]): i for i in self._describe(self._pool_filters())}
        group = None
        if self.group is not None:
            # Members the group launched itself carry our tags only if the group
            # propagates them; they are the pool's nodes either way.
            group = self.group.describe()
            extra = [m for m in group.members if m not in instances]
            if extra:
                live = [{"Name": "instance-state-name", "Values": LIVE_STATES}]
                for inst in self._describe(live, extra):
                    instances[str(inst["InstanceId"])] = inst
        return self._nodes(list(instances.values()), group)

    def _find(self, node: Node) -> dict[str, Any] | None:
        """The live instance behind ``node`` (by instance id, else by name)."""
        if node.target.startswith("i-"):
            try:
                found = self._describe(
                    [{"Name": "instance-state-name", "Values": LIVE_STATES}], [node.target]
                )
            except NotFoundError:  # InvalidInstanceID.NotFound: long gone
                return None
            return found[0] if found else None
        by_name = self._by_name(node.name)
        return by_name[0] if by_name else None

    def _by_name(self, name: str) -> builtins.list[dict[str, Any]]:
        return self._describe(
            [*self._pool_filters(), {"Name": f"tag:{TAG_NAME}", "Values": [name]}]
        )

    # -- launching -------------------------------------------------------

    def node_tags(self, spec: LaunchSpec) -> dict[str, str]:
        """Every tag a node of ``spec`` carries (also on its volumes)."""
        tags = {
            TAG_NAME: spec.name,
            TAG_ROLE: self.role,
            TAG_ENV: self.env,
            TAG_IMAGE_ID: spec.image.id,
            TAG_IMAGE_VERSION: spec.image.version,
            TAG_CREATED_BY: CREATED_BY,
        }
        if spec.rollout_id:
            tags[TAG_ROLLOUT_ID] = spec.rollout_id
        if self.group is not None:
            tags[TAG_ASG] = self.group.name
        return tags

    def launch(self, spec: LaunchSpec) -> Node:
        names.name(spec.name, "node name")
        if (spec.role, spec.env) != (self.role, self.env):
            raise ConfigError(
                f"launch {spec.name}: spec is for {spec.env}/{spec.role}, "
                f"this provider runs {self.env}/{self.role}"
            )
        existing = self._by_name(spec.name)
        if existing:
            return self._nodes(existing[:1])[0]
        ami = spec.image.location
        if not ami.startswith("ami-"):
            raise ConfigError(
                f"launch {spec.name}: image {spec.image.id} has no AMI (location {ami!r})",
                hint="an AWS pool launches images baked by the aws baker; see `rollout images`",
            )
        # run_instances names a bad AMI too, but only after other checks (and
        # some emulators accept it): ask first, to name the image in the error.
        with aws_errors("launch node", f"{spec.name}: AMI {ami} of image {spec.image.id}"):
            amis = self.clients.ec2.describe_images(ImageIds=[ami])["Images"]
        if not amis or amis[0].get("State") != "available":
            state = amis[0].get("State") if amis else "missing"
            raise DriverError(
                f"launch {spec.name}: AMI {ami} of image {spec.image.id} is {state}, not available",
                hint="wait for the bake to finish, or pick another image",
            )
        volume = self._volume_for(spec)
        params = run_params(
            self.aws,
            ami=ami,
            tags=self.node_tags(spec),
            template=self.placement.template(),
            subnet=(self.placement.subnet_in(volume["AvailabilityZone"]) if volume
                    else self.placement.pick_subnet(self.list())),
            instance_type=self.aws.instance_type,
        )
        if self.aws.user_data:
            params["UserData"] = self.aws.user_data
        # The client token makes a retried call (after a timeout) idempotent on
        # AWS's side too; the Name-tag lookup above covers a crashed controller.
        seed = f"{self.env}/{self.role}/{spec.name}/{spec.rollout_id}/{ami}"
        token = hashlib.sha256(seed.encode()).hexdigest()[:64]
        inst = self._run(params, token, spec)
        if inst["State"]["Name"] in ("shutting-down", "terminated"):
            # The same token once launched a node that is gone since: launch anew.
            inst = self._run(params, f"{token[:48]}-{int(time.time())}", spec)
        if self.volumes is not None and volume is None:
            self.volumes.create(spec.name, str(inst["Placement"]["AvailabilityZone"]))
        return self._nodes([inst])[0]

    def _volume_for(self, spec: LaunchSpec) -> dict[str, Any] | None:
        """The data volume the new node takes: its own already (a retried
        launch), else the stopped old node's; None for a fresh volume."""
        if self.volumes is None:
            return None
        mine = self.volumes.held_by(spec.name)
        if mine is not None or spec.volume_from is None:
            return mine
        old = self._by_name(names.name(spec.volume_from, "node name"))
        state = str(old[0]["State"]["Name"]) if old else None
        return self.volumes.hand_over(spec.volume_from, state, spec.name)

    def _run(self, params: dict[str, Any], token: str, spec: LaunchSpec) -> dict[str, Any]:
        with aws_errors("launch node", f"{spec.name} from {spec.image.location} ({spec.image.id})"):
            reply = self.clients.ec2.run_instances(**params, ClientToken=token)
        return dict(reply["Instances"][0])

    # -- readiness, stop, start, destroy ---------------------------------

    def readiness(self, node: Node) -> Readiness:
        if not node.target.startswith("i-"):
            return Readiness(False, f"{node.name}: no instance id")
        try:
            with aws_errors("describe instance status", f"{node.target} ({node.name})"):
                statuses = self.clients.ec2.describe_instance_status(
                    InstanceIds=[node.target], IncludeAllInstances=True
                )["InstanceStatuses"]
        except NotFoundError:
            return Readiness(False, f"{node.target} does not exist")
        if not statuses:
            return Readiness(False, f"{node.target} does not exist")
        st = statuses[0]
        state = st["InstanceState"]["Name"]
        if state != "running":
            return Readiness(False, f"{node.target} is {state}")
        checks = (
            st.get("InstanceStatus", {}).get("Status"),
            st.get("SystemStatus", {}).get("Status"),
        )
        if checks != ("ok", "ok"):
            return Readiness(
                False, f"{node.target} status checks: instance {checks[0]}, system {checks[1]}"
            )
        if self.volumes is not None:
            where = self.volumes.attachment(node.name, node.target)
            if where == "free":
                return Readiness(False, f"{node.name}: data volume not attached yet",
                                 setup=Setup.ATTACH_VOLUME)
            if where in ("attaching", "elsewhere"):
                return Readiness(False, f"{node.name}: data volume {where}")
        if not node.address:
            found = self._find(node)
            if found is not None:
                node = self._nodes([found])[0]
        result = self.probe(node)
        if result.ready and self._owes_membership(node):
            assert self.group is not None
            return replace(result, ready=False, setup=Setup.JOIN_GROUP,
                           detail=f"{result.detail}; not yet in service in group "
                                  f"{self.group.name!r}")
        return result

    def _owes_membership(self, node: Node) -> bool:
        """An instance meant for the group (tagged so) that is not yet an
        in-service, protected member of it."""
        group = self.group
        if group is None:
            return False
        found = self._find(node)
        if found is None or tags_of(found).get(TAG_ASG) != group.name:
            return False
        member = group.describe().members.get(str(found["InstanceId"]))
        return member is None or member.lifecycle != "InService" or not member.protected

    def attach_volume(self, node: Node) -> None:
        """Attach the node's data volume once its instance runs. Idempotent."""
        if self.volumes is None:
            return
        if not node.target.startswith("i-"):
            raise DriverError(f"attach the volume of {node.name}: no instance id yet")
        self.volumes.attach_held(node.name, node.target)

    def join_group(self, node: Node) -> None:
        """Attach the instance to the group (or take it out of Standby), protected
        from scale-in while the rollout runs. Idempotent."""
        group = self.group
        found = self._find(node)
        if group is None or found is None or tags_of(found).get(TAG_ASG) != group.name:
            return
        group.attach(str(found["InstanceId"]))

    def stop(self, node: Node) -> None:
        inst = self._find(node)
        if inst is None or inst["State"]["Name"] in ("stopping", "stopped"):
            return
        iid = str(inst["InstanceId"])
        if self.group is not None and iid in self.group.describe().members:
            # A stopped member would fail its health check and be replaced.
            with aws_errors("tag instance", iid):
                self.clients.ec2.create_tags(
                    Resources=[iid], Tags=tag_list({TAG_ASG: self.group.name})
                )
            self.group.enter_standby(iid)
        with aws_errors("stop instance", f"{iid} ({node.name})"):
            self.clients.ec2.stop_instances(InstanceIds=[iid])

    def start(self, node: Node) -> Node:
        inst = self._find(node)
        if inst is None:
            raise DriverError(
                f"start {node.name}: instance {node.target or '?'} is gone",
                hint="it cannot be restored; launch a replacement",
            )
        iid = str(inst["InstanceId"])
        if self.volumes is not None:
            self._take_volume_back(node, iid)
        if inst["State"]["Name"] in ("stopped", "stopping"):
            with aws_errors("start instance", f"{iid} ({node.name})"):
                self.clients.ec2.start_instances(InstanceIds=[iid])
            inst = self._find(node) or inst
        # An ASG member left in Standby by stop() is put back in service by
        # join_group() once it runs again (exit_standby wants it running):
        # readiness names that step when the node answers.
        return self._nodes([inst])[0]

    def _take_volume_back(self, node: Node, iid: str) -> None:
        """On restore: the volume handed to the replacement comes back first."""
        assert self.volumes is not None
        holder = self.volumes.holder_of_previous(node.name)
        if holder is not None and holder != node.name:
            live = self._by_name(holder)
            state = str(live[0]["State"]["Name"]) if live else None
            self.volumes.take_back(node.name, state)
        self.volumes.attach_held(node.name, iid)

    def destroy(self, node: Node) -> None:
        inst = self._find(node)
        if inst is None:
            return
        iid = str(inst["InstanceId"])
        if self.group is not None:
            member = self.group.describe().members.get(iid)
            if member is not None:
                if member.protected and not self.aws.replace_protected:
                    raise DriverError(
                        f"destroy {node.name}: {iid} is protected from scale-in in group "
                        f"{self.group.name!r}, and aws.replace_protected is false",
                        hint="remove the protection, or set aws.replace_protected: true",
                    )
                with aws_errors("tag instance", iid):
                    # Say it is leaving, so it is never owed a membership again.
                    self.clients.ec2.create_tags(
                        Resources=[iid], Tags=tag_list({TAG_ASG: "retired"})
                    )
                self.group.detach(iid)
        try:
            with aws_errors("terminate instance", f"{iid} ({node.name})"):
                self.clients.ec2.terminate_instances(InstanceIds=[iid])
        except NotFoundError:
            return

    def ssh(self, node: Node) -> SshTarget:
        return ssh_target_for(node, self.aws)

    # -- hooks -----------------------------------------------------------

    def on_rollout_succeeded(self, image: Image) -> None:
        """After a successful rollout: :meth:`point_launches_at` the new image."""
        self.point_launches_at(image)

    def point_launches_at(self, image: Image) -> int | None:
        """Leave the pool launching ``image``: a new launch template version with
        its AMI, made the default (and the ASG moved to it if it pins a version);
        the ASG's members get the group's own scale-in protection back.
        Returns the new template version, or None when nothing changed."""
        description = f"rollout {image.id} ({image.role} {image.version})"
        if self.group is not None:
            number = point_group_at(self.clients, self.group, image.location, description)
            self.group.settle_protection()
            return number
        if self.aws.launch_template:
            return LaunchTemplate(self.clients, self.aws.launch_template).point_at(
                image.location, description
            )
        return None
