"""The AWS image store: baked AMIs, found by their tags.

An AMI is a rollout image iff it carries ``rollout:image-id``. Its other tags:

| tag                 | value                                             |
|---------------------|---------------------------------------------------|
| rollout:image-id    | ``<role>-<version>-<8 hex>``, unique per bake     |
| rollout:role        | the role baked                                    |
| rollout:version     | the image version                                 |
| rollout:parent      | the parent image id, when baked from one          |
| rollout:verified    | ``true``, or ``false`` when baked without smoke   |
| rollout:created-at  | epoch seconds of the bake                         |
| rollout:m:KEY       | other manifest fields (role checksum, commit ...) |

``Image.location`` is the AMI id. ``get`` accepts either an image id or an AMI
id. Lookups use ``describe_images`` with ``Owners`` (``self`` by default, plus
any account images are promoted from) and tag filters, paginated.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rollout import names
from rollout.backends.aws import (
    TAG_CREATED_AT,
    TAG_IMAGE_ID,
    TAG_MANIFEST_PREFIX,
    TAG_PARENT,
    TAG_ROLE,
    TAG_VERIFIED,
    TAG_VERSION,
)
from rollout.backends.aws.session import AwsClients, aws_errors, tags_of
from rollout.config import AwsSettings
from rollout.errors import NotFoundError
from rollout.model import Image

MAX_TAG_VALUE = 256


def image_tags(image: Image) -> dict[str, str]:
    """The AMI tags that describe ``image`` (AWS allows 50 tags, 256 chars each)."""
    tags = {
        TAG_IMAGE_ID: image.id,
        TAG_ROLE: image.role,
        TAG_VERSION: image.version,
        TAG_VERIFIED: "true" if image.verified else "false",
        TAG_CREATED_AT: f"{image.created_at:.3f}",
        "Name": image.id,
    }
    if image.parent:
        tags[TAG_PARENT] = image.parent
    for key, value in sorted(image.manifest.items()):
        if len(tags) >= 45:  # leave room for the user's own tags
            break
        if value is None or isinstance(value, dict | list):
            continue
        tags[f"{TAG_MANIFEST_PREFIX}{key}"] = str(value)[:MAX_TAG_VALUE]
    return tags


def image_from_ami(ami: dict[str, Any]) -> Image | None:
    """The rollout image an AMI description holds, or None for a foreign AMI."""
    tags = tags_of(ami)
    if TAG_IMAGE_ID not in tags:
        return None
    created = tags.get(TAG_CREATED_AT)
    try:
        created_at = float(created) if created else _creation_date(ami)
    except ValueError:
        created_at = _creation_date(ami)
    manifest: dict[str, Any] = {
        k[len(TAG_MANIFEST_PREFIX) :]: v
        for k, v in tags.items()
        if k.startswith(TAG_MANIFEST_PREFIX)
    }
    manifest.update(
        ami_id=ami["ImageId"], ami_state=ami.get("State", ""), owner=ami.get("OwnerId", "")
    )
    return Image(
        id=tags[TAG_IMAGE_ID],
        role=tags.get(TAG_ROLE, ""),
        version=tags.get(TAG_VERSION, ""),
        created_at=created_at,
        location=str(ami["ImageId"]),
        parent=tags.get(TAG_PARENT) or None,
        verified=tags.get(TAG_VERIFIED, "true") != "false",
        manifest=manifest,
    )


def _creation_date(ami: dict[str, Any]) -> float:
    text = str(ami.get("CreationDate", "")).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


class AwsImageStore:
    """``rollout.protocols.ImageStore`` over AMI tags, so ``rollout images``
    works against AWS too. Only ``available`` AMIs count as registered."""

    def __init__(self, clients: AwsClients, *, owners: Sequence[str] = ("self",)) -> None:
        self.clients = clients
        self.owners = list(owners)

    @classmethod
    def from_settings(cls, settings: AwsSettings) -> AwsImageStore:
        owners = ("self", *settings.image_owners)
        return cls(AwsClients.from_settings(settings), owners=owners)

    def _describe(self, filters: list[dict[str, Any]], what: str) -> list[Image]:
        filters = [
            *filters,
            {"Name": "tag-key", "Values": [TAG_IMAGE_ID]},
            {"Name": "state", "Values": ["available"]},
        ]
        with aws_errors("describe images", what):
            amis = self.clients.paginate(
                "ec2", "describe_images", "Images", Owners=self.owners, Filters=filters
            )
        images = [img for img in (image_from_ami(a) for a in amis) if img is not None]
        return sorted(images, key=lambda i: (i.created_at, i.id))

    def list(self, role: str | None = None) -> list[Image]:
        if role is None:
            return self._describe([], "of every role")
        names.name(role, "role")
        return self._describe([{"Name": f"tag:{TAG_ROLE}", "Values": [role]}], f"of role {role!r}")

    def get(self, image_id: str) -> Image:
        names.image_id(image_id)
        if image_id.startswith("ami-"):
            found = self._describe([{"Name": "image-id", "Values": [image_id]}], image_id)
        else:
            found = self._describe(
                [{"Name": f"tag:{TAG_IMAGE_ID}", "Values": [image_id]}], image_id
            )
        if not found:
            raise NotFoundError(
                f"no available AMI holds image {image_id!r} (owners: {', '.join(self.owners)})",
                hint="list the images with `rollout images`; bake it with `rollout build`",
            )
        return found[-1]

    def latest(self, role: str) -> Image:
        images = self.list(role)
        if not images:
            raise NotFoundError(
                f"no AMI of role {role!r} is registered",
                hint=f"bake one with `rollout build --role {role}`",
            )
        return images[-1]

    def by_version(self, role: str, version: str) -> Image:
        names.name(role, "role")
        names.version(version)
        found = self._describe(
            [
                {"Name": f"tag:{TAG_ROLE}", "Values": [role]},
                {"Name": f"tag:{TAG_VERSION}", "Values": [version]},
            ],
            f"{role} {version}",
        )
        if not found:
            known = sorted({i.version for i in self.list(role)})
            raise NotFoundError(
                f"no AMI of role {role!r} has version {version!r} "
                f"(versions: {', '.join(known) or 'none'})",
                hint="pick a listed version, or bake this one first",
            )
        return found[-1]

    def oldest(self, role: str) -> Image:
        images = self.list(role)
        if not images:
            raise NotFoundError(f"no AMI of role {role!r} is registered")
        return images[0]

    def by_ami(self, ami_ids: Sequence[str]) -> dict[str, Image]:
        """The rollout images behind the given AMI ids; unknown ones are left out
        (a filter, not ``ImageIds``, so a deregistered AMI is not an error)."""
        if not ami_ids:
            return {}
        with aws_errors("describe images", ", ".join(ami_ids)):
            amis = self.clients.paginate(
                "ec2",
                "describe_images",
                "Images",
                Filters=[{"Name": "image-id", "Values": list(ami_ids)}],
            )
        found = {}
        for ami in amis:
            image = image_from_ami(ami)
            if image is not None:
                found[str(ami["ImageId"])] = image
        return found

    def copy_to_region(self, image: Image, region: str, *, wait: bool = True) -> Image:
        """Copy the AMI to ``region`` with its tags (promotion across regions)."""
        target = AwsClients(
            region=region,
            retry_mode=self.clients.retry_mode,
            max_attempts=self.clients.max_attempts,
        )
        source_region = self.clients.ec2.meta.region_name
        with aws_errors("copy image", f"{image.location} ({image.id}) to {region}"):
            new_ami = target.ec2.copy_image(
                SourceImageId=image.location,
                SourceRegion=source_region,
                Name=image.id,
                Description=f"rollout image {image.id}",
            )["ImageId"]
            target.ec2.create_tags(
                Resources=[new_ami],
                Tags=[{"Key": k, "Value": v} for k, v in image_tags(image).items()],
            )
            if wait:
                target.ec2.get_waiter("image_available").wait(
                    ImageIds=[new_ami], WaiterConfig={"Delay": 15, "MaxAttempts": 120}
                )
        return AwsImageStore(target, owners=self.owners).get(new_ami)

    def share_with_account(self, image: Image, account_id: str) -> None:
        """Let ``account_id`` launch the AMI (promotion across accounts). AMI tags
        are not shared across accounts, so the other account copies the AMI into
        its own (and tags the copy) before its image store sees it."""
        if not (account_id.isdigit() and len(account_id) == 12):
            raise NotFoundError(f"{account_id!r} is not a 12-digit AWS account id")
        with aws_errors("share image", f"{image.location} ({image.id}) with {account_id}"):
            self.clients.ec2.modify_image_attribute(
                ImageId=image.location,
                LaunchPermission={"Add": [{"UserId": account_id}]},
            )
