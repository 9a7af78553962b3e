"""The AMI image store: images are AMIs found by their tags, so `rollout images`
works against AWS; and AWS errors become messages naming the resource."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from rollout.backends.aws.images import AwsImageStore
from rollout.backends.aws.session import AwsClients
from rollout.errors import DriverError, NotFoundError
from tests.aws.moto_harness import AwsWorld, make_image

pytestmark = pytest.mark.aws


def test_images_are_found_by_their_tags(world: AwsWorld) -> None:
    store = world.images
    api = make_image(
        world.clients, world.base_ami, world.subnets[0], "1.0.0", created_at=3000.0, role="api"
    )
    # A foreign AMI of our own account, without rollout tags, is not an image.
    iid = world.clients.ec2.run_instances(ImageId=world.base_ami, MinCount=1, MaxCount=1)[
        "Instances"
    ][0]["InstanceId"]
    world.clients.ec2.create_image(InstanceId=iid, Name="someone-elses")

    assert [i.id for i in store.list("web")] == [world.old.id, world.new.id]
    assert [i.id for i in store.list()] == [world.old.id, world.new.id, api.id]
    assert store.latest("web").id == world.new.id
    assert store.oldest("web").id == world.old.id
    assert store.by_version("web", "1.0.0").location == world.old.location
    assert store.get(world.new.id).location == world.new.location
    assert store.get(world.new.location).id == world.new.id  # by AMI id too
    image = store.get(world.new.id)
    assert image.role == "web" and image.version == "2.0.0" and image.verified
    assert image.manifest["role_checksum"] == "0" * 16

    with pytest.raises(NotFoundError) as err:
        store.by_version("web", "3.0.0")
    assert "3.0.0" in str(err.value) and "1.0.0, 2.0.0" in str(err.value)
    with pytest.raises(NotFoundError) as err:
        store.latest("db")
    assert "'db'" in str(err.value)


def stubbed(service: str) -> tuple[AwsClients, Stubber]:
    """Clients whose ``service`` client answers from a botocore Stubber: the
    client boundary, for errors moto never produces (AccessDenied, throttling)."""
    clients = AwsClients(region="eu-west-1")
    client = boto3.session.Session(region_name="eu-west-1").client(service)
    clients._clients[service] = client
    return clients, Stubber(client)


def test_access_denied_names_the_action_and_points_at_the_policy(aws_env: object) -> None:
    clients, stub = stubbed("ec2")
    stub.add_client_error(
        "describe_images",
        service_error_code="UnauthorizedOperation",
        service_message="You are not authorized to perform this operation.",
        http_status_code=403,
    )
    with stub, pytest.raises(DriverError) as err:
        AwsImageStore(clients).list("web")
    text = str(err.value)
    assert "describe images of role 'web'" in text and "access denied" in text
    assert "UnauthorizedOperation" in text and "docs/aws-iam-policy.json" in text
    assert "testing" not in text  # never the credentials


def test_throttling_after_retries_says_what_to_do(aws_env: object) -> None:
    clients, stub = stubbed("elbv2")
    stub.add_client_error(
        "describe_target_health", service_error_code="Throttling", http_status_code=400
    )
    from rollout.backends.aws.elbv2 import Elbv2LoadBalancer

    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef"
    with stub, pytest.raises(DriverError) as err:
        Elbv2LoadBalancer(arn, clients=clients).members()
    assert arn in str(err.value) and "throttled" in str(err.value)
    assert "adaptive" in str(err.value)
