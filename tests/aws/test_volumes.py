"""Data volumes of AWS pools on moto: an EBS volume per slot moves from a
stopped old node to its replacement, and back on restore."""

from __future__ import annotations

from typing import Any

import pytest

from rollout.backends.aws.provider import AwsProvider
from rollout.backends.aws.volumes import TAG_VOLUME_HOLDER, TAG_VOLUME_PREVIOUS
from rollout.config import PoolSettings
from rollout.errors import DriverError
from rollout.model import LaunchSpec, Node, Setup
from tests.aws.moto_harness import ENV, ROLE, AwsWorld, StepClock, always_ready

pytestmark = pytest.mark.aws


def volume_provider(world: AwsWorld) -> AwsProvider:
    data = world.settings().model_dump()
    data.update(volume="/var/lib/data", strategy="in_place", max_unavailable=1, min_healthy=1)
    settings = PoolSettings.model_validate(data)
    return AwsProvider(ENV, ROLE, settings, clients=world.clients, images=world.images,
                       probe=always_ready, clock=StepClock())


def volumes(world: AwsWorld) -> list[dict[str, Any]]:
    found = world.clients.ec2.describe_volumes(
        Filters=[{"Name": "tag-key", "Values": ["rollout:volume-slot"]}])["Volumes"]
    return list(found)


def tags(volume: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in volume.get("Tags", [])}


def attached_to(world: AwsWorld) -> str | None:
    (volume,) = volumes(world)
    atts = volume.get("Attachments") or []
    return str(atts[0]["InstanceId"]) if atts else None


def launch(provider: AwsProvider, world: AwsWorld, name: str, old: str | None = None) -> Node:
    return provider.launch(LaunchSpec(name=name, role=ROLE, env=ENV, image=world.new,
                                      rollout_id="r-vol", volume_from=old))


def test_a_fresh_node_gets_a_volume_attached_once_it_runs(world: AwsWorld) -> None:
    provider = volume_provider(world)
    node = launch(provider, world, "web-a")
    (volume,) = volumes(world)
    assert tags(volume)[TAG_VOLUME_HOLDER] == "web-a"
    assert volume["AvailabilityZone"] == node.labels["aws:az"]
    assert volume["Size"] == 10

    owed = provider.readiness(node)  # names the step, takes none
    assert owed.ready is False and owed.setup is Setup.ATTACH_VOLUME
    assert attached_to(world) is None
    provider.attach_volume(node)  # the core's journaled step
    assert attached_to(world) == node.target
    assert provider.readiness(node).ready is True


def test_the_volume_moves_only_from_a_stopped_node_and_comes_back(world: AwsWorld) -> None:
    provider = volume_provider(world)
    old = launch(provider, world, "web-a")
    provider.attach_volume(old)
    assert attached_to(world) == old.target

    with pytest.raises(DriverError, match="not stopped"):
        launch(provider, world, "web-b", old="web-a")
    assert attached_to(world) == old.target
    assert not provider.instances.by_name("web-b")  # nothing was launched

    provider.stop(old)
    new = launch(provider, world, "web-b", old="web-a")
    (volume,) = volumes(world)
    assert tags(volume)[TAG_VOLUME_HOLDER] == "web-b"
    assert tags(volume)[TAG_VOLUME_PREVIOUS] == "web-a"
    assert new.labels["aws:az"] == volume["AvailabilityZone"]
    provider.attach_volume(new)
    assert attached_to(world) == new.target

    # Restore: refused while the replacement runs; after it is gone, back to the old.
    with pytest.raises(DriverError, match="web-b holds it"):
        provider.start(old)
    provider.destroy(new)
    provider.start(old)
    (volume,) = volumes(world)
    assert tags(volume)[TAG_VOLUME_HOLDER] == "web-a"
    assert attached_to(world) == old.target
    assert len(volumes(world)) == 1
