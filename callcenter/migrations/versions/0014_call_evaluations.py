"""recordings: call evaluations (QA's scores of a call on the call evaluation items) and their scores

Revision ID: 0014
Revises: 0005
Create Date: 2026-12-07 19:05:00

On the recordings branch: an evaluation is made from a recording QA plays. The items are the desk's
(``evaluation_items``, another branch), named by number only.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_CURRENT = sa.text("replaced_at IS NULL")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "call_evaluations",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("linkedid", sa.String(64), nullable=True),
        sa.Column("recording_id", sa.String(40), nullable=False),
        sa.Column("agent_user_id", sa.Integer(), nullable=True),
        sa.Column("evaluator_user_id", sa.Integer(), nullable=False),
        sa.Column("evaluator", sa.String(150), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("evaluated_at", _time(), nullable=False),
        sa.Column("replaced_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_evaluations")),
    )
    # One current evaluation per evaluator per call; the replaced ones stay beside it.
    op.create_index(
        "ix_call_evaluations_current",
        "call_evaluations",
        ["call_id", "evaluator_user_id"],
        unique=True,
        sqlite_where=_CURRENT,
        postgresql_where=_CURRENT,
    )
    op.create_index("ix_call_evaluations_evaluated", "call_evaluations", ["evaluated_at", "agent_user_id"])
    op.create_table(
        "call_evaluation_scores",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("evaluation_id", _BIG_ID, nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.CheckConstraint("score BETWEEN 1 AND 5", name=op.f("ck_call_evaluation_scores_score_range")),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["call_evaluations.id"],
            name=op.f("fk_call_evaluation_scores_evaluation_id_call_evaluations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_evaluation_scores")),
        sa.UniqueConstraint("evaluation_id", "item_id", name=op.f("uq_call_evaluation_scores_evaluation_id")),
    )
    op.create_index(op.f("ix_call_evaluation_scores_item_id"), "call_evaluation_scores", ["item_id"])


def downgrade() -> None:
    op.drop_table("call_evaluation_scores")
    op.drop_table("call_evaluations")
