"""Schema 3: fenced leases (an epoch per pool key, recorded on every step) and
the rollouts' creation order.

Revision ID: 0003
Revises: 0002

A released lease keeps its row (holder '') so its epoch never goes back.
Rollouts written before this keep their order: SQLite's rowid was it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("leases", sa.Column("epoch", sa.Integer, nullable=False, server_default="0"))
    op.add_column("steps", sa.Column("epoch", sa.Integer))
    op.add_column("rollouts", sa.Column("seq", sa.Integer))
    if op.get_bind().dialect.name == "sqlite":
        op.execute(sa.text("UPDATE rollouts SET seq = rowid"))
    op.execute(sa.text("UPDATE schema_version SET version = 3"))


def downgrade() -> None:
    for table, column in (("leases", "epoch"), ("steps", "epoch"), ("rollouts", "seq")):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
    op.execute(sa.text("UPDATE schema_version SET version = 2"))
