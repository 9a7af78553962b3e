"""Alembic migrations of the state store, run programmatically by
:func:`rollout.store.migrate.upgrade` (no alembic.ini at run time).

A new migration is a new file in ``versions/`` (``script.py.mako`` is its
template; ``revision`` is the next number, ``down_revision`` the current head).
Write it for both engines (``op.batch_alter_table`` where SQLite cannot alter
in place), and bump ``schema_version`` in it, so that an older rollout refuses
the newer store instead of misreading it; bump ``SCHEMA_VERSION`` in
:mod:`rollout.store.schema` to match.
"""
