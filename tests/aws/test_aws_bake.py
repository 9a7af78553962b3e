"""The AMI bake (the bake pipeline over the AWS builder) against moto's server.
Ansible is replaced at the ansible-runner boundary by ``AnsibleSeam`` (moto's
builder has no SSH), the builder's SSH probe by ``always_ready``; everything
else (builder, image, tags, cleanup) is real moto."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rollout.backends.aws.builder import AwsBuilder
from rollout.bake import pipeline
from rollout.bake.request import check_request
from rollout.drivers.ansible import PlaybookFailed, PlaybookResult, TaskFailure
from rollout.errors import BakeError, NotFoundError
from rollout.model import SshTarget
from rollout.testing import FakeClock, FakeSmokeRunner
from tests.aws.moto_harness import AwsWorld, always_ready

pytestmark = pytest.mark.aws


class AnsibleSeam:
    """Stands in for rollout.drivers.ansible.run_playbook: records the call, then
    succeeds, fails a task, or is interrupted (Ctrl-C), as told."""

    def __init__(self, outcome: str = "ok") -> None:
        self.outcome = outcome
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self,
        project: Path,
        playbook: str,
        hosts: dict[str, SshTarget],
        extravars: dict[str, object],
        **kwargs: Any,
    ) -> PlaybookResult:
        self.calls.append(
            {
                "project": project,
                "playbook": playbook,
                "hosts": hosts,
                "extravars": extravars,
                **kwargs,
            }
        )
        stats = {"ok": {h: 7 for h in hosts}, "changed": {h: 3 for h in hosts}}
        if self.outcome == "interrupt":
            raise KeyboardInterrupt
        if self.outcome == "fail":
            result = PlaybookResult(
                status="failed",
                rc=2,
                stats=stats,
                duration=1.0,
                failure=TaskFailure(
                    task="web : install nginx",
                    host=next(iter(hosts)),
                    output="No package matching 'nginx' is available",
                ),
            )
            raise PlaybookFailed(f"{playbook}: {result.describe()}", result)
        return PlaybookResult(status="successful", rc=0, stats=stats, duration=1.0)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "roles" / "web" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "web" / "tasks" / "main.yml").write_text("---\n[]\n")
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "bake.yml").write_text("---\n[]\n")
    return tmp_path


def builders(world: AwsWorld) -> dict[str, str]:
    """Every builder instance ever launched: instance id -> state."""
    res = world.clients.ec2.describe_instances(
        Filters=[{"Name": "tag-key", "Values": ["rollout:builder"]}]
    )["Reservations"]
    return {i["InstanceId"]: i["State"]["Name"] for r in res for i in r["Instances"]}


def bake(world: AwsWorld, project: Path, seam: AnsibleSeam, smoke: Any, tmp_path: Path) -> Any:
    settings = world.settings(ssh_key="/keys/baker", ssh_user="admin").aws
    assert settings is not None
    clock = FakeClock()
    builder = AwsBuilder(settings, clients=world.clients, clock=clock, ssh_probe=always_ready)
    request = check_request(project, "web", "3.0.0", smoke=smoke is not None)
    return pipeline.bake(builder, request, smoke=smoke, log_dir=tmp_path / "logs",
                         clock=clock, run_playbook=seam)


def test_bake_registers_a_tagged_ami_and_terminates_the_builder(
    world: AwsWorld, project: Path, tmp_path: Path
) -> None:
    seam = AnsibleSeam()
    smoke = FakeSmokeRunner(FakeClock())
    image = bake(world, project, seam, smoke, tmp_path)

    assert image.role == "web" and image.version == "3.0.0" and image.verified
    assert image.id.startswith("web-3.0.0-") and image.location.startswith("ami-")
    assert world.images.latest("web") == image  # `rollout images` sees it
    ami = world.clients.ec2.describe_images(ImageIds=[image.location])["Images"][0]
    tags = {t["Key"]: t["Value"] for t in ami["Tags"]}
    assert tags["rollout:image-id"] == image.id and tags["rollout:version"] == "3.0.0"
    assert len(tags["rollout:m:role_checksum"]) == 64
    assert tags["rollout:m:base"] == world.base_ami
    # The one manifest schema: structured fields are compact JSON in their tags,
    # and read back as the same dicts the lab's manifest.json holds.
    host = next(iter(seam.calls[0]["hosts"]))
    assert json.loads(tags["rollout:m:ansible"])["stats"]["ok"] == {host: 7}
    assert image.manifest["ansible"]["stats"]["ok"] == {host: 7}
    assert image.manifest["smoke"]["passed"] is True
    assert image.manifest["extra_vars"] == {"names": []}
    assert all(len(value) <= 256 for value in tags.values())

    (call,) = seam.calls
    assert call["playbook"] == "playbooks/bake.yml" and call["group"] == "builder"
    assert call["extravars"]["rollout_image_id"] == image.id
    assert call["extravars"]["rollout_role"] == "web"
    (target,) = call["hosts"].values()
    assert target.user == "admin" and target.key_file == "/keys/baker"
    assert target.host_key_policy == "verify"  # host keys verified by default
    assert [r[1:] for r in smoke.runs] == [(image.id, True)]

    (state,) = builders(world).values()
    assert state in ("shutting-down", "terminated")
    assert world.provider().list() == []  # a builder is never a pool node


@pytest.mark.parametrize("outcome", ["fail", "smoke", "interrupt"])
def test_a_failed_bake_registers_nothing_and_terminates_the_builder(
    world: AwsWorld, project: Path, tmp_path: Path, outcome: str
) -> None:
    before = world.images.list("web")
    smoke = FakeSmokeRunner(FakeClock())
    if outcome == "smoke":
        smoke.fail(summary="test_healthz failed: 500")
    seam = AnsibleSeam("ok" if outcome == "smoke" else outcome)

    expected: type[BaseException] = KeyboardInterrupt if outcome == "interrupt" else BakeError
    with pytest.raises(expected) as err:
        bake(world, project, seam, smoke, tmp_path)

    if outcome == "fail":
        assert "web : install nginx" in str(err.value) and "nginx" in str(err.value)
    if outcome == "smoke":
        assert "smoke gate failed" in str(err.value) and "500" in str(err.value)
    assert world.images.list("web") == before
    states = builders(world)
    assert len(states) == 1 and set(states.values()) <= {"shutting-down", "terminated"}


def test_bad_input_is_refused_before_any_builder(
    world: AwsWorld, project: Path, tmp_path: Path
) -> None:
    settings = world.settings().aws
    assert settings is not None
    with pytest.raises(NotFoundError) as err:
        request = check_request(project, "db", "1.0.0")
        builder = AwsBuilder(settings, clients=world.clients, clock=FakeClock(),
                             ssh_probe=always_ready)
        pipeline.bake(builder, request, smoke=None, log_dir=tmp_path, clock=FakeClock(),
                      run_playbook=AnsibleSeam())
    assert "'db'" in str(err.value) and "web" in str(err.value)
    assert builders(world) == {}
