"""The AMI half of the AWS bake: create the image from a builder, wait until it
is available, tag its snapshots, and remove a half-made one.

Each call is one bounded AWS operation or a poll on the injected clock; the
builder (:mod:`rollout.backends.aws.builder`) strings them together.
"""

from __future__ import annotations

from collections.abc import Callable

from rollout.backends.aws import CREATED_BY, TAG_CREATED_BY
from rollout.backends.aws.images import image_tags
from rollout.backends.aws.session import AwsClients, aws_errors, tag_list
from rollout.config import AwsSettings
from rollout.errors import BakeError, Interrupted, RolloutError
from rollout.model import Image
from rollout.protocols import Clock


def create_image(clients: AwsClients, settings: AwsSettings, builder: str, image: Image) -> str:
    """Start ``create_image`` from the builder instance; the new AMI id. The AMI
    is tagged at creation with the manifest, so it never exists untagged."""
    tags = dict(settings.extra_tags)
    tags.update(image_tags(image))
    with aws_errors("create image", f"{image.id} from builder {builder}"):
        reply = clients.ec2.create_image(
            InstanceId=builder,
            Name=image.id,
            Description=f"rollout image {image.id}",
            TagSpecifications=[{"ResourceType": "image", "Tags": tag_list(tags)}],
        )
    return str(reply["ImageId"])


def snapshots(clients: AwsClients, ami: str) -> list[str]:
    """The EBS snapshots behind an AMI."""
    with aws_errors("describe image", ami):
        images = clients.ec2.describe_images(ImageIds=[ami])["Images"]
    return [
        m["Ebs"]["SnapshotId"]
        for i in images
        for m in i.get("BlockDeviceMappings", [])
        if m.get("Ebs", {}).get("SnapshotId")
    ]


def tag_snapshots(clients: AwsClients, ami: str, image: Image) -> None:
    """Tag the AMI's snapshots too (cost reports); moto cannot tag them at creation."""
    snaps = snapshots(clients, ami)
    if snaps:
        with aws_errors("tag snapshots", ", ".join(snaps)):
            clients.ec2.create_tags(
                Resources=snaps,
                Tags=tag_list({"rollout:image-id": image.id, TAG_CREATED_BY: CREATED_BY}),
            )


def wait_available(
    clients: AwsClients, ami: str, image_id: str, clock: Clock, *, timeout: float,
    poll: float, cancel: Callable[[], bool],
) -> None:
    """Poll until the AMI is ``available``; BakeError when it fails or times out."""
    deadline = clock.now() + timeout
    while True:
        with aws_errors("describe image", f"{ami} ({image_id})"):
            images = clients.ec2.describe_images(ImageIds=[ami])["Images"]
        state = images[0].get("State", "unknown") if images else "missing"
        if state == "available":
            return
        if state in ("failed", "invalid", "deregistered", "error", "missing"):
            reason = images[0].get("StateReason", {}).get("Message", "") if images else ""
            raise BakeError(f"bake {image_id}: AMI {ami} is {state} {reason}".rstrip())
        if clock.now() >= deadline:
            raise BakeError(
                f"bake {image_id}: AMI {ami} still {state} after {timeout:.0f}s",
                hint="raise the image timeout",
            )
        if cancel():
            raise Interrupted(f"bake {image_id}: stopped waiting for AMI {ami}")
        clock.sleep(poll)


def forget_image(clients: AwsClients, ami: str) -> list[str]:
    """Deregister a half-made AMI and delete its snapshots (best effort)."""
    try:
        snaps = snapshots(clients, ami)
        with aws_errors("deregister image", ami):
            clients.ec2.deregister_image(ImageId=ami)
        for snap in snaps:
            with aws_errors("delete snapshot", snap):
                clients.ec2.delete_snapshot(SnapshotId=snap)
    except RolloutError as exc:
        return [f"could not remove the unfinished AMI {ami}: {exc.message}"]
    return []
