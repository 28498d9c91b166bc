"""Alembic environment: runs on the connection veilnet.store.sql hands it (config.attributes['connection'])."""

from __future__ import annotations

from alembic import context

from veilnet.store import tables  # noqa: F401  (registers every store's tables on the shared MetaData)
from veilnet.store.sql import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("veilnet migrations run through veilnet.store.sql.migrate(), not the alembic CLI")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
