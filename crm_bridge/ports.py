"""What the CRM offers other packages: how many service records were created, by type and status (the
supervisor's business volume), what the service outlets need of one record (its facts, and moving it along
its lifecycle when a work order is dispatched or done), and the evaluation items calls are scored on (for QA).

Interfaces in plain values: :mod:`crm_bridge.reads` implements them over the CRM's tables and its service records,
and the composition root hands them to the packages that need them. Nothing here imports more than the standard
library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RecordCount:
    """How many service records of one type are in one status now."""

    type: str  # complaint, repair_booking, ... (the CRM's record types)
    status: str  # new, assigned, resolved, ... (the CRM's record statuses)
    count: int


class BusinessVolume(Protocol):
    """The CRM's business volume."""

    async def record_counts(self, start: datetime, end: datetime) -> Sequence[RecordCount]:
        """The service records created in [start, end), counted by type and current status, by type then status."""
        ...


@dataclass(frozen=True, slots=True)
class ServiceRecordFacts:
    """What a work order is dispatched by: the record's type and status, its customer and the customer's region,
    its product with the product's category, the fault and the appointment the caller booked."""

    id: int
    type: str  # repair_booking, installation_booking, ... (the CRM's record types)
    status: str  # new, assigned, in_progress, ... (the CRM's record statuses)
    customer_id: int | None
    region: str | None  # the customer's
    product_id: int | None
    product_category: str | None
    fault_type: str | None
    appointment_at: datetime | None


class LifecycleRefused(Exception):
    """The record's lifecycle does not allow ``action`` from its ``status`` (or the record is gone: status None)."""

    def __init__(self, record_id: int, action: str, status: str | None, allowed_from: Sequence[str]) -> None:
        super().__init__(f"cannot {action} service record {record_id} ({status or 'not found'})")
        self.record_id = record_id
        self.action = action
        self.status = status
        self.allowed_from = tuple(allowed_from)


class ServiceRecordDesk(Protocol):
    """One service record, as the service outlets see it."""

    async def record_facts(self, record_id: int) -> ServiceRecordFacts | None:
        """The record's facts, or None when there is no such record."""
        ...

    async def move(
        self, record_id: int, action: str, *, actor: str, assignee: int | None = None, note: str | None = None
    ) -> str:
        """Moves the record along the CRM's lifecycle (``assign`` needs ``assignee``, a user id; ``start``,
        ``resolve``), kept in its history with ``note``; returns the new status. LifecycleRefused when the
        lifecycle forbids it from the record's status now."""
        ...


@dataclass(frozen=True, slots=True)
class EvaluationItemInfo:
    """One evaluation item: what a visit, a call or an outlet is scored on (1-5); retired when not ``active``."""

    id: int
    name: str
    applies_to: str  # visit, call, outlet
    active: bool
    position: int  # where it is shown among the items of its kind, smallest first


class EvaluationItemCatalog(Protocol):
    """The center's evaluation items, read (they are managed through the CRM's API)."""

    async def evaluation_items(self, applies_to: str) -> Sequence[EvaluationItemInfo]:
        """Every item that scores ``applies_to``, active and retired (scores given on a retired one stay), in the
        order they are shown."""
        ...


@dataclass(frozen=True, slots=True)
class RepairVisitResult:
    """The result of the callback visit made after an outlet finished a repair (work order ``order_id``)."""

    order_id: int
    outcome: str  # reached, not_reached, refused, wrong_number
    satisfaction: int | None  # 1-5, when the customer was reached
    scores: tuple[tuple[int, int], ...]  # (visit evaluation item id, score 1-5)


class RepairVisits(Protocol):
    """What the customers said of the repairs, in the visits after them."""

    async def repair_visit_results(self, start: datetime, end: datetime) -> Sequence[RepairVisitResult]:
        """The results recorded in [start, end) of the visits caused by finished work orders."""
        ...
