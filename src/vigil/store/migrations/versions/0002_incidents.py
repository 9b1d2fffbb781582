"""Incidents and cases: incident, incident_alert, entity_risk, case_entry.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the tables as `vigil.correlate.store` defines them at this version (a database made
    # by this version's 0001 has them already: checkfirst leaves them alone)
    from vigil.correlate.store import metadata

    metadata.create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    from vigil.correlate.store import metadata

    metadata.drop_all(op.get_bind())
