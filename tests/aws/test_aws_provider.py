"""The AWS provider against moto's server: tags, AZ spread, idempotent launch,
readiness, ASG desired capacity, scale-in protection, the launch template."""

from __future__ import annotations

from collections import Counter

import pytest

from rollout.errors import DriverError, NotFoundError
from rollout.model import Image, LaunchSpec, NodeState, Readiness, Setup
from tests.aws.moto_harness import ENV, ROLE, AwsWorld, register

pytestmark = pytest.mark.aws


def spec(name: str, image: Image, rollout_id: str | None = "r-1") -> LaunchSpec:
    return LaunchSpec(name=name, role=ROLE, env=ENV, image=image, rollout_id=rollout_id)


def test_launch_tags_every_node_and_spreads_across_azs(world: AwsWorld) -> None:
    provider = world.provider()
    launched = [provider.launch(spec(f"web-n{i}", world.new)) for i in range(4)]

    listed = {n.target: n for n in provider.list()}
    assert set(listed) == {n.target for n in launched}
    for node in listed.values():
        inst = world.instance(node.target)
        tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
        assert tags["rollout:role"] == ROLE and tags["rollout:env"] == ENV
        assert tags["rollout:image-id"] == world.new.id
        assert tags["rollout:image-version"] == "2.0.0"
        assert tags["rollout:rollout-id"] == "r-1"
        assert tags["rollout:created-by"] == "rollout"
        assert tags["Name"] == node.name
        assert node.image_id == world.new.id and node.image_version == "2.0.0"
        assert node.rollout_id == "r-1"
        assert inst["ImageId"] == world.new.location
        assert inst["SecurityGroups"][0]["GroupId"] == world.security_group
    zones = Counter(n.labels["aws:az"] for n in listed.values())
    assert zones == {"eu-west-1a": 2, "eu-west-1b": 2}
    volumes = world.clients.ec2.describe_volumes(
        Filters=[{"Name": "tag:rollout:image-id", "Values": [world.new.id]}]
    )["Volumes"]
    assert len(volumes) == 4  # the root volumes carry the tags too


def test_launch_is_idempotent_on_name(world: AwsWorld) -> None:
    provider = world.provider()
    first = provider.launch(spec("web-a", world.new))
    again = provider.launch(spec("web-a", world.new))

    assert again.target == first.target
    running = world.clients.ec2.describe_instances(
        Filters=[
            {"Name": "tag:Name", "Values": ["web-a"]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )["Reservations"]
    assert sum(len(r["Instances"]) for r in running) == 1


def test_image_is_derived_from_the_ami_not_only_the_tag(world: AwsWorld) -> None:
    # An instance the ASG (or a person) launched from the AMI carries no rollout
    # image tag; skip matching must still see which image it runs.
    iid = world.clients.ec2.run_instances(
        ImageId=world.new.location,
        MinCount=1,
        MaxCount=1,
        SubnetId=world.subnets[1],
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [
                    {"Key": "rollout:role", "Value": ROLE},
                    {"Key": "rollout:env", "Value": ENV},
                ],
            }
        ],
    )["Instances"][0]["InstanceId"]

    (node,) = world.provider().list()
    assert node.target == iid and node.name == iid
    assert node.image_id == world.new.id and node.image_version == "2.0.0"
    assert node.rollout_id is None


def test_readiness_needs_running_status_ok_and_the_probe(world: AwsWorld) -> None:
    answers = [Readiness(False, "connection refused"), Readiness(True, "ok", ssh=True)]
    provider = world.provider(probe=lambda node: answers.pop(0))
    node = provider.launch(spec("web-r", world.new))

    first = provider.readiness(node)
    assert not first.ready and "connection refused" in first.detail
    assert provider.readiness(node).ready

    provider.destroy(node)
    gone = provider.readiness(node)
    assert not gone.ready and ("terminated" in gone.detail or "shutting" in gone.detail)


def test_destroy_is_idempotent_and_stop_start_keep_the_node(world: AwsWorld) -> None:
    provider = world.provider()
    node = provider.launch(spec("web-s", world.new))
    provider.readiness(node)

    provider.stop(node)
    assert world.state(node.target) in ("stopping", "stopped")
    started = provider.start(node)
    assert started.target == node.target and started.state is not NodeState.GONE
    assert provider.readiness(started).ready

    provider.destroy(node)
    provider.destroy(node)
    assert world.state(node.target) in ("shutting-down", "terminated")
    assert node.target not in {n.target for n in provider.list()}


def test_unknown_ami_is_named_before_anything_is_launched(world: AwsWorld) -> None:
    ghost = Image(
        id="web-9.9.9-deadbeef",
        role=ROLE,
        version="9.9.9",
        created_at=0.0,
        location="ami-0123456789abcdef0",
    )
    with pytest.raises(NotFoundError) as err:
        world.provider().launch(spec("web-x", ghost))
    assert "ami-0123456789abcdef0" in str(err.value) and "web-9.9.9-deadbeef" in str(err.value)
    assert world.provider().list() == []


def test_list_reads_every_page(world: AwsWorld) -> None:
    world.clients.page_size = 5  # the smallest page describe_instances allows
    provider = world.provider()
    for i in range(7):
        provider.launch(spec(f"web-p{i}", world.new))

    one_page = world.clients.ec2.describe_instances(MaxResults=5)
    assert one_page.get("NextToken")  # seven nodes really need two pages
    assert sorted(n.name for n in provider.list()) == [f"web-p{i}" for i in range(7)]


def test_asg_swap_keeps_desired_capacity_and_updates_the_template(asg_world: AwsWorld) -> None:
    world = asg_world
    provider = world.provider()
    old_nodes = provider.list()
    assert len(old_nodes) == 2 and {n.image_id for n in old_nodes} == {world.old.id}
    register(world, [n.target for n in old_nodes])

    new = provider.launch(spec("web-new", world.new))
    assert world.group()["DesiredCapacity"] == 2  # not a member until it is ready
    owed = provider.readiness(new)  # names the step, takes none
    assert not owed.ready and owed.setup is Setup.JOIN_GROUP
    assert world.group()["DesiredCapacity"] == 2
    provider.join_group(new)  # the core's journaled step
    assert provider.readiness(new).ready
    group = world.group()
    assert group["DesiredCapacity"] == 3
    members = {i["InstanceId"]: i for i in group["Instances"]}
    assert members[new.target]["ProtectedFromScaleIn"]  # while the rollout runs

    provider.destroy(old_nodes[0])
    group = world.group()
    assert group["DesiredCapacity"] == 2
    assert {i["InstanceId"] for i in group["Instances"]} == {old_nodes[1].target, new.target}
    assert world.state(old_nodes[0].target) in ("shutting-down", "terminated")

    version = provider.point_launches_at(world.new)
    assert version is not None
    default = world.clients.ec2.describe_launch_template_versions(
        LaunchTemplateName=world.launch_template, Versions=["$Default"]
    )["LaunchTemplateVersions"][0]
    assert default["LaunchTemplateData"]["ImageId"] == world.new.location
    assert not any(i["ProtectedFromScaleIn"] for i in world.group()["Instances"])
    assert provider.point_launches_at(world.new) is None  # idempotent


def test_asg_protected_member_is_not_retired_when_told_not_to(asg_world: AwsWorld) -> None:
    world = asg_world
    from rollout.backends.aws.provider import AwsProvider

    provider = AwsProvider(
        ENV,
        ROLE,
        world.settings(replace_protected=False),
        clients=world.clients,
        images=world.images,
    )
    victim = provider.list()[0]
    world.clients.autoscaling.set_instance_protection(
        AutoScalingGroupName=world.asg, InstanceIds=[victim.target], ProtectedFromScaleIn=True
    )

    with pytest.raises(DriverError) as err:
        provider.destroy(victim)
    assert victim.target in str(err.value) and "protected" in str(err.value)
    assert world.state(victim.target) == "running"
    assert world.group()["DesiredCapacity"] == 2


def test_asg_stop_uses_standby_so_the_group_does_not_replace_it(asg_world: AwsWorld) -> None:
    world = asg_world
    provider = world.provider()
    node = provider.list()[0]

    provider.stop(node)
    members = {i["InstanceId"]: i["LifecycleState"] for i in world.group()["Instances"]}
    assert members[node.target] == "Standby"
    assert world.group()["DesiredCapacity"] == 1

    restarted = provider.start(node)
    assert provider.readiness(restarted).setup is Setup.JOIN_GROUP
    provider.join_group(restarted)
    assert provider.readiness(restarted).ready
    members = {i["InstanceId"]: i["LifecycleState"] for i in world.group()["Instances"]}
    assert members[node.target] == "InService"
    assert world.group()["DesiredCapacity"] == 2
