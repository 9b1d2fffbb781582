"""The state database as of Vigil 0.1: indicators, provenance, sources, sightings, alerts,
saved hunts and API tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

from vigil.store.schema import all_metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The first revision is the schema of the table definitions at this version (tables that
    # exist already are left alone); later revisions change it step by step with `op` calls.
    all_metadata().create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    all_metadata().drop_all(op.get_bind())
