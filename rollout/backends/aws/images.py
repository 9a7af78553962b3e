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
| rollout:promoted:ENV| ``<epoch> <who>``: the last promotion to ENV      |
| rollout:passed:ENV  | ``<epoch> <rollout id> <summary>``: the last      |
|                     | rollout that passed its smoke gate in ENV         |

The last two are the promotion record (:mod:`rollout.core.promotion`) kept on
the AMI itself, so every controller that can see the AMI sees it, and no
other store has to be kept in step. A tag value holds 256 characters, so each
keeps only the latest entry per environment, and the JUnit files of the
evidence stay in the controller's data directory (the manifest read back
lists none). :meth:`AwsImageStore.update_manifest` maps manifest changes onto
these tags (and scalar fields onto ``rollout:m:KEY``).

The manifest is the one schema of :mod:`rollout.bake.manifest`. Its
structured fields (``ansible``, ``smoke``, ``extra_vars``) are stored as
compact JSON and decoded again when read, so a reader gets the same dict on
AWS as on the lab. A tag value holds at most 256 characters: a field that does
not fit first loses its controller-local paths (the Ansible log, the JUnit
file), then empty counters, then its longest strings are shortened (ending in
``…``). Lists (promotions, evidence) are not stored in tags.

``Image.location`` is the AMI id. ``get`` accepts either an image id or an AMI
id. Lookups use ``describe_images`` with ``Owners`` (``self`` by default, plus
any account images are promoted from) and tag filters, paginated.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
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
from rollout.bake.manifest import STRUCTURED
from rollout.config import AwsSettings
from rollout.core.promotion import EVIDENCE_KIND
from rollout.errors import ConfigError, NotFoundError
from rollout.model import Image
from rollout.protocols import ImageStore

MAX_TAG_VALUE = 256
# Manifest keys that have tags of their own above.
_OWN_TAGS = ("id", "role", "version", "parent", "verified", "created_at_epoch")
# Parts of a structured field that matter only on the controller that baked it.
_DISPOSABLE = {"ansible": ("log",), "smoke": ("junit",)}


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _pruned(value: Any) -> Any:
    """``value`` without empty mappings (counters no host hit)."""
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v != {}}
    return value


def _shortened(value: Any) -> tuple[Any, bool]:
    """``value`` with its longest string cut in half (ending in …); False when
    no string is long enough to cut."""
    longest: list[Any] = []

    def find(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                find(v, (*path, k))
        elif isinstance(node, str) and (not longest or len(node) > len(longest[1])):
            longest[:] = [path, node]

    find(value, ())
    if not longest or len(longest[1]) <= 8:
        return value, False
    path, text = longest
    cut = text[: len(text) // 2] + "…"

    def rebuilt(node: Any, rest: tuple[Any, ...]) -> Any:
        if not rest:
            return cut
        return {k: rebuilt(v, rest[1:]) if k == rest[0] else v for k, v in node.items()}

    return rebuilt(value, path), True


def structured_tag(key: str, value: dict[str, Any]) -> str:
    """A structured manifest field as compact JSON of at most 256 characters."""
    text = _json(value)
    if len(text) <= MAX_TAG_VALUE:
        return text
    slim = _pruned({k: v for k, v in value.items() if k not in _DISPOSABLE.get(key, ())})
    while len(text := _json(slim)) > MAX_TAG_VALUE:
        slim, cut = _shortened(slim)
        if not cut:
            return _json({"truncated": True})
    return text

TAG_PROMOTED_PREFIX = "rollout:promoted:"  # + env: "<epoch> <who>"
TAG_PASSED_PREFIX = "rollout:passed:"  # + env: "<epoch> <rollout id> <summary>"
#: Manifest keys that come from the AMI description, not from tags.
_DESCRIBED = ("ami_id", "ami_state", "owner")
#: Manifest keys kept in the promotion tags rather than in rollout:m:KEY.
_RECORDS = ("id", "passed_envs", "promoted_to", "promotions", "evidence")


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
        if value is None or isinstance(value, list) or key in _OWN_TAGS:
            continue
        if isinstance(value, dict):
            tags[f"{TAG_MANIFEST_PREFIX}{key}"] = structured_tag(key, value)
        else:
            tags[f"{TAG_MANIFEST_PREFIX}{key}"] = str(value)[:MAX_TAG_VALUE]
    return tags


def _field(key: str, text: str) -> Any:
    """A manifest field read back from its tag: structured ones decoded (an AMI
    baked before they were JSON keeps its text)."""
    if key not in STRUCTURED:
        return text
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    return value if isinstance(value, dict) else text


def _stamp(value: str) -> tuple[float, str]:
    """``"<epoch> rest"`` -> (epoch, rest); an unreadable epoch counts as 0."""
    at, _, rest = value.partition(" ")
    try:
        return float(at), rest
    except ValueError:
        return 0.0, value


def record_fields(tags: Mapping[str, str]) -> dict[str, Any]:
    """The manifest's promotion record (``passed_envs``, ``promoted_to``,
    ``promotions``, ``evidence``) read back from the promotion tags, oldest first."""
    promotions, evidence = [], []
    for key, value in tags.items():
        if key.startswith(TAG_PROMOTED_PREFIX):
            at, by = _stamp(value)
            promotions.append({"env": key[len(TAG_PROMOTED_PREFIX):], "by": by, "at": at})
        elif key.startswith(TAG_PASSED_PREFIX):
            at, rest = _stamp(value)
            rollout_id, _, summary = rest.partition(" ")
            evidence.append({"kind": EVIDENCE_KIND, "env": key[len(TAG_PASSED_PREFIX):],
                             "rollout_id": rollout_id, "junit": [], "smoke": summary, "at": at})
    promotions.sort(key=lambda p: (p["at"], p["env"]))
    evidence.sort(key=lambda e: (e["at"], e["env"]))
    return {
        "passed_envs": [e["env"] for e in evidence],
        "promoted_to": [p["env"] for p in promotions],
        "promotions": promotions,
        "evidence": evidence,
    }


def record_tags(manifest: Mapping[str, Any]) -> dict[str, str]:
    """The promotion tags that hold ``manifest``'s promotion record: the last
    promotion and the last passing rollout of each environment."""
    tags: dict[str, str] = {}
    promotions = [p for p in manifest.get("promotions", []) if isinstance(p, dict)]
    for env in manifest.get("promoted_to", []):
        last = max((p for p in promotions if p.get("env") == env),
                   key=lambda p: float(p.get("at") or 0.0), default={})
        tags[f"{TAG_PROMOTED_PREFIX}{env}"] = (
            f"{float(last.get('at') or 0.0):.3f} {last.get('by', '')}")
    evidence = [e for e in manifest.get("evidence", [])
                if isinstance(e, dict) and e.get("kind") == EVIDENCE_KIND]
    for env in manifest.get("passed_envs", []):
        last = max((e for e in evidence if e.get("env") == env),
                   key=lambda e: float(e.get("at") or 0.0), default={})
        smoke = last.get("smoke", "")
        tags[f"{TAG_PASSED_PREFIX}{env}"] = (
            f"{float(last.get('at') or 0.0):.3f} {last.get('rollout_id', '-')} "
            f"{smoke if isinstance(smoke, str) else ''}")
    return {k: v.strip()[:MAX_TAG_VALUE] for k, v in tags.items()}


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
    image = Image(
        id=tags[TAG_IMAGE_ID],
        role=tags.get(TAG_ROLE, ""),
        version=tags.get(TAG_VERSION, ""),
        created_at=created_at,
        location=str(ami["ImageId"]),
        parent=tags.get(TAG_PARENT) or None,
        verified=tags.get(TAG_VERIFIED, "true") != "false",
    )
    manifest: dict[str, Any] = {
        key: _field(key, v)
        for k, v in tags.items()
        if k.startswith(TAG_MANIFEST_PREFIX) and (key := k[len(TAG_MANIFEST_PREFIX):])
    }
    manifest.update(
        id=image.id, role=image.role, version=image.version, parent=image.parent,
        verified=image.verified, created_at_epoch=image.created_at,
        ami_id=ami["ImageId"], ami_state=ami.get("State", ""), owner=ami.get("OwnerId", ""),
    )
    manifest.update(record_fields(tags))
    return replace(image, manifest=manifest)


def _creation_date(ami: dict[str, Any]) -> float:
    text = str(ami.get("CreationDate", "")).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


class AwsImageStore(ImageStore):
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

    def update_manifest(
        self, image_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Image:
        """Apply ``change`` to the image's manifest and write what changed onto
        the AMI: the promotion tags, and ``rollout:m:KEY`` for scalar fields
        (see the module doc). One ``create_tags`` call, so a change lands whole."""
        image = self.get(image_id)
        before = copy.deepcopy(dict(image.manifest))
        after = change(copy.deepcopy(before))
        if after.get("id", image.id) != image.id:
            raise ConfigError(f"AMI {image.location}: an update may not change the image id "
                              f"(got {after.get('id')!r})")
        kept = record_tags(before)
        tags = {k: v for k, v in record_tags(after).items() if kept.get(k) != v}
        for key, value in sorted(after.items()):
            if key in _DESCRIBED or key in _RECORDS or value == before.get(key):
                continue
            if value is None or isinstance(value, dict | list):
                raise ConfigError(
                    f"AMI {image.location}: manifest field {key!r} cannot be kept in a tag "
                    "(only text, numbers and the promotion record can)")
            tags[f"{TAG_MANIFEST_PREFIX}{key}"] = str(value)[:MAX_TAG_VALUE]
        if tags:
            with aws_errors("tag image", f"{image.location} ({image.id})"):
                self.clients.ec2.create_tags(
                    Resources=[image.location],
                    Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())],
                )
        return self.get(image.location)
