"""The command line on an AWS environment, against moto's real server.

Only read-only commands and input errors go through the CLI here: `rollout run`
would probe the instances' (fake) addresses over the network, so the AWS
rollout choreography is driven through the library in test_aws_rollout.py.
These tests prove the CLI wiring: an inventory with `provider: aws` and
`load_balancer: elbv2` reaches the AMI image store, the EC2 provider and the
target group, and a plan changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout.cli.main import main
from rollout.model import LaunchSpec
from tests.aws.moto_harness import ENV, ROLE, AwsWorld

pytestmark = pytest.mark.aws

REPO = Path(__file__).resolve().parents[2]


def project_for(world: AwsWorld, dest: Path) -> Path:
    """A project whose inventory ENV holds the world's pool (real moto ids)."""
    dest.mkdir(parents=True)
    for name in ("roles", "playbooks", "smoke"):
        (dest / name).symlink_to(REPO / name)
    inv = dest / "inventories" / ENV
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(yaml.safe_dump(
        {"all": {"children": {"lb": {"hosts": {}}, ROLE: {"hosts": {}}}}}))
    settings = world.settings().model_dump(mode="json", exclude_none=True)
    (inv / "group_vars" / f"{ROLE}.yml").write_text(yaml.safe_dump({"rollout": settings}))
    return dest


def rollout(capsys: pytest.CaptureFixture[str], project: Path, data: Path,
            *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(["--project", str(project), "--data-dir", str(data), "--env", ENV, *args])
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


def seed(world: AwsWorld, count: int) -> list[str]:
    """``count`` running nodes of the old image, registered in the target group."""
    provider = world.provider()
    nodes = [provider.launch(LaunchSpec(name=f"web-cli{i}", role=ROLE, env=ENV,
                                        image=world.old, rollout_id=None))
             for i in range(count)]
    world.clients.elbv2.register_targets(
        TargetGroupArn=world.target_group_arn, Targets=[{"Id": n.target} for n in nodes])
    return sorted(n.name for n in nodes)


def world_view(world: AwsWorld) -> Any:
    reservations = world.clients.ec2.describe_instances()["Reservations"]
    instances = sorted((i["InstanceId"], i["State"]["Name"])
                       for r in reservations for i in r["Instances"])
    health = world.clients.elbv2.describe_target_health(TargetGroupArn=world.target_group_arn)
    targets = sorted((d["Target"]["Id"], d["TargetHealth"]["State"])
                     for d in health["TargetHealthDescriptions"])
    return instances, targets


def test_images_lists_the_amis_by_their_tags(world: AwsWorld, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    project = project_for(world, tmp_path / "project")
    code, out, err = rollout(capsys, project, tmp_path / "data", "images", "--role", ROLE,
                             "--output", "json")
    assert code == 0, err
    listed = {(i["id"], i["version"], i["location"]) for i in json.loads(out)}
    assert (world.old.id, world.old.version, world.old.location) in listed
    assert (world.new.id, world.new.version, world.new.location) in listed


def test_plan_on_aws_names_the_nodes_and_changes_nothing(
    world: AwsWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = seed(world, 2)
    project = project_for(world, tmp_path / "project")
    before = world_view(world)
    code, out, err = rollout(capsys, project, tmp_path / "data", "plan", "--role", ROLE,
                             "--image", world.new.id, "--output", "json")
    assert code == 0, err
    plan = json.loads(out.splitlines()[-1])
    assert plan["target_image"] == world.new.id
    assert sorted(plan["replace"]) == names and plan["skipped"] == []
    assert plan["breaches_floor"] is False
    assert world_view(world) == before


def test_bad_input_on_aws_exits_2_before_touching_anything(
    world: AwsWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(world, 1)
    project = project_for(world, tmp_path / "project")
    before = world_view(world)
    code, _, err = rollout(capsys, project, tmp_path / "data", "build", "--role", "nope",
                           "--version", "1.0.0")
    assert code == 2 and "unknown role 'nope'" in err
    code, _, err = rollout(capsys, project, tmp_path / "data", "plan", "--role", ROLE,
                           "--image", "ami-no;such")
    assert code == 2 and "--image" in err
    assert world_view(world) == before
