"""Bring a state store to the newest schema with Alembic, safely against
concurrent first opens.

Every open takes the migration lock (see :meth:`Database.migration_lock`),
then reads the store's revision inside one transaction and upgrades it there
if needed, so of six processes opening a fresh store at once one creates the
tables and the others find them. A journal from before the Alembic migrations
(``schema_version`` 1 or 2, no ``alembic_version``) is stamped with the
matching revision and upgraded in place. A store newer than this rollout
(an unknown revision, or a higher ``schema_version``) is refused.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, inspect, select

from rollout.errors import JournalUnusable
from rollout.store.database import Database
from rollout.store.schema import SCHEMA_VERSION, metadata, schema_version

#: The Alembic revision that matches each pre-Alembic ``schema_version``.
LEGACY_REVISIONS = {1: "0001", 2: "0002"}

_SCRIPTS = Path(__file__).resolve().parent / "migrations"


def config() -> Config:
    """Alembic's configuration, built in code: no alembic.ini at run time."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    return cfg


@functools.cache
def scripts() -> ScriptDirectory:
    """The revisions, read once per process."""
    return ScriptDirectory.from_config(config())


def upgrade(db: Database) -> None:
    """Upgrade ``db`` to the newest revision (a no-op when it is there).

    A new, empty store gets the newest schema straight from
    :mod:`rollout.store.schema` and is stamped with the head revision (Alembic's
    recipe for a database built from scratch); the migrations only ever run
    on a store that has data in an older schema."""
    script = scripts()
    head = script.get_current_head()
    with db.migration_lock() as conn, conn.begin():
        current = _current(db, conn, script)
        if current == head:
            return
        legacy = _legacy_version(conn)
        context = MigrationContext.configure(conn)
        if current is None and not legacy and _empty(conn):
            metadata.create_all(conn)
            conn.execute(schema_version.delete())
            conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
            context.stamp(script, "head")
            return
        if current is None and legacy not in LEGACY_REVISIONS:
            raise JournalUnusable(
                f"{db.where}: journal schema {legacy} has no Alembic revision",
                hint="the store was written by an unreleased rollout; move it aside",
            )
        if current is None and legacy:
            # A journal of the hand-rolled migrations: adopt it as it is.
            context.stamp(script, LEGACY_REVISIONS[legacy])
        cfg = config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def check_current(db: Database) -> None:
    """For a read-only open: refuse a store that is not at the newest revision
    (upgrading it is a write; any other rollout command does it)."""
    script = scripts()
    # No migration lock: taking it creates a lock file. A reader racing a
    # first open sees no revision yet and is told so.
    current = db.transact("read schema", lambda conn: _current(db, conn, script), write=False)
    if current != script.get_current_head():
        raise JournalUnusable(
            f"{db.where}: the journal is at schema {current or 'none'}, not the newest "
            f"({script.get_current_head()}); a read-only view cannot upgrade it",
            hint="run any writing command once (e.g. `rollout status` with this version), "
            "then open the view again",
        )


def _empty(conn: Connection) -> bool:
    return set(inspect(conn).get_table_names()) <= {"schema_version"}


def _current(db: Database, conn: Connection, script: ScriptDirectory) -> str | None:
    """The store's revision (None if it has none yet), after refusing a newer one."""
    legacy = _legacy_version(conn)
    heads = MigrationContext.configure(conn).get_current_heads()
    newer = legacy is not None and legacy > SCHEMA_VERSION
    for rev in heads:
        try:
            script.get_revision(rev)
        except CommandError:
            newer = True
    if newer:
        raise JournalUnusable(
            f"{db.where}: journal schema {legacy if legacy is not None else heads} is newer "
            f"than this rollout understands ({SCHEMA_VERSION})", hint="upgrade rollout",
        )
    if len(heads) > 1:
        raise JournalUnusable(f"{db.where}: the journal has several schema heads {heads}",
                              hint="the store was migrated by diverging versions of rollout")
    return heads[0] if heads else None


def _legacy_version(conn: Connection) -> int | None:
    """``schema_version``'s number; 0 if the table is empty, None if absent."""
    if not inspect(conn).has_table("schema_version"):
        return None
    row = conn.execute(select(schema_version.c.version)).first()
    return int(row[0]) if row else 0
