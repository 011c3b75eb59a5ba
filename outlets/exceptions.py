"""Errors of the outlets' API. Each refused rule is a 409 whose id is the rule's code (also in ``details.code``),
with what the rule looked at in ``details``; error_middleware renders them."""

from __future__ import annotations

from typing import Any

from callcenter.web.errors import Conflict, InvalidInput, NotFound


class OutletNotFound(NotFound):
    error_id = "outlet_not_found"

    def __init__(self, outlet_id: int) -> None:
        super().__init__("no service outlet with this id", {"outlet_id": outlet_id})


class WorkOrderNotFound(NotFound):
    error_id = "work_order_not_found"

    def __init__(self, order_id: int) -> None:
        super().__init__("no work order with this id", {"order_id": order_id})


class SettlementNotFound(NotFound):
    error_id = "fee_settlement_not_found"

    def __init__(self, settlement_id: int) -> None:
        super().__init__("no fee settlement with this id", {"settlement_id": settlement_id})


class RecordNotFound(NotFound):
    error_id = "service_record_not_found"

    def __init__(self, record_id: int) -> None:
        super().__init__("no service record with this id", {"service_record_id": record_id})


class InvalidOutletInput(InvalidInput):
    """A value the schema let through but a rule refuses (an evaluation's order of another outlet)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", {"fields": {field: message}})


class RuleRefused(Conflict):
    """A refused transition or dispatch: the id names the rule; the message says why in words."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message, {"code": code, **details})
        self.error_id = code
        self.code = code
