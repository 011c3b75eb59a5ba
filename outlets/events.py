"""What the service outlets publish on the bus (subscribe by class; docs/events.md lists the subscribers)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WorkOrderDispatched:
    """A repair or installation booking became a work order at an outlet (``chosen``: auto or override)."""

    order_id: int
    service_record_id: int
    customer_id: int | None
    outlet_id: int
    kind: str
    chosen: str


@dataclass(frozen=True, slots=True)
class WorkOrderDone:
    """The outlet's feedback was registered: the order is done (the callback visit after a repair follows it)."""

    order_id: int
    service_record_id: int
    customer_id: int | None
    outlet_id: int


@dataclass(frozen=True, slots=True)
class WorkOrderCancelled:
    """An open work order was cancelled, with the reason."""

    order_id: int
    service_record_id: int
    outlet_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class FeeReviewed:
    """An order's fee settlement was approved or rejected (``decision``); ``amount`` as exact decimal text."""

    settlement_id: int
    order_id: int
    outlet_id: int
    decision: str
    amount: str
