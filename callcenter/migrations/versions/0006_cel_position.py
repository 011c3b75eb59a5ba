"""calls: where the reconciler is in Asterisk's CEL log, stored with the records it wrote

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cel_positions",
        sa.Column("log", sa.String(512), nullable=False),
        sa.Column("inode", sa.BigInteger(), nullable=True),
        sa.Column("byte_offset", sa.BigInteger(), nullable=False),
        sa.Column("horizon", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("log", name="pk_cel_positions"),
    )


def downgrade() -> None:
    op.drop_table("cel_positions")
