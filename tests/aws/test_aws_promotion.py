"""Promotions and rollout evidence on AWS, against moto's server: both are kept
in the AMI's tags, so `rollout promote` works on an AWS pool, a pool with
`require_promotion_from` accepts a promoted image, and a successful rollout
leaves its evidence on the AMI (and the launch template on the new AMI).

The rollout runs through the library (run_rollout), with the AWS drivers on a
FakeClock: moto's instances have no network, so readiness, target health and
the smoke gate are scripted as in test_aws_rollout.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout.app.rollouts import run_rollout
from rollout.app.workspace import PoolDrivers, Workspace
from rollout.backends.aws.elbv2 import describe_target_health
from rollout.backends.aws.session import tags_of
from rollout.core.promotion import check_promotion
from rollout.inventory import load_environment
from rollout.paths import DataDir
from rollout.testing import FakeClock, FakeSmokeRunner
from tests.aws.moto_harness import (
    ENV,
    ROLE,
    AwsWorld,
    ScriptedTargetHealth,
    build_world,
    seed_plain_pool,
)
from tests.aws.test_aws_cli import project_for, rollout, seed

pytestmark = pytest.mark.aws


def require_promotion(project: Path, previous: str) -> None:
    """The pool of ``project`` takes only images promoted to it or passed in ``previous``."""
    path = project / "inventories" / ENV / "group_vars" / f"{ROLE}.yml"
    doc = yaml.safe_load(path.read_text())
    doc["rollout"]["require_promotion_from"] = previous
    path.write_text(yaml.safe_dump(doc))


def ami_tags(world: AwsWorld, ami: str) -> dict[str, str]:
    found = world.clients.ec2.describe_images(ImageIds=[ami])["Images"]
    return tags_of(found[0])


def last_json(out: str, event: str) -> Any:
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return next(r for r in reversed(records) if r.get("event") == event)


def test_promote_on_aws_records_the_promotion_and_the_pool_then_accepts_the_image(
    world: AwsWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(world, 2)
    project = project_for(world, tmp_path / "project")
    require_promotion(project, "staging")
    data = tmp_path / "data"

    code, out, err = rollout(capsys, project, data, "plan", "--role", ROLE,
                             "--image", world.new.id, "--output", "json")
    assert code == 0, err
    assert any("would refuse the image" in w for w in last_json(out, "plan")["warnings"])
    code, _, err = rollout(capsys, project, data, "run", "--role", ROLE, "--image",
                           world.new.id)
    assert code == 2 and f"may not be rolled out to {ENV!r}" in err

    code, out, err = rollout(capsys, project, data, "promote", world.new.id, "--to", ENV,
                             "--by", "alice", "--output", "json")
    assert code == 0, err
    assert last_json(out, "image_promoted")["promoted_to"] == [ENV]
    value = ami_tags(world, world.new.location)[f"rollout:promoted:{ENV}"]
    assert value.endswith(" alice") and len(value) <= 256
    # Another controller reads the promotion back from the AMI alone.
    again = world.images.get(world.new.id)
    assert again.manifest["promoted_to"] == [ENV]
    assert [p["by"] for p in again.manifest["promotions"]] == ["alice"]
    assert world.images.get(world.old.id).manifest["promoted_to"] == []

    code, out, err = rollout(capsys, project, data, "plan", "--role", ROLE,
                             "--image", world.new.id, "--output", "json")
    assert code == 0, err
    assert not any("would refuse" in w for w in last_json(out, "plan")["warnings"])
    code, out, err = rollout(capsys, project, data, "images", "--role", ROLE,
                             "--output", "json")
    listed = {i["id"]: i for i in json.loads(out)}
    assert listed[world.new.id]["promoted_to"] == [ENV]


@dataclass(frozen=True)
class AwsWorkspace(Workspace):
    """A workspace on the moto project whose pool drives the given AWS drivers
    (a scripted readiness probe and target health, a fake smoke gate)."""

    fixed: PoolDrivers | None = None

    def drivers(self, role: str) -> PoolDrivers:
        assert self.fixed is not None
        return PoolDrivers(self.pool(role), self.fixed.provider, self.fixed.lb,
                           self.fixed.smoke, self.fixed.images)


@pytest.fixture
def small_world(aws_env: object) -> AwsWorld:
    return build_world(deregistration_delay=5)


def test_a_rollout_on_aws_records_its_evidence_on_the_ami(
    small_world: AwsWorld, tmp_path: Path
) -> None:
    world = small_world
    seed_plain_pool(world, 2)
    project = project_for(world, tmp_path / "project")
    require_promotion(project, "staging")
    clock = FakeClock()
    health = ScriptedTargetHealth(describe_target_health(world.clients), clock, world.clients,
                                  rise=3.0)
    drivers = PoolDrivers(world.pool(), world.provider(), world.lb(health),
                          FakeSmokeRunner(clock), world.images)
    ws = AwsWorkspace(project, load_environment(project, ENV), DataDir(tmp_path / "data"),
                      fixed=drivers)
    drivers.lb.members()  # the scripted health sees the seeded targets now...
    clock.advance(10.0)  # ...and they have passed their health checks
    world.images.update_manifest(  # a person promoted it, so the pool accepts it
        world.new.id, lambda m: {**m, "promoted_to": [ENV],
                                 "promotions": [{"env": ENV, "by": "alice", "at": 1.0}]})

    result = run_rollout(ws, ROLE, image_id=world.new.id, clock=clock)

    assert len(result.replaced) == 2
    tag = ami_tags(world, world.new.location)[f"rollout:passed:{ENV}"]
    assert result.id in tag and len(tag) <= 256
    image = world.images.get(world.new.id)
    assert image.manifest["passed_envs"] == [ENV]
    assert [e["rollout_id"] for e in image.manifest["evidence"]] == [result.id]
    assert image.manifest["promoted_to"] == [ENV]  # the promotion is kept beside it
    # A pool that requires this environment accepts the image now.
    check_promotion(image.manifest, "prod", require_promotion_from=ENV)
    # The provider's success hook ran too: the launch template is on the new AMI.
    default = world.clients.ec2.describe_launch_template_versions(
        LaunchTemplateName=world.launch_template, Versions=["$Default"]
    )["LaunchTemplateVersions"][0]
    assert default["LaunchTemplateData"]["ImageId"] == world.new.location
