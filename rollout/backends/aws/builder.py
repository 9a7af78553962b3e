"""The AWS :class:`rollout.protocols.Builder`: an EC2 builder instance whose
disk becomes an AMI.

How each step of the bake pipeline (:mod:`rollout.bake.pipeline`) runs here::

    check     a base AMI (``aws.base_ami``, or the parent image's AMI) and a size
              for the builder; no AWS call
    start     launch the builder, tagged ``rollout:builder`` and never
              ``rollout:role``/``rollout:env``, so no pool ever lists it as a
              node; wait until it runs, passes its status checks and answers SSH
    capture   ``create_image``, tagged at creation with the manifest (see
              :mod:`rollout.backends.aws.images`)
    register  wait until the AMI is ``available`` (only available AMIs count),
              then tag its snapshots
    discard   ALWAYS terminate the builder; deregister an AMI that never became
              available
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

from rollout import names
from rollout.backends.aws import CREATED_BY, TAG_BUILDER, TAG_CREATED_BY, TAG_NAME
from rollout.backends.aws import ami as amis
from rollout.backends.aws.ec2 import Probe, run_params, ssh_port_probe, ssh_target_for, template_ref
from rollout.backends.aws.images import AwsImageStore
from rollout.backends.aws.session import AwsClients, aws_errors
from rollout.clock import SystemClock
from rollout.config import AwsSettings
from rollout.errors import BakeError, ConfigError, Interrupted, NotFoundError, RolloutError
from rollout.model import BakeRequest, Image, Node, NodeState, SshTarget
from rollout.protocols import Clock


@dataclass(frozen=True)
class BakeTimeouts:
    running: float = 600.0  # launch until running with status checks ok
    ssh: float = 300.0
    playbook: float = 1800.0
    image: float = 3600.0  # create_image until available (large volumes are slow)
    poll: float = 5.0


class AwsBuilder:
    """Bakes one AMI with the pool's ``aws`` settings."""

    def __init__(
        self,
        settings: AwsSettings,
        *,
        clients: AwsClients | None = None,
        clock: Clock | None = None,
        ssh_probe: Probe = ssh_port_probe,
        timeouts: BakeTimeouts = BakeTimeouts(),
    ) -> None:
        self.settings = settings
        self.clients = clients or AwsClients.from_settings(settings)
        self.clock = clock or SystemClock()
        self.ssh_probe = ssh_probe
        self.timeouts = timeouts
        self.playbook_timeout = timeouts.playbook
        self.name = f"bake-{secrets.token_hex(4)}"
        self._image_id: str | None = None
        self._instance: str | None = None
        self._ami: str | None = None
        self._registered = False
        self._cancel: Callable[[], bool] = lambda: False

    def check(self, request: BakeRequest) -> str:
        parent = request.parent
        base = parent.location if parent is not None else self.settings.base_ami
        if not base or not base.startswith("ami-"):
            raise ConfigError(
                "aws.base_ami: the bake needs a base AMI id (ami-...)",
                hint="set aws.base_ami in the pool's group_vars, or pass a parent image",
            )
        s = self.settings
        if not (s.builder_instance_type or s.instance_type or s.launch_template):
            raise ConfigError(
                "aws: the bake needs builder_instance_type, instance_type or "
                "launch_template to size the builder"
            )
        return base

    def start(self, request: BakeRequest, cancel: Callable[[], bool]) -> Node:
        base = self.check(request)
        self._image_id = request.image_id
        self._cancel = cancel  # the AMI wait in register() honours it too
        self._instance = self._launch(base, request)
        self._wait_running(cancel)
        node = self._node(request)
        self._wait_ssh(node, cancel)
        return node

    def ssh(self, node: Node) -> SshTarget:
        return ssh_target_for(node, self.settings)

    def capture(self, node: Node, image: Image) -> Image:
        assert self._instance is not None
        self._ami = amis.create_image(self.clients, self.settings, self._instance, image)
        return replace(image, location=self._ami)

    def register(self, image: Image) -> Image:
        assert self._ami is not None
        amis.wait_available(self.clients, self._ami, image.id, self.clock,
                            timeout=self.timeouts.image, poll=self.timeouts.poll,
                            cancel=self._cancel)
        amis.tag_snapshots(self.clients, self._ami, image)
        self._registered = True
        return AwsImageStore(self.clients).get(self._ami)

    def discard(self) -> list[str]:
        problems: list[str] = []
        if self._ami is not None and not self._registered:
            problems += amis.forget_image(self.clients, self._ami)
            self._ami = None
        if self._image_id is not None:
            for instance in self._builders():
                problems += self._terminate(instance)
        return problems

    # -- steps ---------------------------------------------------------------

    def _launch(self, base: str, request: BakeRequest) -> str:
        s = self.settings
        tags = {
            TAG_NAME: self.name,
            TAG_BUILDER: request.image_id,
            "rollout:bake-role": request.role,
            TAG_CREATED_BY: CREATED_BY,
        }
        template = None
        if s.launch_template:
            template = template_ref(s.launch_template, s.launch_template_version)
        params = run_params(
            s, ami=base, tags=tags, template=template,
            subnet=s.subnets[0] if s.subnets else None,
            instance_type=s.builder_instance_type or s.instance_type,
        )
        # Idempotent: a retried launch returns the same builder, never a second one.
        params["ClientToken"] = f"{request.image_id}-builder"[:64]
        # A builder must not outlive a lost controller: shutting it down ends it.
        params["InstanceInitiatedShutdownBehavior"] = "terminate"
        with aws_errors("launch builder", f"{self.name} from {base}"):
            reply = self.clients.ec2.run_instances(**params)
        return str(reply["Instances"][0]["InstanceId"])

    def _wait_running(self, cancel: Callable[[], bool]) -> None:
        iid, image_id = self._instance, self._image_id
        assert iid is not None
        deadline = self.clock.now() + self.timeouts.running
        while True:
            with aws_errors("describe builder status", iid):
                statuses = self.clients.ec2.describe_instance_status(
                    InstanceIds=[iid], IncludeAllInstances=True
                )["InstanceStatuses"]
            st = statuses[0] if statuses else {}
            state = st.get("InstanceState", {}).get("Name", "unknown")
            checks = (
                st.get("InstanceStatus", {}).get("Status"),
                st.get("SystemStatus", {}).get("Status"),
            )
            if state in ("shutting-down", "terminated", "stopped"):
                raise BakeError(
                    f"bake {image_id}: builder {iid} is {state} before the bake began",
                    hint="see the instance's console output in EC2",
                )
            if state == "running" and checks == ("ok", "ok"):
                return
            if self.clock.now() >= deadline:
                raise BakeError(
                    f"bake {image_id}: builder {iid} not running with status checks ok "
                    f"within {self.timeouts.running:.0f}s ({state}, checks "
                    f"{checks[0]}/{checks[1]})"
                )
            if cancel():
                raise Interrupted(f"bake {image_id}: stopped waiting for builder {iid}")
            self.clock.sleep(self.timeouts.poll)

    def _node(self, request: BakeRequest) -> Node:
        iid = self._instance
        assert iid is not None
        with aws_errors("describe builder", iid):
            reply = self.clients.ec2.describe_instances(InstanceIds=[iid])
        inst = reply["Reservations"][0]["Instances"][0]
        key = "PublicIpAddress" if self.settings.ssh_address == "public" else "PrivateIpAddress"
        address = str(inst.get(key) or "")
        if not address:
            raise BakeError(
                f"bake {request.image_id}: builder {iid} has no {self.settings.ssh_address} IP",
                hint="use a subnet that assigns one, or aws.ssh_address: private",
            )
        return Node(
            name=self.name, address=names.address(address, f"builder {iid}"),
            role=request.role, env="bake", image_id=request.image_id,
            image_version=request.version, state=NodeState.RUNNING,
            created_at=self.clock.now(), target=iid,
        )

    def _wait_ssh(self, node: Node, cancel: Callable[[], bool]) -> None:
        deadline = self.clock.now() + self.timeouts.ssh
        while True:
            answer = self.ssh_probe(node)
            if answer.ready:
                return
            if self.clock.now() >= deadline:
                raise BakeError(
                    f"bake {node.image_id}: builder {node.target} ({node.address}) does not "
                    f"answer SSH within {self.timeouts.ssh:.0f}s: {answer.detail}",
                    hint="check the security group allows SSH from this controller",
                )
            if cancel():
                raise Interrupted(f"bake {node.image_id}: stopped waiting for SSH")
            self.clock.sleep(self.timeouts.poll)

    def _builders(self) -> list[str]:
        """This bake's builder instances that may still run: the one launched, and
        any a launch call interrupted before it answered (found by their tag)."""
        found = [self._instance] if self._instance else []
        try:
            with aws_errors("describe builders", f"tag {TAG_BUILDER}={self._image_id}"):
                reply = self.clients.ec2.describe_instances(Filters=[
                    {"Name": f"tag:{TAG_BUILDER}", "Values": [str(self._image_id)]},
                    {"Name": "instance-state-name",
                     "Values": ["pending", "running", "stopping", "stopped"]},
                ])
        except RolloutError:
            return found  # terminate what we know of; the tag lookup is a backstop
        for reservation in reply.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                if inst["InstanceId"] not in found:
                    found.append(str(inst["InstanceId"]))
        return found

    def _terminate(self, instance: str) -> list[str]:
        # Retried on its own: after Ctrl-C this is the one call that must land.
        for attempt in range(3):
            try:
                with aws_errors("terminate builder", instance):
                    self.clients.ec2.terminate_instances(InstanceIds=[instance])
                return []
            except NotFoundError:
                return []
            except RolloutError as exc:
                if attempt == 2:
                    return [
                        f"builder {instance} may still run ({exc.message}); terminate it: "
                        f"aws ec2 terminate-instances --instance-ids {instance}"
                    ]
                self.clock.sleep(1.0 + attempt)
        return []
