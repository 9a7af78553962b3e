"""Schema 1: rollouts, replacements, steps, waits, events, leases.

Revision ID: 0001
Revises: (none)

The tables as the pre-Alembic journal (``schema_version`` 1) created them, so
such a journal is stamped 0001 and upgraded from there.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    real, text, integer = sa.Double, sa.Text, sa.Integer
    op.create_table(
        "rollouts",
        sa.Column("id", text, primary_key=True),
        sa.Column("env", text, nullable=False),
        sa.Column("role", text, nullable=False),
        sa.Column("target_image_id", text, nullable=False),
        sa.Column("target_version", text, nullable=False),
        sa.Column("target_json", text, nullable=False),
        sa.Column("previous_images", text, nullable=False),
        sa.Column("strategy", text, nullable=False),
        sa.Column("settings_json", text, nullable=False),
        sa.Column("status", text, nullable=False),
        sa.Column("pid", integer),
        sa.Column("host", text),
        sa.Column("started_at", real, nullable=False),
        sa.Column("finished_at", real),
        sa.Column("state_json", text, nullable=False),
    )
    op.create_index("rollouts_pool", "rollouts", ["env", "role", "started_at"])
    op.create_table(
        "replacements",
        sa.Column("rollout_id", text, sa.ForeignKey("rollouts.id"), primary_key=True),
        sa.Column("idx", integer, primary_key=True),
        sa.Column("batch", integer, nullable=False),
        sa.Column("old_name", text, nullable=False),
        sa.Column("old_target", text, nullable=False),
        sa.Column("old_image_id", text, nullable=False),
        sa.Column("new_name", text, nullable=False),
        sa.Column("new_target", text, nullable=False),
        sa.Column("phase", text, nullable=False),
        sa.Column("phase_started", real, nullable=False),
        sa.Column("attempt", integer, nullable=False),
        sa.Column("error", text),
        sa.Column("restore_reason", text),
        sa.Column("retries", integer, nullable=False),
        sa.Column("retry_at", real, nullable=False),
        sa.Column("drain_timed_out", integer, nullable=False),
        sa.Column("waiting", text, nullable=False),
        sa.Column("entered_json", text, nullable=False),
    )
    op.create_table(
        "steps",
        sa.Column("id", integer, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", text),
        sa.Column("idx", integer),
        sa.Column("kind", text, nullable=False),
        sa.Column("node", text, nullable=False),
        sa.Column("detail", text, nullable=False, server_default=""),
        sa.Column("started_at", real, nullable=False),
        sa.Column("finished_at", real),
        sa.Column("ok", integer),
        sa.Column("error", text),
        sa.Column("duration", real),
        sqlite_autoincrement=True,
    )
    op.create_index("steps_rollout", "steps", ["rollout_id", "id"])
    op.create_table(
        "waits",
        sa.Column("id", integer, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", text, nullable=False),
        sa.Column("idx", integer),
        sa.Column("kind", text, nullable=False),
        sa.Column("seconds", real, nullable=False),
        sa.Column("at", real, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("waits_rollout", "waits", ["rollout_id", "kind"])
    op.create_table(
        "events",
        sa.Column("id", integer, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", text),
        sa.Column("at", real, nullable=False),
        sa.Column("kind", text, nullable=False),
        sa.Column("body", text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("events_rollout", "events", ["rollout_id", "id"])
    op.create_table(
        "leases",
        sa.Column("key", text, primary_key=True),
        sa.Column("holder", text, nullable=False),
        sa.Column("host", text, nullable=False),
        sa.Column("pid", integer, nullable=False),
        sa.Column("pid_start", text, nullable=False, server_default=""),
        sa.Column("acquired_at", real, nullable=False),
        sa.Column("expires_at", real, nullable=False),
    )
    # An interrupted first open of the pre-Alembic journal may have left an
    # empty schema_version behind.
    if not sa.inspect(op.get_bind()).has_table("schema_version"):
        op.create_table("schema_version", sa.Column("version", integer, nullable=False))
    op.execute(sa.text("DELETE FROM schema_version"))
    op.execute(sa.text("INSERT INTO schema_version (version) VALUES (1)"))


def downgrade() -> None:
    for table in ("leases", "events", "waits", "steps", "replacements", "rollouts",
                  "schema_version"):
        op.drop_table(table)
