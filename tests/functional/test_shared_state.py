"""Several controllers sharing one PostgreSQL state store, on the real lab.

Two controllers race for the pool. Each is a separate ``rollout`` process whose
only shared state is ``ROLLOUT_STATE_URL``: none of them uses a SQLite
journal. They do share the lab's data directory, because on the lab that
directory IS the infrastructure (the node records and the image store the
lab backend reads, as EC2 and the AMIs are on AWS); a controller with a data
directory of its own would not see the pool or its images at all. The
journal and the leases, which are what the race is about, are only in
PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from rollout.state_url import parse_state_url
from rollout.store.stores import ENV_VAR, open_store
from rollout.testing.lab import LabHandle
from rollout.testing.postgres import PostgresCluster
from tests.functional.rollout_cli import (
    ROLE,
    Loaded,
    Running,
    assert_pool_healthy,
    command,
    events_of,
    next_target,
    phase_reached,
)

pytestmark = pytest.mark.functional


def _run(lab: LabHandle, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(command(lab, *args, "--output", "json"), env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def postgres_display(url: str) -> str:
    return parse_state_url(url).display


def _holder(url: str) -> str | None:
    with closing(open_store(url)) as store:
        lease = store.lease_status(f"lab/{ROLE}")
    return lease.holder if lease is not None else None


def test_two_controllers_race_exactly_one_proceeds(healthy: LabHandle,
                                                   postgres: PostgresCluster) -> None:
    lab = healthy
    url = postgres.create_database(f"race{uuid.uuid4().hex[:8]}")
    env = os.environ | {ENV_VAR: url}
    target = next_target(lab)
    journal = lab.data.journal
    before = journal.stat().st_mtime_ns if journal.exists() else None

    with Loaded(lab) as load:
        first = _run(lab, env, "run", "--role", ROLE, "--version", target)
        deadline = time.monotonic() + 120
        while _holder(url) is None:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first controller never took the lease"
            time.sleep(0.2)
        waiter = _run(lab, env, "run", "--role", ROLE, "--version", target, "--wait-lock")
        started = time.monotonic()
        second = subprocess.run(command(lab, "run", "--role", ROLE, "--version", target),
                                env=env, capture_output=True, text=True, timeout=120)
        refused_in = time.monotonic() - started
        out, err = first.communicate(timeout=900)
        w_out, w_err = waiter.communicate(timeout=300)
    # Exactly one proceeds; the other is refused at once, naming the holder.
    assert second.returncode == 3, second.stderr
    assert "is locked by" in second.stderr and refused_in < 30, (refused_in, second.stderr)
    assert first.returncode == 0, err
    finished = events_of(out)[-1]
    assert finished["event"] == "rollout_finished" and finished["replaced"] > 0
    # The one that waited got the pool afterwards and found nothing to do.
    assert waiter.returncode == 0, w_err
    w_last = events_of(w_out)[-1]
    assert w_last["event"] == "rollout_finished" and w_last["replaced"] == 0
    load.assert_no_failures()
    assert_pool_healthy(lab, target)
    # The rollouts are in PostgreSQL; the lab's SQLite journal was not touched.
    with closing(open_store(url)) as store:
        ids = [r.state.id for r in store.history("lab", ROLE)]
    assert finished["rollout_id"] in ids
    assert (journal.stat().st_mtime_ns if journal.exists() else None) == before
    status = json.loads(subprocess.run(command(lab, "status", "--output", "json"), env=env,
                                       capture_output=True, text=True, check=True).stdout)
    web = next(p for p in status["pools"] if p["role"] == ROLE)
    assert web["lock"] is None and web["state"] == postgres_display(url)


@pytest.fixture
def short_lease(healthy: LabHandle) -> Iterator[LabHandle]:
    """The web pool with a 6 s lease and a 20 s canary soak (to freeze in)."""
    path = healthy.project / "inventories" / "lab" / "group_vars" / "web.yml"
    original = path.read_text()
    path.write_text(original.replace("  soak: 3s\n", "  soak: 20s\n  lease_ttl: 6s\n", 1))
    assert "lease_ttl" in path.read_text()
    try:
        yield healthy
    finally:
        path.write_text(original)


@pytest.mark.parametrize("engine", ["postgresql", "sqlite"])
def test_a_frozen_holder_thaws_fenced_out(short_lease: LabHandle, postgres: PostgresCluster,
                                          tmp_path: Path, engine: str) -> None:
    """A is frozen (SIGSTOP) in the canary's soak past its lease's TTL; B
    resumes and finishes; A thawed (SIGCONT) exits 3 and journals nothing after
    B's first step; the pool converges with 0 failed requests. On PostgreSQL
    a holder frozen inside a transaction would hold its row locks: the server
    ends its idle transaction (idle_in_transaction_session_timeout), so B
    still takes over.

    On SQLite the lease lives in the file A may be frozen in the middle of
    writing; then nobody can write it until A runs again. B must then refuse
    with exit 3, naming A's pid as stopped, and change nothing; A, thawed,
    either stops because its lease ran out (exit 3) or renews it first and
    finishes (nobody else took it, so no write of A is stale); a second
    ``resume`` converges or has nothing to do. Which happens depends on where
    A froze; each case is asserted to be safe."""
    lab = short_lease
    url = (postgres.create_database(f"frz{uuid.uuid4().hex[:8]}") if engine == "postgresql"
           else f"sqlite:///{tmp_path / 'journal.sqlite'}")
    env = os.environ | {ENV_VAR: url}
    target = next_target(lab)
    resume = command(lab, "resume", "--role", ROLE, "--output", "json")
    with Loaded(lab) as load:
        a = Running(lab, "run", "--role", ROLE, "--version", target, env=env)
        started = a.wait_for(lambda e: e.get("event") == "rollout_started")
        a.wait_for(phase_reached(0, "standby"))
        os.kill(a.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(6 + 3)  # past the TTL: the lease expires while A is frozen
            b = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=900)
        finally:
            os.kill(a.proc.pid, signal.SIGCONT)
        a_code = a.finish(timeout=120)
        blocked = engine == "sqlite" and b.returncode == 3
        if blocked:
            assert f"pid {a.proc.pid}" in b.stderr and "STOPPED" in b.stderr, b.stderr
            again = subprocess.run(resume, env=env, capture_output=True, text=True,
                                   timeout=900)
            assert again.returncode == 0, again.stderr
        else:
            assert b.returncode == 0, b.stderr
    load.assert_no_failures()
    assert_pool_healthy(lab, target)
    with closing(open_store(url)) as store:
        steps = store.steps(started["rollout_id"])
    epochs = sorted({s.epoch for s in steps if s.epoch is not None})
    if blocked and a_code == 0:
        assert len(epochs) == 1, epochs  # A renewed in time and finished alone
        return
    # A stops on thawing: fenced out (exit 3), or, when it froze inside a
    # PostgreSQL transaction the server then ended, on a commit whose outcome
    # it cannot know (exit 4, "state store"); either way it acts no more.
    assert a_code in (3, 4), a.stderr
    assert ("lost its lease" if a_code == 3 else "state store") in a.stderr, a.stderr
    assert len(epochs) == 2, epochs
    b_first = min(s.id for s in steps if s.epoch == epochs[-1])
    late = [s for s in steps if s.id > b_first and s.epoch != epochs[-1]]
    assert late == [], late
    # Nor an outcome of the old epoch journaled after the new epoch started acting.
    b_started = next(s.started_at for s in steps if s.id == b_first)
    assert [s for s in steps if s.epoch != epochs[-1] and s.finished_at is not None
            and s.finished_at > b_started] == []


def test_postgresql_restarts_mid_rollout(healthy: LabHandle, postgres: PostgresCluster) -> None:
    """The server restarts while the canary boots: the controller retries
    within its budget and goes on, or halts (exit 4) and ``resume`` converges.
    Either way no node is left half-swapped and no request fails."""
    lab = healthy
    url = postgres.create_database(f"rst{uuid.uuid4().hex[:8]}")
    env = os.environ | {ENV_VAR: url}
    target = next_target(lab)
    with Loaded(lab) as load:
        run = Running(lab, "run", "--role", ROLE, "--version", target, env=env)
        run.wait_for(phase_reached(0, "booting"))
        postgres.restart()
        code = run.finish(timeout=900)
        assert code in (0, 4), run.stderr
        if code == 4:
            assert "state store" in run.stderr, run.stderr
            resume = subprocess.run(command(lab, "resume", "--role", ROLE), env=env,
                                    capture_output=True, text=True, timeout=900)
            assert resume.returncode == 0, resume.stderr
    load.assert_no_failures()
    assert_pool_healthy(lab, target)
    with closing(open_store(url)) as store:
        assert store.unfinished("lab", ROLE) is None
        last = store.history("lab", ROLE, limit=1)[0].state
    assert last.status.value == "succeeded"
