"""Promotion rules and the evidence they leave in an image's manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rollout.backends.lab.images import LabImageStore
from rollout.core.promotion import (
    check_promotion,
    previous_env,
    record_pass,
    record_promotion,
)
from rollout.errors import ConfigError, ExitCode
from rollout.paths import DataDir

ORDER = ("dev", "staging", "prod")


def manifest(passed: list[str] | None = None, promoted: list[str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"id": "web-2.0.0-abc", "role": "web", "version": "2.0.0"}
    if passed is not None:
        data["passed_envs"] = passed
    if promoted is not None:
        data["promoted_to"] = promoted
    return data


@pytest.mark.parametrize(
    ("passed", "promoted", "env", "required", "accepted"),
    [
        # no requirement: anything goes, even a fresh image
        ([], [], "prod", None, True),
        # passed the required env
        (["dev", "staging"], [], "prod", "staging", True),
        # passed only an earlier env
        (["dev"], [], "prod", "staging", False),
        # a person promoted it to this env
        (["dev"], ["prod"], "prod", "staging", True),
        # promoted to the required env is not the same as having passed there
        (["dev"], ["staging"], "prod", "staging", False),
        # nothing at all
        ([], [], "staging", "dev", False),
        (["dev"], [], "staging", "dev", True),
    ],
)
def test_promotion_rule(passed: list[str], promoted: list[str], env: str,
                        required: str | None, accepted: bool) -> None:
    image = manifest(passed, promoted)
    if accepted:
        check_promotion(image, env, require_promotion_from=required, promotion_order=ORDER)
        return
    with pytest.raises(ConfigError) as err:
        check_promotion(image, env, require_promotion_from=required, promotion_order=ORDER)
    assert err.value.exit_code is ExitCode.USAGE
    text = str(err.value)
    assert "web-2.0.0-abc" in text and repr(env) in text and repr(required) in text
    assert f"rollout promote web-2.0.0-abc --to {env}" in text


def test_a_manifest_without_the_keys_has_passed_nothing() -> None:
    with pytest.raises(ConfigError, match=r"it passed: none"):
        check_promotion(manifest(), "prod", require_promotion_from="staging",
                        promotion_order=ORDER)


def test_without_a_promotion_order_the_rule_still_applies() -> None:
    check_promotion(manifest(["qa"]), "live", require_promotion_from="qa", promotion_order=())
    with pytest.raises(ConfigError):
        check_promotion(manifest([]), "live", require_promotion_from="qa", promotion_order=())


@pytest.mark.parametrize(
    ("env", "required", "fragment"),
    [
        ("prod", "stagin", "is not in the promotion order"),
        ("staging", "prod", "does not come before"),
        ("staging", "staging", "does not come before"),
    ],
)
def test_a_requirement_that_contradicts_the_order_is_a_config_error(
        env: str, required: str, fragment: str) -> None:
    image = manifest(["dev", "staging", "prod", "stagin"])
    with pytest.raises(ConfigError) as err:
        check_promotion(image, env, require_promotion_from=required, promotion_order=ORDER)
    assert str(err.value).startswith("rollout.require_promotion_from: ")
    assert fragment in str(err.value)


def test_a_malformed_manifest_key_is_named() -> None:
    with pytest.raises(ConfigError, match="'passed_envs' must be a list"):
        check_promotion({"id": "x", "passed_envs": "staging"}, "prod",
                        require_promotion_from="staging", promotion_order=ORDER)


@pytest.mark.parametrize(
    ("env", "previous"), [("dev", None), ("staging", "dev"), ("prod", "staging"), ("qa", None)]
)
def test_previous_env(env: str, previous: str | None) -> None:
    assert previous_env(env, ORDER) == previous


# -- evidence ---------------------------------------------------------------------

def test_record_pass_adds_the_env_and_the_evidence_without_touching_the_input() -> None:
    before = manifest(["dev"])
    after = record_pass(before, "staging", "r-123", ["reports/staging.xml"],
                        {"passed": 4, "failed": 0}, at=1700000000.0)
    assert before == manifest(["dev"])  # unchanged
    assert after["passed_envs"] == ["dev", "staging"]
    assert after["evidence"] == [{
        "kind": "smoke_pass", "env": "staging", "rollout_id": "r-123",
        "junit": ["reports/staging.xml"], "smoke": {"passed": 4, "failed": 0}, "at": 1700000000.0,
    }]
    json.dumps(after)  # the store writes it as JSON
    check_promotion(after, "prod", require_promotion_from="staging", promotion_order=ORDER)


def test_recording_the_same_rollout_twice_keeps_one_entry() -> None:
    once = record_pass(manifest(), "dev", "r-1", ["a.xml"], "4 passed", at=1.0)
    twice = record_pass(once, "dev", "r-1", ["a.xml", "b.xml"], "5 passed", at=2.0)
    other = record_pass(twice, "dev", "r-2", [], "5 passed", at=3.0)
    assert twice["passed_envs"] == ["dev"]
    assert [(e["rollout_id"], e["at"]) for e in twice["evidence"]] == [("r-1", 2.0)]
    assert [e["rollout_id"] for e in other["evidence"]] == ["r-1", "r-2"]


def test_record_promotion_lets_the_image_into_that_env() -> None:
    before = manifest(["dev"])
    after = record_promotion(before, "prod", by="alice", at=1700000000.0)
    assert "promoted_to" not in before
    assert after["promoted_to"] == ["prod"]
    assert after["promotions"] == [{"env": "prod", "by": "alice", "at": 1700000000.0}]
    again = record_promotion(after, "prod", by="bob", at=1700000001.0)
    assert again["promoted_to"] == ["prod"]
    assert len(again["promotions"]) == 2
    check_promotion(after, "prod", require_promotion_from="staging", promotion_order=ORDER)


@pytest.mark.parametrize("env", ["Prod", "pr od", "prod;rm", ""])
def test_record_promotion_rejects_bad_env_names(env: str) -> None:
    with pytest.raises(ConfigError, match="--to"):
        record_promotion(manifest(), env, by="alice", at=0.0)


def test_record_promotion_needs_a_name() -> None:
    with pytest.raises(ConfigError, match="who promotes"):
        record_promotion(manifest(), "prod", by=" ", at=0.0)


def test_other_kinds_of_evidence_are_kept() -> None:
    soak = {"kind": "soak", "env": "dev", "rollout_id": "r-1"}
    after = record_pass({**manifest(), "evidence": [soak]}, "dev", "r-1", [], "ok", at=1.0)
    assert after["evidence"][0] == soak
    assert [e["kind"] for e in after["evidence"]] == ["soak", "smoke_pass"]


def test_the_image_store_persists_promotion_records(tmp_path: Path) -> None:
    store = LabImageStore(DataDir(tmp_path).ensure())
    image_id = "web-2.0.0-0badcafe"
    (store.image_dir(image_id) / "rootfs").mkdir(parents=True)
    store.register(image_id, {"id": image_id, "role": "web", "version": "2.0.0",
                              "created_at_epoch": 1.0})
    store.update_manifest(image_id, lambda m: record_pass(
        m, "staging", "r-9", ["reports/staging.xml"], {"passed": 3}, at=5.0))
    store.update_manifest(image_id, lambda m: record_promotion(m, "prod", "ci", 6.0))

    on_disk = json.loads((store.image_dir(image_id) / "manifest.json").read_text())
    assert on_disk["passed_envs"] == ["staging"]
    assert on_disk["promoted_to"] == ["prod"]
    assert on_disk["evidence"][0]["rollout_id"] == "r-9"
    check_promotion(store.get(image_id).manifest, "prod", require_promotion_from="staging",
                    promotion_order=ORDER)
    with pytest.raises(ConfigError, match="may not change the image id"):
        store.update_manifest(image_id, lambda m: {**m, "id": "other"})
