"""Schema 5: requests people make of a running rollout (``rollout pause``,
``rollout continue``), kept until its controller has acted on them.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operator_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("by", sa.Text, nullable=False),
        sa.Column("consumed", sa.Double),
        sqlite_autoincrement=True,
    )
    op.create_index("operator_requests_open", "operator_requests", ["rollout_id", "consumed"])
    op.execute(sa.text("UPDATE schema_version SET version = 5"))


def downgrade() -> None:
    op.drop_index("operator_requests_open", "operator_requests")
    op.drop_table("operator_requests")
    op.execute(sa.text("UPDATE schema_version SET version = 4"))
