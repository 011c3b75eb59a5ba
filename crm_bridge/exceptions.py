"""Errors of the CRM API; each is an ApiError, so error_middleware renders it with its status and id."""

from __future__ import annotations

from collections.abc import Iterable

from callcenter.web.errors import ApiError, Conflict, InvalidInput, NotFound


class InvalidCrmInput(InvalidInput):
    """A value the payload's schema let through but the CRM refuses (an unknown customer, not a phone number)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", {"fields": {field: message}})
        self.field = field


class CustomerNotFound(NotFound):
    error_id = "customer_not_found"

    def __init__(self, customer_id: int) -> None:
        super().__init__("no customer with this id", {"customer_id": customer_id})


class ServiceRecordNotFound(NotFound):
    error_id = "service_record_not_found"

    def __init__(self, record_id: int) -> None:
        super().__init__("no service record with this id", {"record_id": record_id})


class ProductNotFound(NotFound):
    error_id = "product_not_found"

    def __init__(self) -> None:
        # The code is caller input: it is not echoed back.
        super().__init__("no product with this code")


class InvalidTransition(Conflict):
    error_id = "invalid_transition"

    def __init__(self, action: str, status: str, allowed_from: Iterable[str]) -> None:
        allowed = sorted(allowed_from)
        super().__init__(
            f"cannot {action} a service record that is {status}",
            {"action": action, "status": status, "allowed_from": allowed},
        )


class SeedRefused(Exception):
    """The database already holds customers and the seed was not forced."""


class OutboxError(ApiError):
    status = 503
    error_id = "outbox_unavailable"
