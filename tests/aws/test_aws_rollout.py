"""Whole rollouts through the controller, on moto's server: a plain pool and an
ASG pool, restore on a smoke failure, skip matching, and reap.

Real: EC2, Auto Scaling, ELBv2 registration (moto). Scripted, because moto
cannot: target health and the deregistration delay (ScriptedTargetHealth, on
the same FakeClock as the controller), node readiness over the network
(always_ready) and the smoke gate (FakeSmokeRunner).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.backends.aws.elbv2 import Elbv2LoadBalancer, describe_target_health
from rollout.backends.aws.provider import AwsProvider
from rollout.core.state import RolloutStatus
from rollout.engine.controller import Controller
from rollout.errors import RolloutFailed
from rollout.model import LaunchSpec
from rollout.store.journal import Journal
from rollout.testing import FakeClock, FakeSmokeRunner
from tests.aws.moto_harness import (
    ENV,
    ROLE,
    AwsWorld,
    ScriptedTargetHealth,
    build_world,
    register,
    seed_plain_pool,
)

pytestmark = pytest.mark.aws


class Rig:
    """A controller over the AWS drivers, all on one FakeClock."""

    def __init__(self, world: AwsWorld, tmp_path: Path) -> None:
        self.world = world
        self.clock = FakeClock()
        self.health = ScriptedTargetHealth(
            describe_target_health(world.clients), self.clock, world.clients, rise=3.0
        )
        self.provider: AwsProvider = world.provider()
        self.lb: Elbv2LoadBalancer = world.lb(self.health)
        self.smoke = FakeSmokeRunner(self.clock)
        self.journal = Journal(tmp_path / "journal.sqlite", durable=False)
        self.controller = Controller(
            pool=world.pool(),
            provider=self.provider,
            lb=self.lb,
            smoke=self.smoke,
            journal=self.journal,
            clock=self.clock,
            poll_interval=1.0,
            workers=0,
        )

    def live(self) -> dict[str, str]:
        """Live pool nodes: instance id -> image id."""
        return {n.target: n.image_id for n in self.provider.list()}

    def in_service(self) -> set[str]:
        return {m.target for m in self.lb.members() if m.in_service}


@pytest.fixture
def small_world(aws_env: object) -> AwsWorld:
    return build_world(deregistration_delay=5)


@pytest.fixture
def small_asg_world(aws_env: object) -> AwsWorld:
    return build_world(asg_size=2, deregistration_delay=5)


def test_plain_pool_rollout_replaces_every_node(small_world: AwsWorld, tmp_path: Path) -> None:
    world = small_world
    old = {n.target for n in seed_plain_pool(world, 2)}
    rig = Rig(world, tmp_path)
    rig.clock.advance(10.0)  # the seeded targets have passed their health checks

    result = rig.controller.run(world.new)

    assert result.status is RolloutStatus.SUCCEEDED and len(result.replaced) == 2
    live = rig.live()
    assert len(live) == 2 and set(live.values()) == {world.new.id}
    assert not set(live) & old
    for iid in old:
        assert world.state(iid) in ("shutting-down", "terminated")
    assert world.registered() == set(live)
    assert rig.in_service() == set(live)
    for node in rig.provider.list():
        assert node.rollout_id == result.id
        assert node.labels["rollout:created-by"] == "rollout"
    # The drain waited for the deregistration delay on the controller's clock.
    assert result.waits.get("drain", 0.0) >= 5.0


def test_asg_rollout_keeps_desired_capacity_and_moves_the_template(
    small_asg_world: AwsWorld, tmp_path: Path
) -> None:
    world = small_asg_world
    rig = Rig(world, tmp_path)
    old = set(rig.live())
    register(world, sorted(old))
    rig.clock.advance(10.0)

    result = rig.controller.run(world.new)
    rig.provider.on_rollout_succeeded(world.new)

    assert result.status is RolloutStatus.SUCCEEDED
    group = world.group()
    assert group["DesiredCapacity"] == 2
    members = {i["InstanceId"] for i in group["Instances"]}
    assert members == set(rig.live()) and not members & old
    assert set(rig.live().values()) == {world.new.id}
    assert world.registered() == members
    default = world.clients.ec2.describe_launch_template_versions(
        LaunchTemplateName=world.launch_template, Versions=["$Default"]
    )["LaunchTemplateVersions"][0]
    assert default["LaunchTemplateData"]["ImageId"] == world.new.location
    assert not any(i["ProtectedFromScaleIn"] for i in group["Instances"])
    for iid in old:
        assert world.state(iid) in ("shutting-down", "terminated")


def test_smoke_failure_restores_the_old_pool(small_world: AwsWorld, tmp_path: Path) -> None:
    world = small_world
    old = {n.target for n in seed_plain_pool(world, 2)}
    rig = Rig(world, tmp_path)
    rig.clock.advance(10.0)
    rig.smoke.fail(image=world.new.id, summary="test_version failed")

    with pytest.raises(RolloutFailed):
        rig.controller.run(world.new)

    assert set(rig.live()) == old and set(rig.live().values()) == {world.old.id}
    rig.clock.advance(10.0)
    assert rig.in_service() == old
    launched = world.clients.ec2.describe_instances(
        Filters=[{"Name": "image-id", "Values": [world.new.location]}]
    )["Reservations"]
    states = {i["State"]["Name"] for r in launched for i in r["Instances"]}
    assert states and states <= {"shutting-down", "terminated"}  # tried, then cleaned up


def test_nodes_already_on_the_target_ami_are_skipped(small_world: AwsWorld, tmp_path: Path) -> None:
    world = small_world
    provider = world.provider()
    keep = provider.launch(LaunchSpec(name="web-current", role=ROLE, env=ENV, image=world.new))
    swap = provider.launch(LaunchSpec(name="web-old", role=ROLE, env=ENV, image=world.old))
    register(world, [keep.target, swap.target])
    rig = Rig(world, tmp_path)
    rig.clock.advance(10.0)

    result = rig.controller.run(world.new)

    assert result.already_on_target == ("web-current",) and result.replaced == ("web-old",)
    assert world.state(keep.target) == "running"
    assert set(rig.live().values()) == {world.new.id}

    again = Rig(world, tmp_path / "again").controller.run(world.new)  # a re-run: no-op
    assert again.status is RolloutStatus.SUCCEEDED and again.replaced == ()


def test_reap_terminates_orphaned_tagged_instances_only(
    small_world: AwsWorld, tmp_path: Path
) -> None:
    world = small_world
    pool = {n.target for n in seed_plain_pool(world, 2)}  # no rollout id: never reaped
    provider = world.provider()
    orphan = provider.launch(
        LaunchSpec(
            name="web-rdead0001-0", role=ROLE, env=ENV, image=world.new, rollout_id="rdead0001"
        )
    )
    rig = Rig(world, tmp_path)

    report = rig.controller.reap()

    assert report.destroyed == ("web-rdead0001-0",)
    assert world.state(orphan.target) in ("shutting-down", "terminated")
    assert set(rig.live()) == pool
