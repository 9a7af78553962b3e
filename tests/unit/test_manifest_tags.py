"""The one manifest schema in AMI tags: structured fields fit a 256-character
tag and read back as the dicts the lab's manifest.json holds."""

from __future__ import annotations

import json

from rollout.backends.aws.images import MAX_TAG_VALUE, image_from_ami, image_tags
from rollout.model import Image

HOST = "bake-1a2b3c4d"
STATS = {k: ({HOST: 7} if k in ("ok", "changed") else {})
         for k in ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")}


def _round_trip(manifest: dict[str, object]) -> tuple[dict[str, str], dict[str, object]]:
    image = Image(id="web-1.0.0-00000000", role="web", version="1.0.0", created_at=5.0,
                  manifest={"id": "web-1.0.0-00000000", **manifest})
    tags = image_tags(image)
    ami = {"ImageId": "ami-1", "State": "available",
           "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
    found = image_from_ami(ami)
    assert found is not None
    return tags, found.manifest


def test_structured_fields_come_back_as_dicts() -> None:
    smoke = {"passed": True, "summary": "5 passed", "junit": "/d/e/web.xml", "duration": 1.5}
    tags, manifest = _round_trip({"smoke": smoke, "extra_vars": {"a": "1"},
                                  "ansible": {"stats": STATS, "log": "/var/log/x.log"}})
    assert manifest["smoke"] == smoke and manifest["extra_vars"] == {"a": "1"}
    assert manifest["ansible"] == {"stats": STATS, "log": "/var/log/x.log"}
    assert manifest["id"] == "web-1.0.0-00000000" and manifest["created_at_epoch"] == 5.0
    assert all(len(v) <= MAX_TAG_VALUE for v in tags.values())


def test_a_field_too_long_for_a_tag_is_made_to_fit() -> None:
    smoke = {"passed": True, "summary": "s" * 160, "junit": "/" + "j" * 200, "duration": 1.0}
    ansible = {"stats": STATS, "log": "/" + "l" * 240}
    extra = {f"v{i}": "x" * 40 for i in range(8)}
    tags, manifest = _round_trip({"smoke": smoke, "ansible": ansible, "extra_vars": extra})
    assert all(len(v) <= MAX_TAG_VALUE for v in tags.values())
    # Controller-local paths go first, the verdict and counters stay.
    assert manifest["smoke"] == {"passed": True, "summary": "s" * 160, "duration": 1.0}
    assert manifest["ansible"] == {"stats": {"ok": {HOST: 7}, "changed": {HOST: 7}}}
    shortened = manifest["extra_vars"]
    assert isinstance(shortened, dict) and set(shortened) == set(extra)
    assert any(v.endswith("…") for v in shortened.values())
    assert json.loads(tags["rollout:m:smoke"]) == manifest["smoke"]
