"""Schema 2: how many new nodes a replacement gave up on because they failed to boot.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("replacements", sa.Column("relaunches", sa.Integer, nullable=False,
                                            server_default="0"))
    op.execute(sa.text("UPDATE schema_version SET version = 2"))


def downgrade() -> None:
    with op.batch_alter_table("replacements") as batch:
        batch.drop_column("relaunches")
    op.execute(sa.text("UPDATE schema_version SET version = 1"))
