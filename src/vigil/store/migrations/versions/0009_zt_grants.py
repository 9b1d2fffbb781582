"""Zero Trust: zt_grant (just-in-time access: asked, approved or denied, active for its
window, expired).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "zt_grant",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("resource", sa.String(length=256), nullable=False),
        sa.Column("actions", sa.Text(), nullable=False),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("starts", sa.Float(), nullable=False),
        sa.Column("ends", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("approver", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("subject", "created", "state"):
        op.create_index(f"ix_zt_grant_{column}", "zt_grant", [column])


def downgrade() -> None:
    op.drop_table("zt_grant")
