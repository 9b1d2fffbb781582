"""Zero Trust: ssf_event (each Security Event Token kept for its receiver until delivered).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ssf_event",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("receiver", sa.String(length=128), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("delivered", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("jti"),
    )
    op.create_index("ix_ssf_event_receiver", "ssf_event", ["receiver"])
    op.create_index("ix_ssf_event_created", "ssf_event", ["created"])


def downgrade() -> None:
    op.drop_table("ssf_event")
