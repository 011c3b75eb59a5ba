"""What the outlets' API accepts, validated with pydantic; a bad value is a 400 naming the field.

Text is kept as given; only what no database can store is refused (:mod:`callcenter.web.text`, the CRM's rules
too). A region and a product category are keys orders are matched by: their surrounding blanks are dropped, as the
CRM does with a customer's region.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from callcenter.web.text import AwareTime, Key, Text, not_blank
from outlets import models as m

LONG_TEXT_MAX = 20_000
PAGE_MAX = 500
CATEGORIES_MAX = 50
ID_MAX = 2**31 - 1
# Record ids are 64-bit in PostgreSQL.
BIG_ID_MAX = 2**63 - 1

LongText = Annotated[Text, Field(max_length=LONG_TEXT_MAX)]
Reason = Annotated[Text, Field(min_length=1, max_length=LONG_TEXT_MAX), AfterValidator(not_blank)]
Region = Annotated[Key, Field(min_length=1, max_length=m.REGION_MAX)]
Category = Annotated[Key, Field(min_length=1, max_length=m.CATEGORY_MAX)]
Name = Annotated[Text, Field(min_length=1, max_length=m.NAME_MAX), AfterValidator(not_blank)]
Id = Annotated[int, Field(ge=1, le=ID_MAX)]
BigId = Annotated[int, Field(ge=1, le=BIG_ID_MAX)]


def _distinct(values: list[str]) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutletIn(_Payload):
    name: Name
    region: Region
    categories: Annotated[list[Category], Field(min_length=1, max_length=CATEGORIES_MAX), AfterValidator(_distinct)]
    contact_person: Annotated[Text, Field(max_length=m.PERSON_MAX)] | None = None
    phone: Annotated[Text, Field(max_length=m.PHONE_MAX)] | None = None
    address: Annotated[Text, Field(max_length=m.ADDRESS_MAX)] | None = None
    notes: LongText | None = None


class OutletPatch(_Payload):
    """Changes to an outlet: only the fields sent change; ``categories``, when sent, replaces the list."""

    name: Name | None = None
    region: Region | None = None
    categories: (
        Annotated[list[Category], Field(min_length=1, max_length=CATEGORIES_MAX), AfterValidator(_distinct)] | None
    ) = None
    contact_person: Annotated[Text, Field(max_length=m.PERSON_MAX)] | None = None
    phone: Annotated[Text, Field(max_length=m.PHONE_MAX)] | None = None
    address: Annotated[Text, Field(max_length=m.ADDRESS_MAX)] | None = None
    notes: LongText | None = None

    @field_validator("name", "region", "categories")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Validators run only on fields that were sent: None here is an explicit null.
        if value is None:
            raise ValueError("cannot be null")
        return value


class RetireIn(_Payload):
    reason: LongText | None = None


class DispatchIn(_Payload):
    """A repair or installation booking to dispatch; without ``outlet_id`` the rule chooses the outlet, with it the
    dispatcher overrides the rule and must say why (``override_reason``)."""

    service_record_id: BigId
    outlet_id: Id | None = None
    override_reason: Reason | None = Field(None, validate_default=True)
    # The appointment with the customer; by default the one the record was booked with.
    appointment_at: AwareTime | None = None

    @field_validator("override_reason")
    @classmethod
    def _reason_with_override(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("outlet_id") is not None:
            raise ValueError("naming the outlet overrides the rule: say why")
        if value is not None and info.data.get("outlet_id") is None and "outlet_id" in info.data:
            raise ValueError("only an override (outlet_id) takes a reason")
        return value


class FeedbackIn(_Payload):
    completed_at: AwareTime
    parts_used: LongText | None = None
    fee: Annotated[Decimal, Field(ge=0, le=Decimal("9999999999.99"), max_digits=12, decimal_places=2)] = Decimal(0)
    notes: LongText | None = None


class CancelIn(_Payload):
    reason: Reason


class ReviewIn(_Payload):
    decision: Literal["approve", "reject"]
    reason: LongText | None = Field(None, validate_default=True)

    @field_validator("reason")
    @classmethod
    def _reject_says_why(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("decision") == "reject" and (value is None or not value.strip()):
            raise ValueError("a rejection needs the reason")
        return value


class EvaluationIn(_Payload):
    score: Annotated[int, Field(ge=1, le=5)]
    order_id: BigId | None = None
    comment: LongText | None = None


# -- queries ---------------------------------------------------------------------------------------------


class _Page(_Payload):
    limit: int = Field(50, ge=1, le=PAGE_MAX)
    offset: int = Field(0, ge=0, le=10**9)
    format: Literal["json", "csv"] = "json"


class OutletQuery(_Page):
    region: Region | None = None
    category: Category | None = None
    include_retired: bool = False


class OrderQuery(_Page):
    status: m.OrderStatus | None = None
    outlet_id: Id | None = None
    region: Region | None = None
    service_record_id: BigId | None = None
    kind: m.OrderKind | None = None


class PreviewQuery(_Payload):
    service_record_id: BigId


class SettlementQuery(_Page):
    status: m.SettlementStatus | None = None
    outlet_id: Id | None = None
    region: Region | None = None


class EvaluationQuery(_Payload):
    limit: int = Field(50, ge=1, le=PAGE_MAX)
    offset: int = Field(0, ge=0, le=10**9)
