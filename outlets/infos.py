"""What the outlets give back: frozen value types, each with ``as_json`` (what the API sends) and, for the lists
that are reports, ``as_row`` (a CSV row), and the converters from table rows to them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from callcenter.db import json_object
from outlets.models import FeeSettlement, OrderFeedback, Outlet, OutletEvaluation, OutletHistory, WorkOrder


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _money(value: Decimal | None) -> str | None:
    # A string: JSON numbers would lose the exact amount in some clients.
    return None if value is None else f"{value:.2f}"


@dataclass(frozen=True, slots=True)
class OutletInfo:
    id: int
    name: str
    region: str
    categories: tuple[str, ...]
    contact_person: str | None
    phone: str | None
    address: str | None
    notes: str | None
    created_at: datetime
    updated_at: datetime
    retired_at: datetime | None
    retired_reason: str | None
    open_orders: int = 0

    @property
    def active(self) -> bool:
        return self.retired_at is None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "region": self.region,
            "categories": list(self.categories),
            "contact_person": self.contact_person,
            "phone": self.phone,
            "address": self.address,
            "notes": self.notes,
            "active": self.active,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "retired_at": _iso(self.retired_at),
            "retired_reason": self.retired_reason,
            "open_orders": self.open_orders,
        }


OUTLET_COLUMNS = (
    "id",
    "name",
    "region",
    "categories",
    "contact_person",
    "phone",
    "address",
    "active",
    "open_orders",
    "retired_at",
)


@dataclass(frozen=True, slots=True)
class FeedbackInfo:
    completed_at: datetime
    parts_used: str | None
    fee: Decimal
    notes: str | None
    registered_by: str
    registered_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "completed_at": self.completed_at.isoformat(),
            "parts_used": self.parts_used,
            "fee": _money(self.fee),
            "notes": self.notes,
            "registered_by": self.registered_by,
            "registered_at": self.registered_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class SettlementInfo:
    id: int
    order_id: int
    amount: Decimal
    status: str
    reason: str | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    created_at: datetime
    # Of the order, for the review list.
    outlet_id: int
    outlet_name: str
    kind: str
    region: str | None
    service_record_id: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "order_id": self.order_id,
            "amount": _money(self.amount),
            "status": self.status,
            "reason": self.reason,
            "reviewed_by": self.reviewed_by,
            "reviewed_at": _iso(self.reviewed_at),
            "created_at": self.created_at.isoformat(),
            "outlet_id": self.outlet_id,
            "outlet_name": self.outlet_name,
            "kind": self.kind,
            "region": self.region,
            "service_record_id": self.service_record_id,
        }


SETTLEMENT_COLUMNS = (
    "id",
    "order_id",
    "service_record_id",
    "outlet_id",
    "outlet_name",
    "region",
    "kind",
    "amount",
    "status",
    "reason",
    "reviewed_by",
    "reviewed_at",
    "created_at",
)


@dataclass(frozen=True, slots=True)
class OrderInfo:
    id: int
    service_record_id: int
    outlet_id: int
    outlet_name: str
    kind: str
    status: str
    customer_id: int | None
    region: str | None
    product_category: str | None
    product_id: int | None
    fault_type: str | None
    appointment_at: datetime | None
    chosen: str
    override_reason: str | None
    dispatched_by: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    cancel_reason: str | None
    feedback: FeedbackInfo | None = None
    settlement: SettlementInfo | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service_record_id": self.service_record_id,
            "outlet_id": self.outlet_id,
            "outlet_name": self.outlet_name,
            "kind": self.kind,
            "status": self.status,
            "customer_id": self.customer_id,
            "region": self.region,
            "product_category": self.product_category,
            "product_id": self.product_id,
            "fault_type": self.fault_type,
            "appointment_at": _iso(self.appointment_at),
            "chosen": self.chosen,
            "override_reason": self.override_reason,
            "dispatched_by": self.dispatched_by,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "closed_at": _iso(self.closed_at),
            "cancel_reason": self.cancel_reason,
            "feedback": None if self.feedback is None else self.feedback.as_json(),
            "settlement": None if self.settlement is None else self.settlement.as_json(),
        }

    def as_row(self) -> dict[str, Any]:
        row = self.as_json()
        feedback = row.pop("feedback") or {}
        settlement = row.pop("settlement") or {}
        row["fee"] = feedback.get("fee")
        row["parts_used"] = feedback.get("parts_used")
        row["completed_at"] = feedback.get("completed_at")
        row["settlement_status"] = settlement.get("status")
        return row


ORDER_COLUMNS = (
    "id",
    "service_record_id",
    "kind",
    "status",
    "outlet_id",
    "outlet_name",
    "region",
    "product_category",
    "product_id",
    "fault_type",
    "customer_id",
    "appointment_at",
    "chosen",
    "override_reason",
    "dispatched_by",
    "created_at",
    "closed_at",
    "completed_at",
    "parts_used",
    "fee",
    "settlement_status",
    "cancel_reason",
)


@dataclass(frozen=True, slots=True)
class EvaluationInfo:
    id: int
    outlet_id: int
    order_id: int | None
    score: int
    comment: str | None
    evaluated_by: str
    evaluated_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "outlet_id": self.outlet_id,
            "order_id": self.order_id,
            "score": self.score,
            "comment": self.comment,
            "evaluated_by": self.evaluated_by,
            "evaluated_at": self.evaluated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    at: datetime
    actor: str
    action: str
    changes: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "actor": self.actor, "action": self.action, "changes": self.changes}


def outlet_info(row: Outlet, categories: Sequence[str], open_orders: int = 0) -> OutletInfo:
    return OutletInfo(
        id=row.id,
        name=row.name,
        region=row.region,
        categories=tuple(categories),
        contact_person=row.contact_person,
        phone=row.phone,
        address=row.address,
        notes=row.notes,
        created_at=row.created_at,
        updated_at=row.updated_at,
        retired_at=row.retired_at,
        retired_reason=row.retired_reason,
        open_orders=open_orders,
    )


def feedback_info(row: OrderFeedback) -> FeedbackInfo:
    return FeedbackInfo(row.completed_at, row.parts_used, row.fee, row.notes, row.registered_by, row.registered_at)


def settlement_info(row: FeeSettlement, order: WorkOrder, outlet_name: str) -> SettlementInfo:
    return SettlementInfo(
        id=row.id,
        order_id=row.order_id,
        amount=row.amount,
        status=row.status,
        reason=row.reason,
        reviewed_by=row.reviewed_by,
        reviewed_at=row.reviewed_at,
        created_at=row.created_at,
        outlet_id=order.outlet_id,
        outlet_name=outlet_name,
        kind=order.kind,
        region=order.region,
        service_record_id=order.service_record_id,
    )


def order_info(
    row: WorkOrder,
    outlet_name: str,
    feedback: OrderFeedback | None = None,
    settlement: FeeSettlement | None = None,
) -> OrderInfo:
    return OrderInfo(
        id=row.id,
        service_record_id=row.service_record_id,
        outlet_id=row.outlet_id,
        outlet_name=outlet_name,
        kind=row.kind,
        status=row.status,
        customer_id=row.customer_id,
        region=row.region,
        product_category=row.product_category,
        product_id=row.product_id,
        fault_type=row.fault_type,
        appointment_at=row.appointment_at,
        chosen=row.chosen,
        override_reason=row.override_reason,
        dispatched_by=row.dispatched_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        closed_at=row.closed_at,
        cancel_reason=row.cancel_reason,
        feedback=None if feedback is None else feedback_info(feedback),
        settlement=None if settlement is None else settlement_info(settlement, row, outlet_name),
    )


def evaluation_info(row: OutletEvaluation) -> EvaluationInfo:
    return EvaluationInfo(
        row.id, row.outlet_id, row.order_id, row.score, row.comment, row.evaluated_by, row.evaluated_at
    )


def history_entry(row: OutletHistory) -> HistoryEntry:
    changes = json_object(row.changes)
    return HistoryEntry(row.at, row.actor, row.action, changes)
