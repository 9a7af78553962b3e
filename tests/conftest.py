"""Shared fixtures for the REAL lab (functional and lab contract tests): nspawn nodes,
a bridge, HAProxy, Ansible bakes.

``lab`` (session scope) brings up a lab of the ``lab`` environment in a
throwaway copy of the project with its own data directory, and tears it down
at the end. It skips, with the reason, when not root or a program is missing.

Knobs (environment variables), so parallel runs and CI don't collide:

| variable               | default            | meaning                                   |
|------------------------|--------------------|-------------------------------------------|
| ROLLOUT_LAB_BRIDGE     | rtest0             | bridge name (at most 12 characters)       |
| ROLLOUT_LAB_SUBNET     | 10.231.250.0/24    | the lab subnet                            |
| ROLLOUT_LAB_PORT       | 18250              | the web pool's HAProxy frontend port      |
| ROLLOUT_TEST_DATA_DIR  | a pytest temp dir  | the data directory (images are cached there) |
| ROLLOUT_BASE_CACHE     | unset              | a directory holding a prebuilt base (shared) |

``postgres`` (session scope) is a throwaway PostgreSQL cluster on a unix socket
(:mod:`rollout.testing.postgres`), skipped with the reason when the server
binaries are absent; ``store_url`` gives each test a fresh store on SQLite and,
as a second parameter, on a new PostgreSQL database of that cluster.

Node names change when a test restarts the lab: ask ``lab.status()`` rather
than keeping names from an earlier test.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout.inventory import load_environment
from rollout.paths import DataDir
from rollout.testing.lab import LabHandle, lab_skip_reason, make_project, share_base_cache
from rollout.testing.postgres import PostgresCluster, skip_reason
from tests.functional.leaks import leftovers

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for the session, stopped and removed after it."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with PostgresCluster.start() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a fresh, empty state store, on each engine in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'journal.sqlite'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database(f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def lab_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(
        REPO,
        tmp_path_factory.mktemp("project"),
        bridge=os.environ.get("ROLLOUT_LAB_BRIDGE", "rtest0"),
        subnet=os.environ.get("ROLLOUT_LAB_SUBNET", "10.231.250.0/24"),
        port=int(os.environ.get("ROLLOUT_LAB_PORT", "18250")),
    )


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """FAILS the session when a node process, nspawn, HAProxy, netns, veth or
    the bridge of this session's lab outlives the tests. Session scoped, and
    ``lab_data`` asks for it, so it is set up before any lab (the contract
    tests start the lab before the functional ones) and torn down after
    ``lab down``."""
    yield
    roots = [tmp_path_factory.getbasetemp()]
    if os.environ.get("ROLLOUT_TEST_DATA_DIR"):
        roots.append(Path(os.environ["ROLLOUT_TEST_DATA_DIR"]))
    bridge = os.environ.get("ROLLOUT_LAB_BRIDGE", "rtest0")
    subnet = os.environ.get("ROLLOUT_LAB_SUBNET", "10.231.250.0/24")
    left = leftovers(roots, bridge, subnet)
    assert not left, "the functional session left these behind:\n" + "\n".join(left)


@pytest.fixture(scope="session")
def lab_data(tmp_path_factory: pytest.TempPathFactory, nothing_left_behind: None) -> DataDir:
    root = Path(os.environ.get("ROLLOUT_TEST_DATA_DIR") or tmp_path_factory.mktemp("data"))
    root.mkdir(parents=True, exist_ok=True)
    shared = os.environ.get("ROLLOUT_BASE_CACHE")
    share_base_cache(DataDir(root), Path(shared) if shared else None)
    return DataDir(root).ensure()


@pytest.fixture(scope="session")
def lab(lab_project: Path, lab_data: DataDir) -> Iterator[LabHandle]:
    """A lab brought up cold (4 web nodes), torn down after the session."""
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    handle = LabHandle(lab_project, load_environment(lab_project, "lab"), lab_data)
    started = time.monotonic()
    try:
        handle.up()
        handle.up_seconds = time.monotonic() - started
        yield handle
    finally:
        handle.down()
