"""The pipeline's environments (inventories/dev, staging, prod) and what the
scripts of scripts/pipeline/ do without a lab: the promotion check against a
real image store, the data directory each environment gets, the refusals, and
how build takes the image id from the events.

The end-to-end run on the lab is tests/functional/test_pipeline.py.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rollout.backends.lab.images import LabImageStore
from rollout.core.promotion import check_promotion, record_pass
from rollout.errors import ConfigError
from rollout.inventory import load_environment
from rollout.paths import DataDir

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "pipeline"
ENVS = ("dev", "staging", "prod")
IMAGE = "web-2.0.0-0badcafe"


# -- the environments --------------------------------------------------------------

def test_the_three_labs_can_be_up_at_once_beside_the_lab_environment() -> None:
    envs = [load_environment(REPO, name) for name in (*ENVS, "lab")]
    bridges = [e.settings.lab.bridge for e in envs]
    ports = [e.pool("web").settings.haproxy.frontend_port for e in envs]  # type: ignore[union-attr]
    nets = [ipaddress.ip_network(e.settings.lab.subnet) for e in envs]
    assert len(set(bridges)) == len(set(ports)) == len(envs)
    assert not [(a, b) for i, a in enumerate(nets) for b in nets[i + 1:] if a.overlaps(b)]


def test_small_pools_gated_in_the_promotion_order() -> None:
    gates = {}
    for name in ENVS:
        env = load_environment(REPO, name)
        assert env.settings.promotion_order == ENVS
        settings = env.pool("web").settings
        assert settings.pool_size == 2
        gates[name] = settings.require_promotion_from
    assert gates == {"dev": None, "staging": "dev", "prod": "staging"}


def test_prod_refuses_an_image_that_passed_only_dev() -> None:
    prod = load_environment(REPO, "prod")
    manifest = {"id": IMAGE, "passed_envs": ["dev"]}
    with pytest.raises(ConfigError, match="passed 'staging'"):
        check_promotion(manifest, "prod", require_promotion_from="staging",
                        promotion_order=prod.settings.promotion_order)


# -- the scripts -------------------------------------------------------------------

def run(script: str, *args: str, data: Path, cwd: Path,
        **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("IMAGE_ID", "ROLLOUT_BASE_CACHE", "PROMOTED_BY")}
    environ |= {"ROLLOUT_DATA_DIR": str(data), "ROLLOUT_PROJECT": str(REPO), **env}
    return subprocess.run([str(SCRIPTS / script), *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def store(tmp_path: Path) -> LabImageStore:
    """The shared image store under DATA, holding one image that passed nothing."""
    images = LabImageStore(DataDir(tmp_path / "data").ensure())
    (images.image_dir(IMAGE) / "rootfs").mkdir(parents=True)
    images.register(IMAGE, {"id": IMAGE, "role": "web", "version": "2.0.0",
                            "created_at_epoch": 1.0})
    return images


def test_promote_refuses_an_image_that_has_not_passed_the_environment_before(
        store: LabImageStore, tmp_path: Path) -> None:
    done = run("promote", "staging", data=tmp_path / "data", cwd=tmp_path, IMAGE_ID=IMAGE)
    assert done.returncode == 2, done.stderr
    assert f"image {IMAGE} has not passed dev (passed: none)" in done.stderr
    assert store.get(IMAGE).manifest.get("promoted_to", []) == []


def test_promote_records_the_promotion_once_the_image_passed(
        store: LabImageStore, tmp_path: Path) -> None:
    store.update_manifest(IMAGE, lambda m: record_pass(m, "dev", "r-1", [], "ok", at=1.0))
    (tmp_path / "image-id").write_text(IMAGE + "\n")  # as build leaves it
    done = run("promote", "staging", data=tmp_path / "data", cwd=tmp_path, PROMOTED_BY="ci")
    assert done.returncode == 0, done.stderr
    manifest = store.get(IMAGE).manifest
    assert manifest["promoted_to"] == ["staging"]
    assert [(p["env"], p["by"]) for p in manifest["promotions"]] == [("staging", "ci")]
    # staging's data directory shares the image store and the base cache
    env_dir = tmp_path / "data" / "envs" / "staging"
    assert (env_dir / "images").resolve() == (tmp_path / "data" / "images").resolve()
    assert (env_dir / "base").resolve() == (tmp_path / "data" / "base").resolve()
    # prod still refuses: the image passed dev, not staging
    done = run("promote", "prod", data=tmp_path / "data", cwd=tmp_path)
    assert done.returncode == 2
    assert "has not passed staging (passed: dev)" in done.stderr


@pytest.mark.parametrize(("script", "args", "message"), [
    ("deploy", [], "usage: scripts/pipeline/deploy ENV"),
    ("deploy", ["qa"], "unknown environment 'qa'"),
    ("deploy", ["dev"], "no image: set IMAGE_ID or run scripts/pipeline/build first"),
    ("promote", ["dev"], "dev is the first environment"),
    ("promote", ["staging"], "no image"),
    ("run-local.sh", ["--yes"], "usage: scripts/pipeline/run-local.sh"),
])
def test_refusals_exit_2_and_say_why(tmp_path: Path, script: str, args: list[str],
                                     message: str) -> None:
    done = run(script, *args, data=tmp_path / "data", cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "reports").exists()


def test_an_environment_directory_that_is_not_a_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data" / "envs" / "dev" / "images").mkdir(parents=True)
    done = run("deploy", "dev", data=tmp_path / "data", cwd=tmp_path, IMAGE_ID=IMAGE)
    assert done.returncode == 2
    assert "expected a link to" in done.stderr


FAKE_ROLLOUT = """#!/bin/sh
# Stands in for `rollout ... build --output json`: the events of a bake.
echo '{"event": "message", "text": "baking"}'
echo '{"event": "image_registered", "id": "web-1-aaaa", "role": "web"}'
echo '{"event": "image_registered", "id": "web-1-bbbb", "role": "web"}'
"""


@pytest.mark.parametrize(("events", "code", "image"), [(True, 0, "web-1-bbbb"), (False, 1, None)])
def test_build_takes_the_last_registered_image(tmp_path: Path, events: bool, code: int,
                                               image: str | None) -> None:
    fake = tmp_path / "rollout"
    fake.write_text(FAKE_ROLLOUT if events else "#!/bin/sh\necho '{\"event\": \"message\"}'\n")
    fake.chmod(0o755)
    done = run("build", data=tmp_path / "data", cwd=tmp_path, ROLLOUT_BIN=str(fake),
               PYTHON_BIN=sys.executable)
    assert done.returncode == code, done.stderr
    assert done.stdout.strip() == (image or "")
    assert (tmp_path / "build.jsonl").exists()
    if image:
        assert (tmp_path / "image-id").read_text().strip() == image
    else:
        assert "no image_registered event" in done.stderr
        assert not (tmp_path / "image-id").exists()
    json.loads((tmp_path / "build.jsonl").read_text().splitlines()[0])


RECORDING_ROLLOUT = """#!/bin/sh
# Stands in for rollout: notes `ENV COMMAND...` (after --project P --data-dir D
# --env ENV) in $CALLS and answers build and images as the real one would.
shift 4
env="$2"
shift 2
echo "$env $*" >> "$CALLS"
case "$1" in
    build) echo '{"event": "image_registered", "id": "web-1-cafe", "role": "web"}' ;;
    images) echo '[{"id": "web-1-cafe", "passed_envs": ["dev", "prod", "staging"]}]' ;;
esac
"""

TO_STAGING = ["dev lab up", "staging lab up", "prod lab up",
              "dev build --role web --version 1 --output json",
              "dev run --role web --image web-1-cafe --junit reports/dev/smoke.xml --output json",
              "staging images --role web --output json",
              "staging promote web-1-cafe --to staging",
              "staging run --role web --image web-1-cafe --junit reports/staging/smoke.xml "
              "--output json"]


@pytest.mark.parametrize(("args", "calls", "said"), [
    ([], TO_STAGING, "stopping before prod: web-1-cafe passed staging"),
    (["--approve"], [*TO_STAGING, "prod images --role web --output json",
                     "prod promote web-1-cafe --to prod",
                     "prod run --role web --image web-1-cafe --junit reports/prod/smoke.xml "
                     "--output json"], "web-1-cafe is in dev, staging and prod"),
    (["--down"], ["dev lab down", "staging lab down", "prod lab down"], "lab down prod"),
])
def test_run_local_runs_the_stages_in_order_and_prod_only_when_approved(
        tmp_path: Path, args: list[str], calls: list[str], said: str) -> None:
    fake = tmp_path / "rollout"
    fake.write_text(RECORDING_ROLLOUT)
    fake.chmod(0o755)
    done = run("run-local.sh", *args, data=tmp_path / "data", cwd=tmp_path,
               ROLLOUT_BIN=str(fake), PYTHON_BIN=sys.executable, CALLS=str(tmp_path / "calls"),
               VERSION="1")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "calls").read_text().splitlines() == calls
    assert said in done.stderr
