"""Alembic environment for Vigil's state database: run from `vigil.store.migrate`, which
hands over the connection. The declared tables are the target only for comparing (a new
migration is written by hand, or drafted with autogenerate and then frozen)."""

from __future__ import annotations

from alembic import context

from vigil.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
