"""Schema 4: what a failed replacement failed at (``rollout.model.FailureKind``).

Revision ID: 0004
Revises: 0003

Rows written before have NULL, read back as ``None`` (unknown).
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("replacements", sa.Column("failure_kind", sa.Text))
    op.execute(sa.text("UPDATE schema_version SET version = 4"))


def downgrade() -> None:
    with op.batch_alter_table("replacements") as batch:
        batch.drop_column("failure_kind")
    op.execute(sa.text("UPDATE schema_version SET version = 3"))
