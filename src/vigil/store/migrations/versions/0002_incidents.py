"""Incidents and cases: incident, incident_alert, entity_risk, case_entry.

Frozen: the tables as they were at this revision, written out (never built from the live
table declarations, which move on). A table that exists already is left alone (databases
made before migrations were run by every command).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("case_entry", "entity_risk", "incident", "incident_alert")


def _missing(table: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(table)


def upgrade() -> None:
    if _missing("case_entry"):
        op.create_table(
            "case_entry",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("incident_id", sa.String(length=32), nullable=False),
            sa.Column("at", sa.Float(), nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("author", sa.Text(), nullable=False),
            sa.Column("text", sa.Text(), nullable=False),
            sa.Column("data", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index(
            op.f("ix_case_entry_incident_id"), "case_entry", ["incident_id"], unique=False
        )
    if _missing("entity_risk"):
        op.create_table(
            "entity_risk",
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("value", sa.String(length=512), nullable=False),
            sa.Column("risk", sa.Float(), nullable=False),
            sa.Column("as_of", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("kind", "value"),
        )
        op.create_index(op.f("ix_entity_risk_as_of"), "entity_risk", ["as_of"], unique=False)
    if _missing("incident"):
        op.create_table(
            "incident",
            sa.Column("id", sa.String(length=32), nullable=False),
            sa.Column("opened", sa.Float(), nullable=False),
            sa.Column("last", sa.Float(), nullable=False),
            sa.Column("level", sa.String(length=16), nullable=False),
            sa.Column("risk", sa.Float(), nullable=False),
            sa.Column("alerts", sa.Integer(), nullable=False),
            sa.Column("entities", sa.Text(), nullable=False),
            sa.Column("rules", sa.Text(), nullable=False),
            sa.Column("tactics", sa.Text(), nullable=False),
            sa.Column("merges", sa.Text(), nullable=False),
            sa.Column("follows", sa.String(length=32), nullable=True),
            sa.Column("first_event", sa.Float(), nullable=True),
            sa.Column("detected", sa.Float(), nullable=True),
            sa.Column("created", sa.Float(), nullable=False),
            sa.Column("updated", sa.Float(), nullable=False),
            sa.Column("status", sa.String(length=16), nullable=False),
            sa.Column("assignee", sa.Text(), nullable=True),
            sa.Column("triaged_at", sa.Float(), nullable=True),
            sa.Column("contained_at", sa.Float(), nullable=True),
            sa.Column("resolved_at", sa.Float(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index(op.f("ix_incident_created"), "incident", ["created"], unique=False)
        op.create_index(op.f("ix_incident_opened"), "incident", ["opened"], unique=False)
        op.create_index(op.f("ix_incident_risk"), "incident", ["risk"], unique=False)
        op.create_index(op.f("ix_incident_status"), "incident", ["status"], unique=False)
    if _missing("incident_alert"):
        op.create_table(
            "incident_alert",
            sa.Column("alert_id", sa.String(length=64), nullable=False),
            sa.Column("incident_id", sa.String(length=32), nullable=False),
            sa.Column("time", sa.Float(), nullable=False),
            sa.Column("reason", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("alert_id"),
        )
        op.create_index(
            op.f("ix_incident_alert_incident_id"), "incident_alert", ["incident_id"], unique=False
        )


def downgrade() -> None:
    for table in TABLES:
        op.drop_table(table)
