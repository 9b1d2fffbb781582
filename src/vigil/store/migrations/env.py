"""Alembic environment for Vigil's state database: run from `vigil.store.migrate`, which
hands over the connection."""

from __future__ import annotations

from alembic import context

from vigil.store.schema import all_metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=all_metadata())
with context.begin_transaction():
    context.run_migrations()
