"""The state database as of Vigil 0.1: indicators, provenance, sources, sightings, alerts,
saved hunts and API tokens.

Frozen: the tables as they were at this revision, written out (never built from the live
table declarations, which move on). A table that exists already is left alone (databases
made before migrations were run by every command).

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = (
    "alert",
    "api_token",
    "intel_indicator",
    "intel_provenance",
    "intel_sighting",
    "intel_source",
    "saved_hunt",
)


def _missing(table: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(table)


def upgrade() -> None:
    if _missing("alert"):
        op.create_table(
            "alert",
            sa.Column("id", sa.String(length=32), nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("rule_id", sa.String(length=128), nullable=False),
            sa.Column("rule_title", sa.Text(), nullable=False),
            sa.Column("level", sa.String(length=16), nullable=False),
            sa.Column("tags", sa.Text(), nullable=False),
            sa.Column("time", sa.Float(), nullable=True),
            sa.Column("host", sa.Text(), nullable=True),
            sa.Column("source", sa.Text(), nullable=False),
            sa.Column("record", sa.Text(), nullable=True),
            sa.Column("event_offset", sa.Integer(), nullable=True),
            sa.Column("detected_at", sa.Text(), nullable=False),
            sa.Column("created", sa.Float(), nullable=False),
            sa.Column("matched_fields", sa.Text(), nullable=False),
            sa.Column("event", sa.Text(), nullable=False),
            sa.Column("details", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index(op.f("ix_alert_created"), "alert", ["created"], unique=False)
        op.create_index(op.f("ix_alert_level"), "alert", ["level"], unique=False)
        op.create_index(op.f("ix_alert_rule_id"), "alert", ["rule_id"], unique=False)
        op.create_index(op.f("ix_alert_time"), "alert", ["time"], unique=False)
    if _missing("api_token"):
        op.create_table(
            "api_token",
            sa.Column("id", sa.String(length=36), nullable=False),
            sa.Column("name", sa.String(length=128), nullable=False),
            sa.Column("role", sa.String(length=16), nullable=False),
            sa.Column("hash", sa.String(length=64), nullable=False),
            sa.Column("created", sa.Float(), nullable=False),
            sa.Column("last_used", sa.Float(), nullable=True),
            sa.Column("revoked", sa.Boolean(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("hash"),
        )
    if _missing("intel_indicator"):
        op.create_table(
            "intel_indicator",
            sa.Column(
                "key",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                autoincrement=False,
                nullable=False,
            ),
            sa.Column("type", sa.String(length=16), nullable=False),
            sa.Column("value", sa.Text(), nullable=False),
            sa.Column("created", sa.Float(), nullable=False),
            sa.Column("last_sighting", sa.Float(), nullable=True),
            sa.Column("sightings", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("key"),
            sa.UniqueConstraint("type", "value", name="uq_intel_indicator_value"),
        )
    if _missing("intel_provenance"):
        op.create_table(
            "intel_provenance",
            sa.Column("key", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("source", sa.String(length=255), nullable=False),
            sa.Column("reference", sa.String(length=512), nullable=False),
            sa.Column("confidence", sa.Integer(), nullable=True),
            sa.Column("first_seen", sa.Float(), nullable=True),
            sa.Column("last_seen", sa.Float(), nullable=True),
            sa.Column("valid_until", sa.Float(), nullable=True),
            sa.Column("revoked", sa.Boolean(), nullable=False),
            sa.Column("tags", sa.Text(), nullable=False),
            sa.Column("techniques", sa.Text(), nullable=False),
            sa.Column("actors", sa.Text(), nullable=False),
            sa.Column("description", sa.Text(), nullable=True),
            sa.Column("imported_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("key", "source", "reference"),
            sqlite_with_rowid=False,
        )
    if _missing("intel_sighting"):
        op.create_table(
            "intel_sighting",
            sa.Column("key", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("where", sa.String(length=512), nullable=False),
            sa.Column("field", sa.String(length=128), nullable=False),
            sa.Column("first_seen", sa.Float(), nullable=True),
            sa.Column("last_seen", sa.Float(), nullable=True),
            sa.Column("count", sa.Integer(), nullable=False),
            sa.Column("recorded", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("key", "where", "field"),
        )
    if _missing("intel_source"):
        op.create_table(
            "intel_source",
            sa.Column("name", sa.String(length=255), nullable=False),
            sa.Column("kind", sa.String(length=32), nullable=False),
            sa.Column("location", sa.Text(), nullable=False),
            sa.Column("cursor", sa.Text(), nullable=True),
            sa.Column("last_import", sa.Float(), nullable=True),
            sa.Column("indicators", sa.Integer(), nullable=False),
            sa.Column("unsupported", sa.Integer(), nullable=False),
            sa.Column("rejected", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        )
    if _missing("saved_hunt"):
        op.create_table(
            "saved_hunt",
            sa.Column("name", sa.String(length=128), nullable=False),
            sa.Column("query", sa.Text(), nullable=True),
            sa.Column("sigma", sa.Text(), nullable=True),
            sa.Column("every_seconds", sa.Integer(), nullable=False),
            sa.Column("created", sa.Float(), nullable=False),
            sa.Column("last_run", sa.Float(), nullable=True),
            sa.Column("last_result", sa.Text(), nullable=True),
            sa.PrimaryKeyConstraint("name"),
        )


def downgrade() -> None:
    for table in TABLES:
        op.drop_table(table)
