"""The state store's tables (the newest schema), one definition for SQLite and
PostgreSQL. The migrations under :mod:`rollout.store.migrations` build it;
this module is what the queries are written against.

| table          | one row per                                                |
|----------------|------------------------------------------------------------|
| rollouts       | rollout: target, settings, status, the core's state blob   |
| replacements   | old node -> new node of a rollout, with its phase          |
| steps          | side effect: the intent, then the outcome; the lease epoch |
| waits          | irreducible wait (boot, smoke, lb_rise, drain, soak)       |
| events         | progress event (and operator actions such as force unlock) |
| leases         | pool key (ENV/ROLE): holder, epoch, expiry                 |
| operator_requests | request to a running rollout (pause, continue): who, when, |
|                | and when its controller consumed it                        |
| schema_version | one row: the schema number, so older rollouts refuse it    |
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
)

#: The schema number written to ``schema_version`` (journals of schema 1 and 2
#: predate the Alembic migrations; each migration bumps it).
SCHEMA_VERSION = 5

metadata = MetaData()

rollouts = Table(
    "rollouts", metadata,
    Column("id", Text, primary_key=True),
    Column("env", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("target_image_id", Text, nullable=False),
    Column("target_version", Text, nullable=False),
    Column("target_json", Text, nullable=False),
    Column("previous_images", Text, nullable=False),
    Column("strategy", Text, nullable=False),
    Column("settings_json", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("pid", Integer),
    Column("host", Text),
    Column("started_at", Double, nullable=False),
    Column("finished_at", Double),
    Column("state_json", Text, nullable=False),
    # Creation order, to order rollouts that started at the same instant.
    Column("seq", Integer),
    Index("rollouts_pool", "env", "role", "started_at"),
)

replacements = Table(
    "replacements", metadata,
    Column("rollout_id", Text, ForeignKey("rollouts.id"), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("batch", Integer, nullable=False),
    Column("old_name", Text, nullable=False),
    Column("old_target", Text, nullable=False),
    Column("old_image_id", Text, nullable=False),
    Column("new_name", Text, nullable=False),
    Column("new_target", Text, nullable=False),
    Column("phase", Text, nullable=False),
    Column("phase_started", Double, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("error", Text),
    Column("restore_reason", Text),
    Column("retries", Integer, nullable=False),
    Column("retry_at", Double, nullable=False),
    Column("drain_timed_out", Integer, nullable=False),
    Column("waiting", Text, nullable=False),
    Column("entered_json", Text, nullable=False),
    Column("relaunches", Integer, nullable=False, server_default="0"),
    # rollout.model.FailureKind of a failed replacement; NULL before schema 4.
    Column("failure_kind", Text),
)

steps = Table(
    "steps", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", Text),
    Column("idx", Integer),
    Column("kind", Text, nullable=False),
    Column("node", Text, nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
    Column("started_at", Double, nullable=False),
    Column("finished_at", Double),
    Column("ok", Integer),
    Column("error", Text),
    Column("duration", Double),
    # The lease epoch the intent was written under (None: written unfenced).
    Column("epoch", Integer),
    Index("steps_rollout", "rollout_id", "id"),
    sqlite_autoincrement=True,
)

waits = Table(
    "waits", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", Text, nullable=False),
    Column("idx", Integer),
    Column("kind", Text, nullable=False),
    Column("seconds", Double, nullable=False),
    Column("at", Double, nullable=False),
    Index("waits_rollout", "rollout_id", "kind"),
    sqlite_autoincrement=True,
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", Text),
    Column("at", Double, nullable=False),
    Column("kind", Text, nullable=False),
    Column("body", Text, nullable=False),
    Index("events_rollout", "rollout_id", "id"),
    sqlite_autoincrement=True,
)

leases = Table(
    "leases", metadata,
    Column("key", Text, primary_key=True),
    Column("holder", Text, nullable=False),  # '' once released: the row keeps the epoch
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("pid_start", Text, nullable=False, server_default=""),
    Column("acquired_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    # Raised by every grant to a new holder and by a forced release; never lowered.
    Column("epoch", Integer, nullable=False, server_default="0"),
)

# Requests people make of a running rollout (rollout.store.requests). Generic:
# ``kind`` names the request, so other commands can queue theirs here too.
operator_requests = Table(
    "operator_requests", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("at", Double, nullable=False),
    Column("by", Text, nullable=False),
    Column("consumed", Double),  # when the controller acted on it; NULL: not yet
    Index("operator_requests_open", "rollout_id", "consumed"),
    sqlite_autoincrement=True,
)

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, nullable=False),
)
