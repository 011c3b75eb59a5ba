"""Refusals of the service desk (visits, evaluation items, the due list); each says the rule it enforces."""

from __future__ import annotations

from collections.abc import Sequence

from callcenter.web.errors import Conflict, Forbidden, InvalidInput, NotFound


class VisitNotFound(NotFound):
    error_id = "visit_not_found"

    def __init__(self, visit_id: int) -> None:
        super().__init__("no callback visit with this id", {"visit_id": visit_id})


class VisitClosed(Conflict):
    error_id = "visit_closed"

    def __init__(self, visit_id: int, status: str) -> None:
        super().__init__(
            f"the visit is {status}: a visit is placed and its result recorded only while it is open",
            {"visit_id": visit_id, "status": status},
        )


class VisitResultRecorded(Conflict):
    error_id = "visit_result_recorded"

    def __init__(self, visit_id: int) -> None:
        super().__init__("this visit's result is recorded already; a visit has one result", {"visit_id": visit_id})


class VisitWithoutNumber(Conflict):
    error_id = "visit_without_number"

    def __init__(self, visit_id: int) -> None:
        super().__init__(
            "the visit has no number to call: neither the record nor its customer has a phone number",
            {"visit_id": visit_id},
        )


class VisitNumberNotDialable(Conflict):
    error_id = "visit_number_not_dialable"

    def __init__(self, visit_id: int) -> None:
        # The number is caller text: it is not echoed back.
        super().__init__(
            "the visit's number cannot be dialled: a number is 3 to 20 digits, optionally after a +",
            {"visit_id": visit_id},
        )


class NoPhoneToCallFrom(Conflict):
    error_id = "no_seat"

    def __init__(self, username: str) -> None:
        super().__init__(
            "you have no phone extension to call from: a visit rings your own phone first", {"user": username}
        )


class InvalidVisitResult(InvalidInput):
    def __init__(self, field: str, message: str, **details: object) -> None:
        super().__init__(f"{field}: {message}", {"fields": {field: message}, **details})


class UnknownEvaluationItems(InvalidVisitResult):
    def __init__(self, item_ids: Sequence[int]) -> None:
        super().__init__(
            "scores",
            "a visit is scored only on active evaluation items of visits",
            unknown_items=sorted(item_ids),
        )


class EvaluationItemNotFound(NotFound):
    error_id = "evaluation_item_not_found"

    def __init__(self, item_id: int) -> None:
        super().__init__("no evaluation item with this id", {"item_id": item_id})


class EvaluationItemExists(Conflict):
    error_id = "evaluation_item_exists"

    def __init__(self, applies_to: str) -> None:
        super().__init__("an evaluation item of this name exists already for this kind", {"applies_to": applies_to})


class OwnerForbidden(Forbidden):
    def __init__(self) -> None:
        super().__init__(
            "only the service desk (desk.work) sees other people's due records", {"missing": ["desk.work"]}
        )
