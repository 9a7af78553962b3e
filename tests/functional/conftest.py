"""Fixtures of the functional tests on top of the shared lab (tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout.testing.lab import LabHandle
from tests.functional.leaks import leftovers
from tests.functional.rollout_cli import assert_pool_healthy


@pytest.fixture
def healthy(lab: LabHandle) -> Iterator[LabHandle]:
    """The pool is healthy before the test; and after it, whatever it did."""
    assert_pool_healthy(lab)
    yield lab
    assert_pool_healthy(lab)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """FAILS the session when a node process, nspawn, HAProxy, netns, veth or
    the bridge of this session's lab outlives the tests. Autouse and session
    scoped, so it is set up before the lab and torn down after ``lab down``."""
    yield
    roots = [tmp_path_factory.getbasetemp()]
    if os.environ.get("ROLLOUT_TEST_DATA_DIR"):
        roots.append(Path(os.environ["ROLLOUT_TEST_DATA_DIR"]))
    bridge = os.environ.get("ROLLOUT_LAB_BRIDGE", "rtest0")
    subnet = os.environ.get("ROLLOUT_LAB_SUBNET", "10.231.250.0/24")
    left = leftovers(roots, bridge, subnet)
    assert not left, "the functional session left these behind:\n" + "\n".join(left)
