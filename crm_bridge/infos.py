"""What the CRM gives back: the *Info value types the API serialises, and the converters from table rows to them.

Apart from the parts that read and write (customers, records, knowledge) because every part returns them and
the screen-pop's own read path (crm_bridge.popquery) builds the same ones from raw driver rows: a value type
that lived in one part would make the others, and the pop, import that part for its name. Frozen dataclasses,
each with ``as_json`` giving exactly what the HTTP API and the websocket send.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row

from callcenter.db import json_object
from crm_bridge.models import OPEN_STATUSES, Customer, KbArticle, Product, ServiceRecord, ServiceRecordHistory


def _iso(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True, slots=True)
class PhoneInfo:
    number: str
    normalized: str
    kind: str

    def as_json(self) -> dict[str, Any]:
        return {"number": self.number, "normalized": self.normalized, "kind": self.kind}


@dataclass(frozen=True, slots=True)
class ContactInfo:
    id: int
    name: str
    role: str | None
    phone: str | None
    email: str | None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role, "phone": self.phone, "email": self.email}


@dataclass(frozen=True, slots=True)
class CustomerInfo:
    id: int
    name: str
    company: str | None
    tier: str
    address: str | None
    notes: str | None
    account_manager: str | None
    first_contact: datetime | None
    last_contact: datetime | None
    churn_risk: bool
    created_at: datetime
    updated_at: datetime
    phones: tuple[PhoneInfo, ...] = ()
    region: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "company": self.company,
            "tier": self.tier,
            "address": self.address,
            "notes": self.notes,
            "account_manager": self.account_manager,
            "first_contact": _iso(self.first_contact),
            "last_contact": _iso(self.last_contact),
            "churn_risk": self.churn_risk,
            "region": self.region,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "phones": [phone.as_json() for phone in self.phones],
        }


@dataclass(frozen=True, slots=True)
class ServiceRecordInfo:
    id: int
    customer_id: int | None
    linkedid: str | None
    type: str
    status: str
    content: str
    outcome: str | None
    feedback: str | None
    follow_up: date | None
    appointment_at: datetime | None
    assigned_to: int | None
    created_by: str
    caller_number: str | None
    caller_name: str | None
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    product_id: int | None = None
    fault_type: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "linkedid": self.linkedid,
            "type": self.type,
            "status": self.status,
            "content": self.content,
            "outcome": self.outcome,
            "feedback": self.feedback,
            "follow_up": _iso(self.follow_up),
            "appointment_at": _iso(self.appointment_at),
            "product_id": self.product_id,
            "fault_type": self.fault_type,
            "assigned_to": self.assigned_to,
            "created_by": self.created_by,
            "caller_number": self.caller_number,
            "caller_name": self.caller_name,
            "idempotency_key": self.idempotency_key,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str
    changes: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "from_status": self.from_status,
            "to_status": self.to_status,
            "changes": self.changes,
        }


@dataclass(frozen=True, slots=True)
class CustomerFile:
    """What the screen-pop shows: the profile with its numbers, the contacts, the latest and the open records."""

    customer: CustomerInfo
    contacts: tuple[ContactInfo, ...] = ()
    recent_records: tuple[ServiceRecordInfo, ...] = ()
    open_records: tuple[ServiceRecordInfo, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer.as_json(),
            "contacts": [contact.as_json() for contact in self.contacts],
            "recent_records": [record.as_json() for record in self.recent_records],
            "open_records": [record.as_json() for record in self.open_records],
        }


@dataclass(frozen=True, slots=True)
class ProductInfo:
    code: str
    name: str
    category: str
    price: Decimal
    availability: str
    description: str | None
    spoken: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "category": self.category,
            # A string: JSON numbers would lose the exact amount in some clients.
            "price": str(self.price),
            "availability": self.availability,
            "description": self.description,
            "spoken": dict(self.spoken),
        }


@dataclass(frozen=True, slots=True)
class KbArticleInfo:
    id: int
    title: str
    body: str
    tags: str
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "tags": self.tags.split(),
            "updated_at": self.updated_at.isoformat(),
        }


def customer_info(row: Customer | Row[Any], phones: Iterable[PhoneInfo] = ()) -> CustomerInfo:
    return CustomerInfo(
        id=row.id,
        name=row.name,
        company=row.company,
        tier=row.tier,
        address=row.address,
        notes=row.notes,
        account_manager=row.account_manager,
        first_contact=row.first_contact,
        last_contact=row.last_contact,
        churn_risk=row.churn_risk,
        created_at=row.created_at,
        updated_at=row.updated_at,
        phones=tuple(phones),
        region=row.region,
    )


def record_info(row: ServiceRecord | Row[Any]) -> ServiceRecordInfo:
    return ServiceRecordInfo(
        id=row.id,
        customer_id=row.customer_id,
        linkedid=row.linkedid,
        type=row.type,
        status=row.status,
        content=row.content,
        outcome=row.outcome,
        feedback=row.feedback,
        follow_up=row.follow_up,
        appointment_at=row.appointment_at,
        product_id=row.product_id,
        fault_type=row.fault_type,
        assigned_to=row.assigned_to,
        created_by=row.created_by,
        caller_number=row.caller_number,
        caller_name=row.caller_name,
        idempotency_key=row.idempotency_key,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def product_info(row: Product) -> ProductInfo:
    spoken = {lang: words for lang, words in (("en", row.spoken_en), ("zh", row.spoken_zh)) if words}
    return ProductInfo(
        code=row.code,
        name=row.name,
        category=row.category,
        price=row.price,
        availability=row.availability,
        description=row.description,
        spoken=spoken,
    )


def article_info(row: KbArticle) -> KbArticleInfo:
    return KbArticleInfo(row.id, row.title, row.body, row.tags, row.updated_at)


def history_entry(row: ServiceRecordHistory) -> HistoryEntry:
    changes = json_object(row.changes)
    return HistoryEntry(row.at, row.actor, row.action, row.from_status, row.to_status, changes)
