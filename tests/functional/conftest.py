"""Fixtures of the functional tests on top of the shared lab (tests/conftest.py)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from rollout.inventory import load_environment
from rollout.paths import DataDir
from rollout.testing.lab import LabHandle, lab_skip_reason, make_project, share_base_cache
from tests.functional.rollout_cli import assert_pool_healthy

REPO = Path(__file__).resolve().parents[2]
#: The blue-green lab's pool: small, since blue-green doubles it at the peak.
BG_SIZE = 2


@pytest.fixture
def healthy(lab: LabHandle) -> Iterator[LabHandle]:
    """The pool is healthy before the test; and after it, whatever it did."""
    assert_pool_healthy(lab)
    yield lab
    assert_pool_healthy(lab)


@pytest.fixture(scope="session")
def bg_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """A lab of its own for blue-green (2 web nodes, HAProxy with 8 slots), shared
    by test_blue_green and test_kill_matrix_bluegreen; its knobs are
    ROLLOUT_LAB_BG_BRIDGE, _SUBNET and _PORT."""
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    project = make_project(
        REPO, tmp_path_factory.mktemp("bg-project"),
        bridge=os.environ.get("ROLLOUT_LAB_BG_BRIDGE", "rtbg0"),
        subnet=os.environ.get("ROLLOUT_LAB_BG_SUBNET", "10.231.249.0/24"),
        port=int(os.environ.get("ROLLOUT_LAB_BG_PORT", "18240")),
    )
    web = project / "inventories/lab/group_vars/web.yml"
    data_yaml = yaml.safe_load(web.read_text())
    data_yaml["rollout"].update(pool_size=BG_SIZE, soak="1s")
    web.write_text(yaml.safe_dump(data_yaml))
    base = Path(os.environ.get("ROLLOUT_TEST_DATA_DIR") or tmp_path_factory.mktemp("data"))
    data = DataDir(base / f"bluegreen-{secrets.token_hex(3)}")
    shared = os.environ.get("ROLLOUT_BASE_CACHE")
    share_base_cache(data, Path(shared) if shared else None)
    handle = LabHandle(project, load_environment(project, "lab"), data.ensure())
    try:
        handle.up()
        yield handle
    finally:
        handle.down()
        shutil.rmtree(data.root, ignore_errors=True)
