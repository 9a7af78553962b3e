"""The revisions, oldest first: 0001 is schema 1 of the pre-Alembic journal."""
