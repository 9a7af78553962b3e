"""Schema migrations: field journals of schema 1 and 2 upgrade in place, every
path ends in the same schema, a newer store is refused, and many processes
opening a fresh store at once all succeed (on both engines)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import traceback
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from rollout.errors import JournalUnusable
from rollout.state_url import parse_state_url
from rollout.store import migrate
from rollout.store.journal import Journal
from rollout.store.lease import Lease
from rollout.store.schema import SCHEMA_VERSION
from rollout.store.stores import open_store
from rollout.testing.postgres import PostgresCluster

FIXTURES = Path(__file__).parent / "fixtures"


def _legacy(tmp_path: Path, schema: int) -> Path:
    """A journal as today's hand-rolled migrations left it: three rollouts
    (two started at the same instant), steps, waits, events and a lease."""
    path = tmp_path / f"journal-{schema}.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript((FIXTURES / f"journal-schema-{schema}.sql").read_text())
    return path


def _columns(url: str) -> dict[str, set[str]]:
    engine = create_engine(parse_state_url(url).url)
    with engine.connect() as conn:
        found = inspect(conn)
        tables = {t: {c["name"] for c in found.get_columns(t)} for t in found.get_table_names()}
    engine.dispose()
    return tables


@pytest.mark.parametrize("schema", [1, 2])
def test_a_field_journal_upgrades_in_place_and_keeps_its_rollouts(tmp_path: Path,
                                                                  schema: int) -> None:
    path = _legacy(tmp_path, schema)
    journal = Journal(path)
    assert [r.state.id for r in journal.history()] == ["r00000003", "r00000002", "r00000001"]
    assert journal.unfinished("lab", "web") is not None
    done = journal.get("r00000001")
    assert done.status.value == "succeeded" and all(r.relaunches == 0 for r in done.replacements)
    [step] = journal.steps("r00000001")
    assert (step.kind, step.ok, step.epoch) == ("launch", True, None)
    assert journal.wait_totals("r00000001") == {"boot": 4.0}
    assert [e.kind for e in journal.events("r00000001")] == ["phase_changed"]
    # The old lease row carries on at epoch 0; the next grant fences it out.
    assert journal.leases.current("lab/web") is not None
    journal.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        assert revision == f"{SCHEMA_VERSION:04d}"
    fresh = tmp_path / "fresh.sqlite"
    Journal(fresh).close()
    upgraded, new = _columns(f"sqlite:///{path}"), _columns(f"sqlite:///{fresh}")
    assert upgraded == new


def test_every_revision_upgrades_to_the_fresh_schema_on_postgresql(
        postgres: PostgresCluster) -> None:
    fresh = postgres.create_database("fresh_schema")
    open_store(fresh).close()
    for rev in ("0001", "0002"):
        url = postgres.create_database(f"at_{rev}")
        engine = create_engine(parse_state_url(url).url)
        with engine.begin() as conn:
            cfg = migrate.config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, rev)
        engine.dispose()
        store = open_store(url)
        Lease(store, "lab/web", heartbeat=False).acquire().release()
        store.close()
        assert _columns(url) == _columns(fresh)


def test_a_newer_revision_is_refused(store_url: str) -> None:
    open_store(store_url).close()
    engine = create_engine(parse_state_url(store_url).url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    engine.dispose()
    with pytest.raises(JournalUnusable, match="newer than this rollout") as err:
        open_store(store_url)
    assert "upgrade rollout" in str(err.value)


def _open_rounds(urls: list[str], barrier: Any, errors: Any) -> None:
    for url in urls:
        barrier.wait()
        try:
            open_store(url).close()
        except Exception:
            errors.put(traceback.format_exc(limit=3))


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_six_processes_open_a_fresh_store_at_once(engine: str, tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    """6 processes x 20 rounds, each round a fresh store opened by all six at
    the same instant: no open fails (the hand-rolled migrations lost 50 of 120)."""
    rounds, procs = 20, 6
    if engine == "sqlite":
        urls = [f"sqlite:///{tmp_path / f'j{i}.sqlite'}" for i in range(rounds)]
    else:
        pg: PostgresCluster = request.getfixturevalue("postgres")
        urls = [pg.create_database(f"race_{i}") for i in range(rounds)]
    ctx = multiprocessing.get_context("fork")
    barrier, errors = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=_open_rounds, args=(urls, barrier, errors))
               for _ in range(procs)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert [w.exitcode for w in workers] == [0] * procs
    assert failures == [], f"{len(failures)} of {rounds * procs} opens failed:\n" + \
        "\n".join(failures[:3])
    for url in urls[:3]:
        store = open_store(url)
        assert store.history() == []
        store.close()
