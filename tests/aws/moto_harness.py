"""Shared by tests/aws and tests/contract: moto's real server (ThreadedMotoServer)
and a small AWS world in it (VPC, two subnets in two AZs, a security group, a
launch template, a target group, AMIs, optionally an Auto Scaling group).

What moto does not emulate is scripted here, in the tests, never in rollout/:
target health ``initial``/``unhealthy``/``draining`` and the deregistration
delay (:class:`ScriptedTargetHealth`), and node readiness over the network
(:func:`always_ready`: moto's instances have no network to probe).
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
from moto.server import ThreadedMotoServer

from rollout.backends.aws.elbv2 import Elbv2LoadBalancer, HealthSource, describe_target_health
from rollout.backends.aws.images import AwsImageStore, image_tags
from rollout.backends.aws.provider import AwsProvider
from rollout.backends.aws.session import AwsClients, tag_list
from rollout.config import AwsSettings, Pool, PoolSettings
from rollout.model import Image, LaunchSpec, Node, Readiness

# moto logs every request at INFO; keep test output readable.
logging.getLogger("werkzeug").setLevel(logging.WARNING)

REGION = "eu-west-1"
ROLE, ENV = "web", "test"
PORTS = range(18500, 18600)  # the ports assigned to the AWS engineer


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18500-18599 for moto")


class MotoServer:
    """One moto server per test session; :meth:`reset` between tests."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> MotoServer:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def reset(self) -> None:
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def env(self) -> dict[str, str]:
        """Environment for boto3's standard chain, pointed at this server."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }


_SHARED: list[MotoServer] = []


def shared_server() -> MotoServer:
    """The one moto server of this test process, started on first use, so that
    tests/aws and tests/contract share it; stopped when the process exits."""
    if not _SHARED:
        server = MotoServer().start()
        atexit.register(server.stop)
        _SHARED.append(server)
    return _SHARED[0]


def enter_moto(server: MotoServer, monkeypatch: Any) -> None:
    """Reset moto and point boto3's standard chain at it for one test."""
    server.reset()
    for key in UNSET_ENV:
        monkeypatch.delenv(key, raising=False)
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)


UNSET_ENV = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


class StepClock:
    """A clock for driver-level tests: sleep advances time, nothing waits."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.0)

    def advance(self, seconds: float) -> None:
        self.t += seconds


class ScriptedTargetHealth:
    """Target health as real ELBv2 reports it and moto does not.

    Wraps the real source (moto's ``describe_target_health``) and rewrites it on
    the test's clock. It watches the elbv2 client's own RegisterTargets and
    DeregisterTargets calls (botocore's client events) to know when each
    happened: a registered target is ``initial`` for ``rise`` seconds, then
    ``healthy`` (``unhealthy`` if listed in :attr:`unhealthy`); a deregistered
    target, which moto drops at once, is reported ``draining`` for the target
    group's real ``deregistration_delay.timeout_seconds``, then it is gone.
    """

    def __init__(
        self, real: HealthSource, clock: Any, clients: AwsClients, *, rise: float = 10.0
    ) -> None:
        self.real = real
        self.clock = clock
        self.clients = clients
        self.rise = rise
        self.unhealthy: set[str] = set()
        # Keyed by (target group, instance id): a target may be in two groups.
        self._registered: dict[tuple[str, str], float] = {}
        self._deregistered: dict[tuple[str, str], float] = {}
        self._port: dict[str, int] = {}
        events = clients.elbv2.meta.events
        # before-parameter-build carries the call's parameters (after-call does not).
        events.register(
            "before-parameter-build.elastic-load-balancing-v2.RegisterTargets", self._on_register
        )
        events.register(
            "before-parameter-build.elastic-load-balancing-v2.DeregisterTargets",
            self._on_deregister,
        )

    def _on_register(self, params: dict[str, Any], **_: Any) -> None:
        arn = str(params.get("TargetGroupArn"))
        for target in params.get("Targets", []):
            key = (arn, str(target["Id"]))
            self._deregistered.pop(key, None)
            if key not in self._registered:
                self._registered[key] = self.clock.now()

    def _on_deregister(self, params: dict[str, Any], **_: Any) -> None:
        arn = str(params.get("TargetGroupArn"))
        for target in params.get("Targets", []):
            key = (arn, str(target["Id"]))
            if self._registered.pop(key, None) is not None:
                self._deregistered[key] = self.clock.now()

    def delay(self, arn: str) -> float:
        attrs = self.clients.elbv2.describe_target_group_attributes(TargetGroupArn=arn)[
            "Attributes"
        ]
        return float({a["Key"]: a["Value"] for a in attrs}["deregistration_delay.timeout_seconds"])

    def __call__(self, arn: str) -> list[dict[str, Any]]:
        now = self.clock.now()
        out: list[dict[str, Any]] = []
        for desc in self.real(arn):
            tid = str(desc["Target"]["Id"])
            self._port[tid] = int(desc["Target"].get("Port", 80))
            since = self._registered.setdefault((arn, tid), now)
            if tid in self.unhealthy:
                state = "unhealthy"
            elif now - since < self.rise:
                state = "initial"
            else:
                state = "healthy"
            out.append({**desc, "TargetHealth": {"State": state}})
        mine = [(key, since) for key, since in self._deregistered.items() if key[0] == arn]
        if mine:
            delay = self.delay(arn)
            for key, since in mine:
                if now - since < delay:
                    out.append(
                        {
                            "Target": {"Id": key[1], "Port": self._port.get(key[1], 80)},
                            "TargetHealth": {
                                "State": "draining",
                                "Reason": "Target.DeregistrationInProgress",
                            },
                        }
                    )
                else:
                    del self._deregistered[key]
        return out


def always_ready(node: Node) -> Readiness:
    """The readiness probe for moto's instances, which have no network: the
    provider's own checks (running, status checks ok) still apply before it."""
    return Readiness(
        True,
        "scripted probe: moto instances have no network",
        ssh=True,
        http=True,
        systemd="running",
    )


@dataclass
class AwsWorld:
    clients: AwsClients
    vpc: str
    subnets: tuple[str, str]
    security_group: str
    launch_template: str
    target_group_arn: str
    base_ami: str
    images: AwsImageStore
    old: Image
    new: Image
    asg: str | None = None
    # With_listener(): the pool's listener and second target group (blue-green).
    listener_arn: str | None = None
    alternate_arn: str | None = None
    # with_preview_rule(): the user's listener rule for the blue-green preview.
    preview_rule_arn: str | None = None
    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def settings(self, **aws: Any) -> PoolSettings:
        data: dict[str, Any] = {
            "launch_template": self.launch_template,
            "subnets": list(self.subnets),
            "security_groups": [self.security_group],
            "target_group_arn": self.target_group_arn,
            "base_ami": self.base_ami,
            "instance_type": "t3.micro",
            "region": REGION,
        }
        if self.asg:
            data["auto_scaling_group"] = self.asg
        if self.listener_arn:
            data["listener_arn"] = self.listener_arn
            data["alternate_target_group_arn"] = self.alternate_arn
        if self.preview_rule_arn:
            data["preview_rule_arn"] = self.preview_rule_arn
        data.update(aws)
        return PoolSettings.model_validate(
            {
                "provider": "aws",
                "load_balancer": "elbv2",
                "pool_size": 2,
                "canary": 1,
                "soak": 0,
                "aws": data,
                "timeouts": {"ready": 120, "lb_up": 120, "drain": 120, "smoke": 60},
            }
        )

    def pool(self, **aws: Any) -> Pool:
        from pathlib import Path

        return Pool(
            env=ENV,
            role=ROLE,
            settings=self.settings(**aws),
            source=Path("tests/aws/group_vars/web.yml"),
        )

    def provider(self, **kwargs: Any) -> AwsProvider:
        kwargs.setdefault("probe", always_ready)
        return AwsProvider(
            ENV, ROLE, self.settings(), clients=self.clients, images=self.images, **kwargs
        )

    def lb(self, health: HealthSource | None = None, *, preview: bool = False
           ) -> Elbv2LoadBalancer:
        return Elbv2LoadBalancer.from_settings(
            self.settings().aws or AwsSettings(),
            clients=self.clients, preview=preview,
            health_source=health or describe_target_health(self.clients),
        )

    def forward(self) -> dict[str, int]:
        """The listener's default action: target group ARN -> weight."""
        assert self.listener_arn
        action = self.clients.elbv2.describe_listeners(ListenerArns=[self.listener_arn])[
            "Listeners"
        ][0]["DefaultActions"][0]
        if "ForwardConfig" in action:
            return {
                g["TargetGroupArn"]: int(g.get("Weight", 1))
                for g in action["ForwardConfig"]["TargetGroups"]
            }
        return {action["TargetGroupArn"]: 1}

    def instance(self, iid: str) -> dict[str, Any]:
        res = self.clients.ec2.describe_instances(InstanceIds=[iid])["Reservations"]
        return dict(res[0]["Instances"][0])

    def state(self, iid: str) -> str:
        return str(self.instance(iid)["State"]["Name"])

    def group(self) -> dict[str, Any]:
        assert self.asg
        return dict(
            self.clients.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.asg])[
                "AutoScalingGroups"
            ][0]
        )

    def registered(self, arn: str | None = None) -> set[str]:
        return {
            d["Target"]["Id"]
            for d in self.clients.elbv2.describe_target_health(
                TargetGroupArn=arn or self.target_group_arn
            )["TargetHealthDescriptions"]
        }


def with_listener(world: AwsWorld) -> AwsWorld:
    """Give ``world`` an application load balancer whose listener forwards
    to its target group, and a second target group like the first."""
    elbv2 = world.clients.elbv2
    lb = elbv2.create_load_balancer(Name=f"web-{world.uid}", Subnets=list(world.subnets))[
        "LoadBalancers"
    ][0]["LoadBalancerArn"]
    first = elbv2.describe_target_groups(TargetGroupArns=[world.target_group_arn])[
        "TargetGroups"
    ][0]
    alternate = elbv2.create_target_group(
        Name=f"web-{world.uid}-b",
        Protocol="HTTP",
        Port=80,
        VpcId=world.vpc,
        TargetType="instance",
        HealthCheckPath=first.get("HealthCheckPath", "/healthz"),
    )["TargetGroups"][0]["TargetGroupArn"]
    attrs = elbv2.describe_target_group_attributes(TargetGroupArn=world.target_group_arn)
    delay = {a["Key"]: a["Value"] for a in attrs["Attributes"]}[
        "deregistration_delay.timeout_seconds"
    ]
    elbv2.modify_target_group_attributes(
        TargetGroupArn=alternate,
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": delay}],
    )
    world.listener_arn = elbv2.create_listener(
        LoadBalancerArn=lb,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": world.target_group_arn}],
    )["Listeners"][0]["ListenerArn"]
    world.alternate_arn = alternate
    return world


PREVIEW_HOST = "preview.example.com"


def with_preview_rule(world: AwsWorld) -> AwsWorld:
    """Give ``world``'s listener (from :func:`with_listener`) the rule a user
    makes for the preview: requests for PREVIEW_HOST, forwarded (to begin
    with) to the serving group, as infrastructure code would leave it."""
    assert world.listener_arn
    world.preview_rule_arn = world.clients.elbv2.create_rule(
        ListenerArn=world.listener_arn, Priority=10,
        Conditions=[{"Field": "host-header", "HostHeaderConfig": {"Values": [PREVIEW_HOST]}}],
        Actions=[{"Type": "forward", "TargetGroupArn": world.target_group_arn}],
    )["Rules"][0]["RuleArn"]
    return world


_BASE_AMI: dict[str, str] = {}


def base_ami(clients: AwsClients) -> str:
    """One of moto's stock AMIs, as the bake's base."""
    if "id" not in _BASE_AMI:
        images = clients.ec2.describe_images(
            Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]}]
        )
        _BASE_AMI["id"] = sorted(i["ImageId"] for i in images["Images"])[0]
    return _BASE_AMI["id"]


def make_image(
    clients: AwsClients,
    base: str,
    subnet: str,
    version: str,
    *,
    created_at: float,
    role: str = ROLE,
) -> Image:
    """A registered rollout AMI (as a bake would leave it), made in moto."""
    iid = clients.ec2.run_instances(
        ImageId=base, MinCount=1, MaxCount=1, SubnetId=subnet, InstanceType="t3.micro"
    )["Instances"][0]["InstanceId"]
    image = Image(
        id=f"{role}-{version}-{uuid.uuid4().hex[:8]}",
        role=role,
        version=version,
        created_at=created_at,
        manifest={"role_checksum": "0" * 16},
    )
    ami = clients.ec2.create_image(
        InstanceId=iid,
        Name=image.id,
        TagSpecifications=[{"ResourceType": "image", "Tags": tag_list(image_tags(image))}],
    )["ImageId"]
    clients.ec2.terminate_instances(InstanceIds=[iid])
    return AwsImageStore(clients).get(ami)


def build_world(*, asg_size: int | None = None, deregistration_delay: int = 30) -> AwsWorld:
    """A fresh world in the (reset) moto server: everything named uniquely."""
    uid = uuid.uuid4().hex[:8]
    clients = AwsClients(region=os.environ.get("AWS_DEFAULT_REGION", REGION))
    ec2 = clients.ec2
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = tuple(
        ec2.create_subnet(
            VpcId=vpc, CidrBlock=f"10.20.{i + 1}.0/24", AvailabilityZone=f"{REGION}{az}"
        )["Subnet"]["SubnetId"]
        for i, az in enumerate("ab")
    )
    sg = ec2.create_security_group(GroupName=f"web-{uid}", Description="web nodes", VpcId=vpc)[
        "GroupId"
    ]
    base = base_ami(clients)
    old = make_image(clients, base, subnets[0], "1.0.0", created_at=1000.0)
    new = make_image(clients, base, subnets[0], "2.0.0", created_at=2000.0)
    lt_name = f"web-{uid}"
    ec2.create_launch_template(
        LaunchTemplateName=lt_name,
        LaunchTemplateData={
            "ImageId": old.location,
            "InstanceType": "t3.micro",
            "SecurityGroupIds": [sg],
        },
    )
    tg = clients.elbv2.create_target_group(
        Name=f"web-{uid}",
        Protocol="HTTP",
        Port=80,
        VpcId=vpc,
        TargetType="instance",
        HealthCheckPath="/healthz",
    )["TargetGroups"][0]["TargetGroupArn"]
    clients.elbv2.modify_target_group_attributes(
        TargetGroupArn=tg,
        Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": str(deregistration_delay)}
        ],
    )
    world = AwsWorld(
        clients=clients,
        vpc=vpc,
        subnets=(subnets[0], subnets[1]),
        security_group=sg,
        launch_template=lt_name,
        target_group_arn=tg,
        base_ami=base,
        images=AwsImageStore(clients),
        old=old,
        new=new,
        uid=uid,
    )
    if asg_size is not None:
        world.asg = f"web-{uid}"
        clients.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=world.asg,
            LaunchTemplate={"LaunchTemplateName": lt_name, "Version": "$Default"},
            MinSize=1,
            MaxSize=asg_size + 2,
            DesiredCapacity=asg_size,
            VPCZoneIdentifier=",".join(subnets),
            Tags=[
                {"Key": "rollout:role", "Value": ROLE, "PropagateAtLaunch": True},
                {"Key": "rollout:env", "Value": ENV, "PropagateAtLaunch": True},
            ],
        )
    return world


def seed_plain_pool(world: AwsWorld, size: int) -> list[Node]:
    """The pool before a rollout: ``size`` nodes of the old image, in service."""
    provider = world.provider()
    nodes = [
        provider.launch(LaunchSpec(name=f"web-{i}", role=ROLE, env=ENV, image=world.old))
        for i in range(size)
    ]
    register(world, [n.target for n in nodes])
    return provider.list()


def register(world: AwsWorld, ids: list[str]) -> None:
    if ids:
        world.clients.elbv2.register_targets(
            TargetGroupArn=world.target_group_arn, Targets=[{"Id": i} for i in ids]
        )
