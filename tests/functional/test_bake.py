"""Real bakes: Ansible over SSH into a booted nspawn builder, the smoke gate, sealing.

Uses the shared ``lab_project`` / ``lab_data`` fixtures (so the base cache of
ROLLOUT_BASE_CACHE and the lab's bridge and subnet are shared with the other
functional tests) but not a running lab: a bake needs no HAProxy. Each test
checks what a bake leaves behind: registered images, builder nodes, network
namespaces, build directories.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout.backends.lab import network
from rollout.backends.lab.builder import bake_on_lab
from rollout.backends.lab.images import LabImageStore
from rollout.backends.lab.nodes import LabContext, list_nodes
from rollout.config import Environment
from rollout.errors import BakeError, NotFoundError
from rollout.inventory import load_environment
from rollout.model import Image
from rollout.paths import DataDir
from rollout.testing.lab import lab_skip_reason
from tests.functional.rollout_cli import lab_netns

pytestmark = pytest.mark.functional

MANIFEST_KEYS = {
    "id", "role", "version", "parent", "base", "role_checksum", "roles_commit",
    "created_at", "created_at_epoch", "bake_seconds", "ansible", "smoke", "verified",
    "extra_vars", "promotions", "evidence", "schema",
}


@pytest.fixture(scope="module")
def bake_env(lab_project: Path, lab_data: DataDir) -> Iterator[Environment]:
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    env = load_environment(lab_project, "lab")
    bridge = Path("/sys/class/net", env.settings.lab.bridge)
    had_bridge = bridge.exists()
    store = LabImageStore(lab_data)
    before = {image.id for image in store.list()}
    yield env
    # Images are a few hundred MB each: delete the ones this module baked.
    for image in store.list():
        if image.id not in before:
            store.delete(image.id)
    # Leave the network as we found it when no lab uses it.
    if not had_bridge and not list_nodes(LabContext(lab_data, env.settings.lab)):
        network.remove_network(env.settings.lab)


@pytest.fixture(scope="module")
def baked(lab_project: Path, bake_env: Environment, lab_data: DataDir) -> Image:
    return bake_on_lab(lab_project, bake_env, lab_data, "web", "2.0.0")


def _builders(data: DataDir, env: Environment) -> list[str]:
    lab = LabContext(data, env.settings.lab)
    return [rec.name for rec in list_nodes(lab) if rec.name.startswith("bake-")]


# Builders' namespaces that existed before this module ran belong to other labs.
_NETNS_BEFORE = frozenset(lab_netns(Path("/nonexistent")))


def _builder_netns(data: DataDir) -> list[str]:
    return sorted(n for n in lab_netns(data.root, _NETNS_BEFORE) if n.startswith("bake-"))


def _leftovers(data: DataDir, env: Environment) -> dict[str, list[str]]:
    build = data.images / ".build"
    return {
        "builders": _builders(data, env),
        "netns": _builder_netns(data),
        "build dirs": sorted(p.name for p in build.iterdir()) if build.is_dir() else [],
        "unregistered": sorted(
            p.name for p in data.images.iterdir()
            if p.is_dir() and not p.name.startswith(".") and not (p / "manifest.json").exists()
        ),
    }


NOTHING_LEFT: dict[str, list[str]] = {
    "builders": [], "netns": [], "build dirs": [], "unregistered": [],
}


def test_bake_registers_a_sealed_image(baked: Image, lab_data: DataDir,
                                       bake_env: Environment) -> None:
    store = LabImageStore(lab_data)
    assert baked.id in [image.id for image in store.list("web")]
    assert store.by_version("web", "2.0.0").id == baked.id
    manifest = json.loads((store.image_dir(baked.id) / "manifest.json").read_text())
    assert set(manifest) >= MANIFEST_KEYS
    assert manifest["verified"] is True and manifest["smoke"]["passed"] is True
    assert Path(manifest["smoke"]["junit"]).is_file()
    assert manifest["ansible"]["stats"]["failures"] == {}
    assert len(manifest["role_checksum"]) == 64

    rootfs = Path(baked.location)
    assert (rootfs / "etc/machine-id").read_text() == ""
    assert not (rootfs / "etc/hostname").exists()
    assert list((rootfs / "etc/ssh").glob("ssh_host_*")) == []
    journal = rootfs / "var/log/journal"
    assert not journal.exists() or list(journal.iterdir()) == []
    assert json.loads((rootfs / "etc/rollout/image.json").read_text()) == {
        "id": baked.id, "role": "web", "version": "2.0.0"}
    assert (rootfs / "etc/systemd/system/multi-user.target.wants/nginx.service").is_symlink()
    assert _leftovers(lab_data, bake_env) == NOTHING_LEFT


def test_incremental_bake_from_a_parent(baked: Image, lab_project: Path,
                                        bake_env: Environment, lab_data: DataDir) -> None:
    child = bake_on_lab(lab_project, bake_env, lab_data, "web", "2.0.1", parent=baked)
    assert child.parent == baked.id
    # The smoke gate passed, so the builder served 2.0.1 although it booted
    # with 2.0.0's nginx running: the role reloads before it checks.
    assert child.verified
    site = Path(child.location, "etc/nginx/sites-available/rollout.conf").read_text()
    assert "version=2.0.1" in site
    assert _leftovers(lab_data, bake_env) == NOTHING_LEFT


def test_smoke_failure_registers_nothing(lab_project: Path, bake_env: Environment,
                                         lab_data: DataDir) -> None:
    before = {image.id for image in LabImageStore(lab_data).list()}
    with pytest.raises(BakeError) as exc:
        bake_on_lab(lab_project, bake_env, lab_data, "web", "2.9.0",
             extra_vars={"web_healthz_status": "500"})
    message = str(exc.value)
    assert "smoke gate failed" in message
    assert "/healthz" in message and "500" in message
    assert {image.id for image in LabImageStore(lab_data).list()} == before
    assert _leftovers(lab_data, bake_env) == NOTHING_LEFT


def test_no_smoke_registers_an_unverified_image(lab_project: Path, bake_env: Environment,
                                                lab_data: DataDir) -> None:
    image = bake_on_lab(lab_project, bake_env, lab_data, "web", "2.9.1",
                 extra_vars={"web_healthz_status": "500"}, smoke=False)
    assert image.verified is False
    assert image.manifest["smoke"] == {"skipped": True}
    assert image.manifest["extra_vars"] == {"names": ["web_healthz_status"]}
    site = Path(image.location, "etc/nginx/sites-available/rollout.conf").read_text()
    assert "return 500" in site
    assert _leftovers(lab_data, bake_env) == NOTHING_LEFT


def test_failing_task_is_named(lab_project: Path, bake_env: Environment,
                               lab_data: DataDir) -> None:
    before = {image.id for image in LabImageStore(lab_data).list()}
    with pytest.raises(BakeError) as exc:
        bake_on_lab(lab_project, bake_env, lab_data, "web", "2.9.2",
             extra_vars={"web_fail_bake": "true"})
    message = str(exc.value)
    assert "'Fail on purpose (web_fail_bake is true)' failed" in message
    assert "this bake was asked to fail" in message  # the host's output
    assert {image.id for image in LabImageStore(lab_data).list()} == before
    assert _leftovers(lab_data, bake_env) == NOTHING_LEFT


def test_unknown_role_touches_nothing(lab_project: Path, bake_env: Environment,
                                      tmp_path: Path) -> None:
    data = DataDir(tmp_path / "untouched")
    with pytest.raises(NotFoundError, match=r"unknown role 'nope' \(roles: web\)"):
        bake_on_lab(lab_project, bake_env, data, "nope", "1.0.0")
    assert not data.root.exists()


_CHILD = """
import sys
from pathlib import Path
from rollout.backends.lab.builder import bake_on_lab
from rollout.inventory import load_environment
from rollout.paths import DataDir
project, data = Path(sys.argv[1]), DataDir(Path(sys.argv[2]))
bake_on_lab(project, load_environment(project, "lab"), data, "web", "2.9.3",
     on_event=lambda m: print(m, flush=True))
"""


def test_ctrl_c_leaves_no_builder(lab_project: Path, bake_env: Environment,
                                  lab_data: DataDir) -> None:
    before = {image.id for image in LabImageStore(lab_data).list()}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(lab_project), str(lab_data.root)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:  # interrupt in the middle of the Ansible play
        seen.append(line)
        if line.startswith("task: ") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    output = "".join(seen) + rest
    assert proc.returncode != 0, output
    assert "interrupted" in output and "nothing registered" in output
    assert {image.id for image in LabImageStore(lab_data).list()} == before
    assert _leftovers(lab_data, bake_env) == NOTHING_LEFT
