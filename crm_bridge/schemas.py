"""What the CRM accepts, validated with pydantic: from the HTTP API, from the flows and from the outbox alike.

A bad value becomes a 400 naming the field. Text is kept as given (markup, quotes, CR/LF and all); only what no
database can store is refused (:mod:`callcenter.web.text`, shared with the outlets).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from enum import StrEnum
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from callcenter.web.text import AwareTime, Key, Text, not_blank, storable
from crm_bridge import models as m

E = TypeVar("E", bound=StrEnum)

# Bounds of free text without a column limit (notes, content): generous, but a request cannot fill the disk.
LONG_TEXT_MAX = 20_000
SEARCH_MAX = 200
PAGE_MAX = 200

Name = Annotated[str, Field(min_length=1, max_length=m.NAME_MAX), AfterValidator(storable), AfterValidator(not_blank)]
Region = Annotated[Key, Field(min_length=1, max_length=m.REGION_MAX)]
FaultType = Annotated[Key, Field(min_length=1, max_length=m.FAULT_TYPE_MAX)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhoneIn(_Payload):
    # Whether it is a phone number at all is the service's to say: it knows the configured numbering rules.
    number: Annotated[Text, Field(min_length=1, max_length=m.NUMBER_MAX)]
    kind: m.PhoneKind = m.PhoneKind.MOBILE


class ContactIn(_Payload):
    name: Name
    role: Annotated[Text, Field(max_length=m.ROLE_TEXT_MAX)] | None = None
    phone: Annotated[Text, Field(max_length=m.NUMBER_MAX)] | None = None
    email: Annotated[Text, Field(max_length=m.EMAIL_MAX)] | None = None


class CustomerIn(_Payload):
    """A new customer file (e.g. from the form an unknown caller's screen-pop offers)."""

    name: Name
    company: Annotated[Text, Field(max_length=m.COMPANY_MAX)] | None = None
    tier: m.Tier = m.Tier.STANDARD
    address: Annotated[Text, Field(max_length=m.ADDRESS_MAX)] | None = None
    notes: Annotated[Text, Field(max_length=LONG_TEXT_MAX)] | None = None
    account_manager: Annotated[Text, Field(max_length=m.PERSON_MAX)] | None = None
    first_contact: AwareTime | None = None
    last_contact: AwareTime | None = None
    churn_risk: bool = False
    region: Region | None = None
    phones: list[PhoneIn] = Field(default_factory=list, max_length=20)
    contacts: list[ContactIn] = Field(default_factory=list, max_length=50)


class CustomerPatch(_Payload):
    """Changes to a customer file: only the fields sent change; phones and contacts, when sent, replace the lists."""

    name: Name | None = None
    company: Annotated[Text, Field(max_length=m.COMPANY_MAX)] | None = None
    tier: m.Tier | None = None
    address: Annotated[Text, Field(max_length=m.ADDRESS_MAX)] | None = None
    notes: Annotated[Text, Field(max_length=LONG_TEXT_MAX)] | None = None
    account_manager: Annotated[Text, Field(max_length=m.PERSON_MAX)] | None = None
    first_contact: AwareTime | None = None
    last_contact: AwareTime | None = None
    churn_risk: bool | None = None
    region: Region | None = None
    phones: list[PhoneIn] | None = Field(None, max_length=20)
    contacts: list[ContactIn] | None = Field(None, max_length=50)

    @field_validator("name", "tier", "churn_risk", "phones", "contacts")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Validators run only on fields that were sent: None here is an explicit null.
        if value is None:
            raise ValueError("cannot be null")
        return value


IdempotencyKey = Annotated[str, Field(min_length=1, max_length=m.IDEMPOTENCY_KEY_MAX, pattern=r"^[!-~]+$")]


class ServiceRecordIn(_Payload):
    """A new service record; it starts as ``new``. With an idempotency key, writing it twice writes it once."""

    type: m.RecordType
    content: Annotated[Text, Field(max_length=LONG_TEXT_MAX)] = ""
    customer_id: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    linkedid: Annotated[Text, Field(min_length=1, max_length=m.LINKEDID_MAX)] | None = None
    outcome: Annotated[Text, Field(max_length=LONG_TEXT_MAX)] | None = None
    follow_up: date | None = None
    appointment_at: AwareTime | None = None
    product_id: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    fault_type: FaultType | None = None
    caller_number: Annotated[Text, Field(max_length=m.CALLER_NUMBER_MAX)] | None = None
    caller_name: Annotated[Text, Field(max_length=m.NAME_MAX)] | None = None
    idempotency_key: IdempotencyKey | None = None


class ServiceRecordPatch(_Payload):
    """What the desk completes on a record after the call: the product it is about and the fault's code (null
    clears one). Only the fields sent change; the content, type and status are the record's history."""

    product_id: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    fault_type: FaultType | None = None


TransitionAction = Literal["assign", "start", "resolve", "feedback", "archive"]


class TransitionIn(_Payload):
    action: TransitionAction
    assigned_to: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = Field(None, validate_default=True)
    outcome: Annotated[Text, Field(max_length=LONG_TEXT_MAX)] | None = None
    feedback: Annotated[Text, Field(min_length=1, max_length=LONG_TEXT_MAX)] | None = Field(None, validate_default=True)
    note: Annotated[Text, Field(max_length=LONG_TEXT_MAX)] | None = None

    @field_validator("assigned_to")
    @classmethod
    def _assignee(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None and info.data.get("action") == "assign":
            raise ValueError("assign needs the user id to assign the record to")
        return value

    @field_validator("feedback")
    @classmethod
    def _feedback(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("action") == "feedback":
            raise ValueError("feedback needs the customer's feedback")
        return value


# -- queries ---------------------------------------------------------------------------------------------


class CustomerQuery(_Payload):
    name: Annotated[Text, Field(min_length=1, max_length=SEARCH_MAX)] | None = None
    # Any text: a caller ID as Asterisk gave it; what is not a phone number finds nobody.
    number: Annotated[str, Field(min_length=1, max_length=SEARCH_MAX)] | None = Field(None, validate_default=True)
    match: Literal["prefix", "contains"] = "prefix"
    limit: int = Field(20, ge=1, le=50)

    @field_validator("number")
    @classmethod
    def _number_or_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("name") is None:
            raise ValueError("give number or name")
        return value


class KbQuery(_Payload):
    q: Annotated[Text, Field(min_length=1, max_length=SEARCH_MAX), AfterValidator(not_blank)]
    limit: int = Field(20, ge=1, le=50)


def _several(kind: type[E]) -> Callable[[object], object]:
    """A query's list of ``kind`` as sent: the parameter repeated, or its values comma-separated in one (or both);
    an unknown value is refused under the parameter's own name."""

    def parse(value: object) -> object:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            return value
        found: list[E] = []
        for item in value:
            for part in item.split(",") if isinstance(item, str) else [item]:
                try:
                    found.append(kind(part.strip() if isinstance(part, str) else part))
                except ValueError:
                    allowed = ", ".join(member.value for member in kind)
                    raise ValueError(f"{str(part)[:40]!r} is not one of {allowed}") from None
        return found

    return parse


RecordTypes = Annotated[
    list[m.RecordType], BeforeValidator(_several(m.RecordType)), Field(min_length=1, max_length=len(m.RecordType))
]
RecordStatuses = Annotated[
    list[m.RecordStatus], BeforeValidator(_several(m.RecordStatus)), Field(min_length=1, max_length=len(m.RecordStatus))
]
# The orders of a list of records: the newest first by default; the others oldest (or soonest) first, empty last.
RecordSort = Literal["created_at", "-created_at", "follow_up", "appointment_at", "updated_at"]


class ServiceRecordQuery(_Payload):
    """A page of service records, as a work queue asks for them: every filter given must hold."""

    customer_id: int | None = Field(None, ge=1, le=2**31 - 1)
    # One status or several (``status=new,assigned`` or ``status=new&status=assigned``).
    status: RecordStatuses | None = None
    type: RecordTypes | None = None
    # Whose: a user id, "me" (the caller) or "none" (nobody's yet).
    assigned_to: Annotated[str, Field(pattern=r"^(me|none|[1-9][0-9]{0,9})$")] | None = None
    # Due: a follow-up date today or earlier or an appointment within the desk's lead time; overdue: the desk's
    # overdue rule (crm_bridge.desk), both of open records only.
    due: Literal["due", "overdue"] | None = None
    linkedid: Annotated[str, Field(min_length=1, max_length=m.LINKEDID_MAX)] | None = None
    sort: RecordSort = "-created_at"
    limit: int = Field(50, ge=1, le=PAGE_MAX)
    offset: int = Field(0, ge=0, le=10**9)

    @field_validator("assigned_to")
    @classmethod
    def _user_id(cls, value: str | None) -> str | None:
        if value is not None and value.isdigit() and int(value) > 2**31 - 1:
            raise ValueError("no user has this id")
        return value
