"""The console: console_session (signed-in browsers), hunt_note (a hunt's notebook) and
exercise_run (exercise results reported for coverage).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_session",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.String(length=36), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("expires", sa.Float(), nullable=False),
        sa.Column("seen", sa.Float(), nullable=False),
        sa.Column("ended", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_console_session_token_id", "console_session", ["token_id"])
    op.create_index("ix_console_session_expires", "console_session", ["expires"])
    op.create_table(
        "hunt_note",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("hunt", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=256), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_hunt_note_hunt", "hunt_note", ["hunt"])
    op.create_table(
        "exercise_run",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("results", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_exercise_run_at", "exercise_run", ["at"])


def downgrade() -> None:
    op.drop_table("exercise_run")
    op.drop_table("hunt_note")
    op.drop_table("console_session")
