"""PostgreSQL going away between two writes: the next write reconnects within
the retry budget, or fails with a clear transient error, never half-written."""

from __future__ import annotations

import time

import pytest

from rollout.errors import ExitCode, JournalUnavailable
from rollout.store.stores import open_store
from rollout.testing.postgres import PostgresCluster


def test_a_restart_between_two_writes_is_retried(postgres: PostgresCluster) -> None:
    store = open_store(postgres.create_database("restart_retry"), retry_budget=10.0)
    store.begin_step(None, None, "launch", "web-0", 1.0)
    postgres.restart()  # every connection is cut
    started = time.monotonic()
    store.begin_step(None, None, "launch", "web-1", 2.0)
    assert time.monotonic() - started < 10.0
    assert [s.node for s in store.steps(None)] == ["web-0", "web-1"]


def test_a_server_that_stays_down_is_a_transient_error(postgres: PostgresCluster) -> None:
    store = open_store(postgres.create_database("restart_down"), retry_budget=1.0)
    store.begin_step(None, None, "launch", "web-0", 1.0)
    postgres.stop_server()
    try:
        started = time.monotonic()
        with pytest.raises(JournalUnavailable, match=r"unreachable \(intent launch\).*"
                           r"retried for 1s") as err:
            store.begin_step(None, None, "launch", "web-1", 2.0)
        assert time.monotonic() - started < 5.0
        assert err.value.exit_code is ExitCode.HALTED and "resume" in str(err.value)
    finally:
        postgres.start_server()
    assert [s.node for s in store.steps(None)] == ["web-0"]  # nothing half-written
