"""Tables of the service outlets (特约维修部): the outlets and the product categories each serves, the work orders
dispatched to them, an order's feedback, the fee settlement it opens, the outlets' evaluations, and the history of
every change made to any of them.

The migration ``0011_outlets`` creates exactly these (a test compares the two on SQLite and PostgreSQL). Foreign
keys to the CRM's and the core's tables keep the schema whole; this package never reads those tables (it asks the
CRM's port, :class:`crm_bridge.ports.ServiceRecordDesk`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, Numeric, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from callcenter.db import Base, UtcDateTime


class OrderKind(StrEnum):
    REPAIR = "repair"
    INSTALLATION = "installation"


class OrderStatus(StrEnum):
    DISPATCHED = "dispatched"
    DONE = "done"
    CANCELLED = "cancelled"


class Choice(StrEnum):
    """How an order's outlet was chosen: by the region and category rule, or named by the dispatcher."""

    AUTO = "auto"
    OVERRIDE = "override"


class SettlementStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


NAME_MAX = 1024
REGION_MAX = 100
CATEGORY_MAX = 100
PERSON_MAX = 200
PHONE_MAX = 64
ADDRESS_MAX = 1000
FAULT_TYPE_MAX = 64
ACTOR_MAX = 150
ENUM_MAX = 32
SUBJECT_MAX = 32

# SQLite only auto-increments an INTEGER PRIMARY KEY; orders and history grow without bound.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# Money: exact, two decimals, up to 9 999 999 999.99.
Money = Numeric(12, 2)

# One open order per service record: the partial index both engines enforce (a second dispatcher loses).
OPEN_ORDER_WHERE = "status = 'dispatched'"


def _one_of(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN (" + ", ".join(f"'{value.value}'" for value in values) + ")"


class Outlet(Base):
    __tablename__ = "service_outlets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    # Matched as stored (the customer's region, trimmed the same way on both sides).
    region: Mapped[str] = mapped_column(String(REGION_MAX), index=True)
    contact_person: Mapped[str | None] = mapped_column(String(PERSON_MAX))
    phone: Mapped[str | None] = mapped_column(String(PHONE_MAX))
    address: Mapped[str | None] = mapped_column(String(ADDRESS_MAX))
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Retired outlets stay for their orders' sake; they get no new ones.
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    retired_reason: Mapped[str | None] = mapped_column(Text)


class OutletCategory(Base):
    """A product category an outlet repairs and installs (the products' ``category``)."""

    __tablename__ = "outlet_categories"
    __table_args__ = (Index("ix_outlet_categories_category", "category", "outlet_id"),)

    outlet_id: Mapped[int] = mapped_column(ForeignKey("service_outlets.id", ondelete="CASCADE"), primary_key=True)
    category: Mapped[str] = mapped_column(String(CATEGORY_MAX), primary_key=True)


class WorkOrder(Base):
    __tablename__ = "work_orders"
    __table_args__ = (
        CheckConstraint(_one_of("kind", OrderKind), name="kind_known"),
        CheckConstraint(_one_of("status", OrderStatus), name="status_known"),
        CheckConstraint(_one_of("chosen", Choice), name="chosen_known"),
        Index(
            "uq_work_orders_open_record",
            "service_record_id",
            unique=True,
            sqlite_where=text(OPEN_ORDER_WHERE),
            postgresql_where=text(OPEN_ORDER_WHERE),
        ),
        Index("ix_work_orders_outlet_status", "outlet_id", "status"),
        Index("ix_work_orders_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    service_record_id: Mapped[int] = mapped_column(BigId, ForeignKey("service_records.id"), index=True)
    outlet_id: Mapped[int] = mapped_column(ForeignKey("service_outlets.id"))
    kind: Mapped[str] = mapped_column(String(ENUM_MAX))
    status: Mapped[str] = mapped_column(String(ENUM_MAX))
    # Copied from the record when dispatched: what the order was matched by, and what statistics count.
    customer_id: Mapped[int | None] = mapped_column(Integer)
    region: Mapped[str | None] = mapped_column(String(REGION_MAX), index=True)
    product_category: Mapped[str | None] = mapped_column(String(CATEGORY_MAX))
    product_id: Mapped[int | None] = mapped_column(Integer)
    fault_type: Mapped[str | None] = mapped_column(String(FAULT_TYPE_MAX))
    appointment_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    chosen: Mapped[str] = mapped_column(String(ENUM_MAX))
    override_reason: Mapped[str | None] = mapped_column(Text)
    dispatched_by: Mapped[str] = mapped_column(String(ACTOR_MAX))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(Text)


class OrderFeedback(Base):
    """What the outlet reported for an order, once: done when, the parts used, the fee, notes."""

    __tablename__ = "work_order_feedback"

    order_id: Mapped[int] = mapped_column(BigId, ForeignKey("work_orders.id", ondelete="CASCADE"), primary_key=True)
    completed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    parts_used: Mapped[str | None] = mapped_column(Text)
    fee: Mapped[Decimal] = mapped_column(Money)
    notes: Mapped[str | None] = mapped_column(Text)
    registered_by: Mapped[str] = mapped_column(String(ACTOR_MAX))
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime)


class FeeSettlement(Base):
    """An order's repair or installation fee, pending until reviewed (approved, or rejected with a reason)."""

    __tablename__ = "fee_settlements"
    __table_args__ = (
        CheckConstraint(_one_of("status", SettlementStatus), name="status_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_fee_settlements_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(BigId, ForeignKey("work_orders.id", ondelete="CASCADE"), unique=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(ENUM_MAX))
    reason: Mapped[str | None] = mapped_column(Text)
    reviewed_by: Mapped[str | None] = mapped_column(String(ACTOR_MAX))
    reviewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OutletEvaluation(Base):
    """A score of an outlet (1 to 5), for one of its orders or for the outlet as a whole, with a comment."""

    __tablename__ = "outlet_evaluations"
    __table_args__ = (CheckConstraint("score BETWEEN 1 AND 5", name="score_range"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    outlet_id: Mapped[int] = mapped_column(ForeignKey("service_outlets.id", ondelete="CASCADE"), index=True)
    order_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("work_orders.id", ondelete="SET NULL"))
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    evaluated_by: Mapped[str] = mapped_column(String(ACTOR_MAX))
    evaluated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OutletHistory(Base):
    """Every change of an outlet, an order, a settlement or an evaluation: who, when, what, and the fields changed."""

    __tablename__ = "outlet_history"
    __table_args__ = (Index("ix_outlet_history_subject", "subject", "subject_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subject: Mapped[str] = mapped_column(String(SUBJECT_MAX))  # outlet, work_order, fee_settlement, evaluation
    subject_id: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(ACTOR_MAX))
    action: Mapped[str] = mapped_column(String(ENUM_MAX))
    # JSON object {field: {"from": old, "to": new}} or other details; TEXT behaves the same on both backends.
    changes: Mapped[str | None] = mapped_column(Text)
