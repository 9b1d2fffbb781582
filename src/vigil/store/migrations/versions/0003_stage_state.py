"""Stages' kept state: stage_state (a stage's state as of a position of its stream).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stage_state",
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("saved", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("stage"),
    )


def downgrade() -> None:
    op.drop_table("stage_state")
