"""outlets: service outlets and their product categories, work orders, feedback, fee settlements, evaluations, history

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 18:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = ("outlets",)
depends_on: str | Sequence[str] | None = None

# Frozen copies of what outlets.models says today; later changes get migrations of their own.
_KINDS = ("repair", "installation")
_ORDER_STATUSES = ("dispatched", "done", "cancelled")
_CHOICES = ("auto", "override")
_SETTLEMENT_STATUSES = ("pending", "approved", "rejected")
_OPEN = "status = 'dispatched'"
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{value}'" for value in values) + ")"


def upgrade() -> None:
    op.create_table(
        "service_outlets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("region", sa.String(100), nullable=False),
        sa.Column("contact_person", sa.String(200), nullable=True),
        sa.Column("phone", sa.String(64), nullable=True),
        sa.Column("address", sa.String(1000), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.Column("retired_at", _TIME, nullable=True),
        sa.Column("retired_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_outlets")),
    )
    op.create_index(op.f("ix_service_outlets_region"), "service_outlets", ["region"])
    op.create_table(
        "outlet_categories",
        sa.Column("outlet_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.ForeignKeyConstraint(
            ["outlet_id"],
            ["service_outlets.id"],
            name=op.f("fk_outlet_categories_outlet_id_service_outlets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("outlet_id", "category", name=op.f("pk_outlet_categories")),
    )
    op.create_index(op.f("ix_outlet_categories_category"), "outlet_categories", ["category", "outlet_id"])
    op.create_table(
        "work_orders",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("service_record_id", _BIG_ID, nullable=False),
        sa.Column("outlet_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("region", sa.String(100), nullable=True),
        sa.Column("product_category", sa.String(100), nullable=True),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("fault_type", sa.String(64), nullable=True),
        sa.Column("appointment_at", _TIME, nullable=True),
        sa.Column("chosen", sa.String(32), nullable=False),
        sa.Column("override_reason", sa.Text(), nullable=True),
        sa.Column("dispatched_by", sa.String(150), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.Column("closed_at", _TIME, nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(_in("kind", _KINDS), name=op.f("ck_work_orders_kind_known")),
        sa.CheckConstraint(_in("status", _ORDER_STATUSES), name=op.f("ck_work_orders_status_known")),
        sa.CheckConstraint(_in("chosen", _CHOICES), name=op.f("ck_work_orders_chosen_known")),
        sa.ForeignKeyConstraint(
            ["service_record_id"], ["service_records.id"], name=op.f("fk_work_orders_service_record_id_service_records")
        ),
        sa.ForeignKeyConstraint(
            ["outlet_id"], ["service_outlets.id"], name=op.f("fk_work_orders_outlet_id_service_outlets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_orders")),
    )
    op.create_index(op.f("ix_work_orders_service_record_id"), "work_orders", ["service_record_id"])
    op.create_index(op.f("ix_work_orders_region"), "work_orders", ["region"])
    op.create_index(op.f("ix_work_orders_outlet_status"), "work_orders", ["outlet_id", "status"])
    op.create_index(op.f("ix_work_orders_status_created"), "work_orders", ["status", "created_at"])
    op.create_index(
        op.f("uq_work_orders_open_record"),
        "work_orders",
        ["service_record_id"],
        unique=True,
        sqlite_where=sa.text(_OPEN),
        postgresql_where=sa.text(_OPEN),
    )
    op.create_table(
        "work_order_feedback",
        sa.Column("order_id", _BIG_ID, nullable=False),
        sa.Column("completed_at", _TIME, nullable=False),
        sa.Column("parts_used", sa.Text(), nullable=True),
        sa.Column("fee", sa.Numeric(12, 2), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("registered_by", sa.String(150), nullable=False),
        sa.Column("registered_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["work_orders.id"],
            name=op.f("fk_work_order_feedback_order_id_work_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_work_order_feedback")),
    )
    op.create_table(
        "fee_settlements",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("order_id", _BIG_ID, nullable=False),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("reviewed_by", sa.String(150), nullable=True),
        sa.Column("reviewed_at", _TIME, nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.CheckConstraint(_in("status", _SETTLEMENT_STATUSES), name=op.f("ck_fee_settlements_status_known")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_fee_settlements_amount_positive")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["work_orders.id"], name=op.f("fk_fee_settlements_order_id_work_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fee_settlements")),
        sa.UniqueConstraint("order_id", name=op.f("uq_fee_settlements_order_id")),
    )
    op.create_index(op.f("ix_fee_settlements_status_created"), "fee_settlements", ["status", "created_at"])
    op.create_table(
        "outlet_evaluations",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("outlet_id", sa.Integer(), nullable=False),
        sa.Column("order_id", _BIG_ID, nullable=True),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("evaluated_by", sa.String(150), nullable=False),
        sa.Column("evaluated_at", _TIME, nullable=False),
        sa.CheckConstraint("score BETWEEN 1 AND 5", name=op.f("ck_outlet_evaluations_score_range")),
        sa.ForeignKeyConstraint(
            ["outlet_id"],
            ["service_outlets.id"],
            name=op.f("fk_outlet_evaluations_outlet_id_service_outlets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["work_orders.id"],
            name=op.f("fk_outlet_evaluations_order_id_work_orders"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outlet_evaluations")),
    )
    op.create_index(op.f("ix_outlet_evaluations_outlet_id"), "outlet_evaluations", ["outlet_id"])
    op.create_table(
        "outlet_history",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("subject", sa.String(32), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("actor", sa.String(150), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("changes", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outlet_history")),
    )
    op.create_index(op.f("ix_outlet_history_subject"), "outlet_history", ["subject", "subject_id", "id"])


def downgrade() -> None:
    op.drop_table("outlet_history")
    op.drop_table("outlet_evaluations")
    op.drop_table("fee_settlements")
    op.drop_table("work_order_feedback")
    op.drop_table("work_orders")
    op.drop_table("outlet_categories")
    op.drop_table("service_outlets")
