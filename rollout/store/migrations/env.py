"""Alembic's environment: the caller hands over its connection (already in a
transaction, holding the migration lock) through ``config.attributes``."""

from alembic import context

context.configure(connection=context.config.attributes["connection"],
                  transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
