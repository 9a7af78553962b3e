"""The lab image store: ids, registration, lookups and damaged manifests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from rollout.backends.lab.images import MANIFEST, LabImageStore
from rollout.bake.manifest import new_image_id, role_checksum
from rollout.errors import ConfigError, NotFoundError
from rollout.fsio import write_json_atomic
from rollout.paths import DataDir
from rollout.protocols import ImageStore
from tests.inputs.corpus import REPO, run_cli


def _register(store: LabImageStore, role: str, version: str, at: float, **extra: Any) -> str:
    image_id = new_image_id(role, version)
    rootfs = store.image_dir(image_id) / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    store.register(image_id, {
        "id": image_id, "role": role, "version": version, "created_at_epoch": at,
        "created_at": "2024-01-01T00:00:00Z", **extra,
    })
    return image_id


@pytest.fixture
def store(tmp_path: Path) -> LabImageStore:
    return LabImageStore(DataDir(tmp_path))


def test_image_id_names_role_and_version_and_is_unique() -> None:
    ids = {new_image_id("web", "2.0.0") for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"web-2\.0\.0-[0-9a-f]{8}", i) for i in ids)


@pytest.mark.parametrize(("role", "version"), [("Web", "1"), ("web", "1 0"), ("web", ";x")])
def test_image_id_refuses_bad_names(role: str, version: str) -> None:
    with pytest.raises(ConfigError):
        new_image_id(role, version)


def test_store_implements_the_protocol(store: LabImageStore) -> None:
    assert isinstance(store, ImageStore)


def test_manifest_round_trip(store: LabImageStore) -> None:
    image_id = _register(
        store, "web", "2.0.0", 100.0, parent=None, verified=False,
        smoke={"skipped": True}, extra_vars={"web_healthz_status": "500"},
        future_field={"kept": True},
    )
    image = store.get(image_id)
    assert (image.id, image.role, image.version, image.created_at) == (
        image_id, "web", "2.0.0", 100.0)
    assert image.location == str(store.image_dir(image_id) / "rootfs")
    assert image.verified is False
    assert image.parent is None
    assert image.manifest["extra_vars"] == {"web_healthz_status": "500"}
    assert image.manifest["future_field"] == {"kept": True}  # the schema is open
    assert image.manifest["promotions"] == [] and image.manifest["evidence"] == []


def test_lookups_by_role_version_and_age(store: LabImageStore) -> None:
    first = _register(store, "web", "1.0.0", 10.0)
    rebake_old = _register(store, "web", "2.0.0", 20.0)
    other = _register(store, "api", "1.0.0", 25.0)
    rebake_new = _register(store, "web", "2.0.0", 30.0, parent=first)

    assert [i.id for i in store.list()] == [first, rebake_old, other, rebake_new]
    assert [i.id for i in store.list("web")] == [first, rebake_old, rebake_new]
    assert store.latest("web").id == rebake_new
    assert store.oldest("web").id == first
    assert store.by_version("web", "2.0.0").id == rebake_new  # newest of the version
    assert store.by_version("web", "1.0.0").id == first
    assert store.get(rebake_new).parent == first


def test_unknown_things_raise_not_found_naming_them(store: LabImageStore) -> None:
    _register(store, "web", "1.0.0", 10.0)
    with pytest.raises(NotFoundError, match=r"no image 'web-9-deadbeef'"):
        store.get("web-9-deadbeef")
    with pytest.raises(NotFoundError, match=r"version '9\.9'.*versions: 1\.0\.0") as exc:
        store.by_version("web", "9.9")
    assert "rollout build --role web --version 9.9" in str(exc.value)
    with pytest.raises(NotFoundError, match=r"no image of role 'api'.*roles with images: web"):
        store.latest("api")
    with pytest.raises(NotFoundError):
        store.oldest("api")


def test_bad_ids_are_refused_before_touching_paths(store: LabImageStore) -> None:
    with pytest.raises(ConfigError):
        store.get("../etc")


def test_truncated_manifest(store: LabImageStore) -> None:
    good = _register(store, "web", "1.0.0", 10.0)
    broken = _register(store, "web", "2.0.0", 20.0)
    path = store.image_dir(broken) / MANIFEST
    path.write_text(path.read_text()[:40])

    with pytest.raises(ConfigError, match=re.escape(str(path))):
        store.get(broken)
    reported: list[ConfigError] = []
    listing = LabImageStore(DataDir(store.root.parent), on_problem=reported.append).list("web")
    assert [i.id for i in listing] == [good]
    assert len(reported) == 1 and str(path) in str(reported[0])
    assert store.latest("web").id == good


def test_manifest_missing_fields_or_moved(store: LabImageStore) -> None:
    image_id = _register(store, "web", "1.0.0", 10.0)
    path = store.image_dir(image_id) / MANIFEST
    data = json.loads(path.read_text())
    del data["created_at_epoch"]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="created_at_epoch"):
        store.get(image_id)

    moved = store.root / "web-1.0.0-00000000"
    store.image_dir(image_id).rename(moved)
    (moved / MANIFEST).write_text(json.dumps({**data, "created_at_epoch": 1}))
    with pytest.raises(ConfigError, match="does not match its directory"):
        store.get(moved.name)


def test_only_directories_with_a_manifest_are_images(store: LabImageStore) -> None:
    (store.root / ".build" / "web-1.0.0-aaaaaaaa" / "rootfs").mkdir(parents=True)
    (store.root / "web-1.0.0-bbbbbbbb" / "rootfs").mkdir(parents=True)  # interrupted bake
    assert store.list() == []
    with pytest.raises(NotFoundError):
        store.get("web-1.0.0-bbbbbbbb")
    assert [p.name for p in store.leftovers()] == ["web-1.0.0-aaaaaaaa", "web-1.0.0-bbbbbbbb"]


def test_register_needs_the_rootfs_in_place(store: LabImageStore) -> None:
    image_id = new_image_id("web", "1.0.0")
    with pytest.raises(ConfigError, match="no rootfs"):
        store.register(image_id, {"id": image_id, "role": "web", "version": "1.0.0",
                                  "created_at_epoch": 1.0})
    assert not (store.image_dir(image_id) / MANIFEST).exists()


def test_append_evidence_and_delete(store: LabImageStore) -> None:
    image_id = _register(store, "web", "1.0.0", 10.0)
    store.append(image_id, "promotions", {"env": "staging", "at": 12.0})
    image = store.append(image_id, "promotions", {"env": "prod", "at": 13.0})
    assert [p["env"] for p in image.manifest["promotions"]] == ["staging", "prod"]
    with pytest.raises(ConfigError):
        store.append(image_id, "id", {})
    store.delete(image_id)
    store.delete(image_id)  # idempotent
    assert store.list() == []
    assert not store.image_dir(image_id).exists()


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / MANIFEST
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST]


def _project(tmp_path: Path) -> Path:
    for rel, text in {
        "roles/web/tasks/main.yml": "- name: a\n",
        "roles/web/templates/site.j2": "x\n",
        "roles/base/tasks/main.yml": "- name: b\n",
        "roles/api/tasks/main.yml": "- name: c\n",
        "playbooks/bake.yml": "- hosts: builder\n",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_role_checksum_covers_role_base_and_playbook(tmp_path: Path) -> None:
    project = _project(tmp_path)
    first = role_checksum(project, "web")
    assert first == role_checksum(project, "web")
    assert len(first) == 64

    (project / "roles/api/tasks/main.yml").write_text("other role\n")
    assert role_checksum(project, "web") == first  # other roles do not count

    for rel in ("roles/web/templates/site.j2", "roles/base/tasks/main.yml",
                "playbooks/bake.yml"):
        before = role_checksum(project, "web")
        (project / rel).write_text((project / rel).read_text() + "# changed\n")
        assert role_checksum(project, "web") != before, rel

    before = role_checksum(project, "web")
    (project / "roles/web/templates/site.j2").rename(project / "roles/web/templates/s2.j2")
    assert role_checksum(project, "web") != before  # a rename changes the role


def _nested_too_deep(store: LabImageStore, image_id: str) -> Path:
    """A manifest.json nested far deeper than the JSON parser's recursion allows."""
    path = store.image_dir(image_id) / MANIFEST
    (path.parent / "rootfs").mkdir(parents=True)
    path.write_text('{"id": "x", "evidence": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return path


def test_a_deeply_nested_manifest_is_skipped_with_a_warning_naming_it(
        store: LabImageStore) -> None:
    good = _register(store, "web", "2.0.0", 10.0)
    path = _nested_too_deep(store, "web-2.0.0-0dee9000")
    reported: list[ConfigError] = []
    listing = LabImageStore(DataDir(store.root.parent), on_problem=reported.append)
    assert [i.id for i in listing.list("web")] == [good]
    assert listing.latest("web").id == good
    assert {str(p) for p in reported} == {
        f"{path}: image manifest is nested too deeply to read\n"
        f"  hint: remove {path.parent} (the image is unusable) or restore the file"}
    with pytest.raises(ConfigError, match="nested too deeply"):
        store.get("web-2.0.0-0dee9000")


def test_images_and_run_do_not_crash_on_a_deeply_nested_manifest(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:

    data = DataDir(tmp_path / "data")
    store = LabImageStore(data)
    good = _register(store, "web", "2.0.0", 10.0)
    path = _nested_too_deep(store, "web-2.0.0-0dee9000")

    listed = run_cli(["--project", str(REPO), "images", "--output", "json"], data.root)
    assert listed.code == 0, listed.output
    assert good in listed.output
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(w.startswith(f"{path}: image manifest is nested too deeply") for w in warnings)
    picked = run_cli(["--project", str(REPO), "run", "--role", "web", "--image",
                      "web-2.0.0-0dee9000"], data.root)
    assert picked.code == 2, picked.output
    assert f"{path}: image manifest is nested too deeply" in picked.output
    assert "internal error" not in listed.output + picked.output
