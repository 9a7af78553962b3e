"""PostgreSQL: a controller frozen inside a transaction (its row locks held)
does not block the others forever: the server ends a session idle in a
transaction, so another controller takes the expired lease."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from rollout.store import database
from rollout.store.lease import Lease
from rollout.store.stores import open_store
from rollout.testing.postgres import PostgresCluster


def test_a_holder_frozen_in_a_transaction_does_not_block_a_takeover(
        postgres: PostgresCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "IDLE_IN_TRANSACTION_TIMEOUT_MS", 1000)
    url = postgres.create_database("frozentx")
    a_store, b_store = open_store(url), open_store(url)
    try:
        a = Lease(a_store, "lab/web", ttl=1.0, heartbeat=False, host="host-a", pid=1).acquire()
        # A "freezes" half-way through a write: its transaction holds the
        # lease row's lock and sends nothing more.
        conn = a_store._db.engine.connect()
        frozen = conn.begin()
        conn.execute(text("UPDATE leases SET epoch = epoch WHERE key = 'lab/web'"))
        time.sleep(1.2)  # past A's TTL
        started = time.monotonic()
        b = Lease(b_store, "lab/web", ttl=5.0, heartbeat=False, host="host-b", pid=2).acquire()
        waited = time.monotonic() - started
        assert b.epoch > a.epoch
        assert waited < 8.0, waited  # the server ended A's idle transaction
        with pytest.raises(Exception):  # noqa: B017 - the server closed A's session
            frozen.commit()
        conn.close()
    finally:
        a_store.close()
        b_store.close()
