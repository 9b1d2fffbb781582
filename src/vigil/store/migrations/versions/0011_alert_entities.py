"""Alerts by entity: alert_entity (the hosts, users, addresses, hashes and indicators an
alert names, for the alerts page's filters and pivots), and the alert indexes that list
them newest first without sorting (created and id; level, rule by created).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_entity",
        sa.Column("alert_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=512), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("alert_id", "kind", "value"),
    )
    op.create_index(
        "ix_alert_entity_recent", "alert_entity", ["kind", "value", "created", "alert_id"]
    )
    # the alerts stored before: their host, as the entity the pipeline would have named
    op.execute(
        "INSERT INTO alert_entity (alert_id, kind, value, created) "
        "SELECT id, 'host', lower(trim(host)), created FROM alert "
        "WHERE host IS NOT NULL AND trim(host) <> ''"
    )
    op.drop_index("ix_alert_created", table_name="alert")
    op.drop_index("ix_alert_level", table_name="alert")
    op.drop_index("ix_alert_rule_id", table_name="alert")
    op.create_index("ix_alert_recent", "alert", ["created", "id"])
    op.create_index("ix_alert_level_recent", "alert", ["level", "created", "id"])
    op.create_index("ix_alert_rule_recent", "alert", ["rule_id", "created", "id"])


def downgrade() -> None:
    op.drop_index("ix_alert_rule_recent", table_name="alert")
    op.drop_index("ix_alert_level_recent", table_name="alert")
    op.drop_index("ix_alert_recent", table_name="alert")
    op.create_index("ix_alert_rule_id", "alert", ["rule_id"])
    op.create_index("ix_alert_level", "alert", ["level"])
    op.create_index("ix_alert_created", "alert", ["created"])
    op.drop_table("alert_entity")
