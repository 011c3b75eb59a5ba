"""desk: evaluation items, callback visits' calls, results and scores, reminders pushed

Revision ID: 0012
Revises: 0002
Create Date: 2026-12-07 18:30:00

A branch of its own off the CRM's first revision: it needs only ``service_records``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = ("desk",)
depends_on: str | Sequence[str] | None = None

# Frozen copies of what crm_bridge.visit_models says today; later changes get migrations of their own.
_APPLIES_TO = ("visit", "call", "outlet")
_OUTCOMES = ("reached", "not_reached", "refused", "wrong_number")
_KINDS = ("reminder", "overdue")
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{value}'" for value in values) + ")"


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _record_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["record_id"], ["service_records.id"], name=op.f(f"fk_{table}_record_id_service_records"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "evaluation_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("applies_to", sa.String(32), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.CheckConstraint(_in("applies_to", _APPLIES_TO), name=op.f("ck_evaluation_items_applies_to_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_items")),
        sa.UniqueConstraint("applies_to", "name", name=op.f("uq_evaluation_items_applies_to")),
    )
    op.create_table(
        "visit_calls",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("record_id", _BIG_ID, nullable=False),
        sa.Column("linkedid", sa.String(64), nullable=False),
        sa.Column("callback_id", sa.String(64), nullable=False),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("placed_by", sa.String(150), nullable=False),
        sa.Column("placed_at", _time(), nullable=False),
        _record_fk("visit_calls"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_calls")),
        sa.UniqueConstraint("linkedid", name=op.f("uq_visit_calls_linkedid")),
    )
    op.create_index(op.f("ix_visit_calls_record_id"), "visit_calls", ["record_id"])
    op.create_table(
        "visit_results",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("record_id", _BIG_ID, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("satisfaction", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("linkedid", sa.String(64), nullable=True),
        sa.Column("recorded_by", sa.String(150), nullable=False),
        sa.Column("recorded_at", _time(), nullable=False),
        sa.CheckConstraint(_in("outcome", _OUTCOMES), name=op.f("ck_visit_results_outcome_known")),
        sa.CheckConstraint("satisfaction BETWEEN 1 AND 5", name=op.f("ck_visit_results_satisfaction_range")),
        _record_fk("visit_results"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_results")),
        sa.UniqueConstraint("record_id", name=op.f("uq_visit_results_record_id")),
    )
    op.create_table(
        "visit_scores",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("result_id", _BIG_ID, nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.CheckConstraint("score BETWEEN 1 AND 5", name=op.f("ck_visit_scores_score_range")),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["visit_results.id"],
            name=op.f("fk_visit_scores_result_id_visit_results"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["evaluation_items.id"],
            name=op.f("fk_visit_scores_item_id_evaluation_items"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_scores")),
        sa.UniqueConstraint("result_id", "item_id", name=op.f("uq_visit_scores_result_id")),
    )
    op.create_index(op.f("ix_visit_scores_item_id"), "visit_scores", ["item_id"])
    op.create_table(
        "desk_reminders",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("record_id", _BIG_ID, nullable=False),
        sa.Column("occasion", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("follow_up", sa.Date(), nullable=True),
        sa.Column("appointment_at", _time(), nullable=True),
        sa.Column("sent_at", _time(), nullable=False),
        sa.CheckConstraint(_in("kind", _KINDS), name=op.f("ck_desk_reminders_kind_known")),
        _record_fk("desk_reminders"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_desk_reminders")),
        sa.UniqueConstraint("record_id", "occasion", name=op.f("uq_desk_reminders_record_id")),
    )
    op.create_index(op.f("ix_desk_reminders_sent_at"), "desk_reminders", ["sent_at"])


def downgrade() -> None:
    op.drop_table("desk_reminders")
    op.drop_table("visit_scores")
    op.drop_table("visit_results")
    op.drop_table("visit_calls")
    op.drop_table("evaluation_items")
