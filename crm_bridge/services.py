"""The CRM's logic: customer files and their lookup, service records and their lifecycle, products, the knowledge base.

Every query binds its values; caller input (a caller ID, a typed code, a search) never becomes SQL text. The
lookup by number (a caller ID to the files of every customer owning that number) is three indexed queries in one
session whatever the number of owners: the owners, their numbers and contacts together, and their service records
(the latest ten and the open ones of every owner in one windowed query). It reads Core rows, not ORM objects:
loading objects was most of its cost. The screen-pop reads the same files, and the calls, with the same statements
on the raw driver (crm_bridge.popquery): the async execution path and its round trips were most of a pop's cost.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol, cast

from sqlalchemy import (
    CursorResult,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal_column,
    null,
    or_,
    select,
    table,
    text,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from callcenter.auth.models import User
from callcenter.db import ConstraintViolation, Database, utcnow
from crm_bridge.exceptions import (
    CustomerNotFound,
    InvalidCrmInput,
    InvalidTransition,
    ServiceRecordNotFound,
)
from crm_bridge.models import (
    ACTOR_MAX,
    KB_DOCUMENT_SQL,
    KB_FTS_TABLE,
    NAME_KEY_MAX,
    OPEN_STATUSES,
    TIER_RANK,
    Contact,
    Customer,
    CustomerPhone,
    KbArticle,
    Product,
    RecordStatus,
    ServiceRecord,
    ServiceRecordHistory,
)
from crm_bridge.phones import DEFAULT_RULES, PhoneRules
from crm_bridge.schemas import (
    ContactIn,
    CustomerIn,
    CustomerPatch,
    PhoneIn,
    ServiceRecordIn,
    ServiceRecordQuery,
    TransitionIn,
)

log = logging.getLogger("crm_bridge")

Clock = Callable[[], datetime]

# The screen-pop shows a customer's latest records and their open ones (bounded: a company can have many).
RECENT_RECORDS = 10
OPEN_RECORDS_MAX = 50
# A number shared by more customers than this (a switchboard) pops the best-tier ones.
OWNERS_MAX = 20
SEARCH_WORDS_MAX = 8
SEARCH_WORD_MAX = 64
# The trigram index only helps words of at least three characters; shorter ones are matched by a scan.
TRIGRAM = 3
# What a caller can type as a product code (the flows' input step allows digits and the star).
PRODUCT_CODE = re.compile(r"[0-9*#]{1,32}")
# Tie-breaker between system actors and people in history rows.
SYSTEM_ACTOR = "system"


class AuditLog(Protocol):
    """The audit log of callcenter.auth (AuthService.audit) as the CRM uses it."""

    async def audit(
        self,
        action: str,
        *,
        actor: str | None = None,
        target: str | None = None,
        outcome: str = "success",
        remote: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None: ...


class AuditAction:
    CUSTOMER_CREATED = "customer_created"
    CUSTOMER_UPDATED = "customer_updated"


# -- the lifecycle --------------------------------------------------------------------------------------

S = RecordStatus

# action -> (the statuses it may start from, the status it leads to)
TRANSITIONS: Mapping[str, tuple[frozenset[RecordStatus], RecordStatus]] = {
    "assign": (frozenset({S.NEW, S.ASSIGNED, S.IN_PROGRESS}), S.ASSIGNED),
    "start": (frozenset({S.ASSIGNED}), S.IN_PROGRESS),
    "resolve": (frozenset({S.IN_PROGRESS}), S.RESOLVED),
    "feedback": (frozenset({S.RESOLVED}), S.FEEDBACK_RECORDED),
    "archive": (frozenset({S.RESOLVED, S.FEEDBACK_RECORDED}), S.ARCHIVED),
}


def next_status(action: str, current: str) -> RecordStatus:
    """The status ``action`` leads to from ``current``; InvalidTransition when the lifecycle forbids it."""
    allowed, target = TRANSITIONS[action]
    if current not in allowed:
        raise InvalidTransition(action, current, allowed)
    return target


# -- text helpers ---------------------------------------------------------------------------------------


def name_key(name: str) -> str:
    """What a name is searched by: NFKC, case-folded, the first NAME_KEY_MAX characters."""
    return unicodedata.normalize("NFKC", name).casefold()[:NAME_KEY_MAX]


def _prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (code point order), if any."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop()) + 1
        if 0xD800 <= last <= 0xDFFF:
            last = 0xE000
        if last <= 0x10FFFF:
            return "".join(chars) + chr(last)
    return None


def like_escape(text_: str) -> str:
    """``text_`` with LIKE's wildcards escaped (escape character: backslash), to be wrapped in % by the caller."""
    return text_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_words(query: str) -> list[str]:
    """The distinct words of a search, at most SEARCH_WORDS_MAX of at most SEARCH_WORD_MAX characters each."""
    words: list[str] = []
    for word in query.split():
        word = word[:SEARCH_WORD_MAX]
        if word.casefold() not in (w.casefold() for w in words):
            words.append(word)
        if len(words) == SEARCH_WORDS_MAX:
            break
    return words


def _fts_phrase(word: str) -> str:
    # An FTS5 string: the word as a phrase, its double quotes doubled; nothing in it is query syntax.
    return '"' + word.replace('"', '""') + '"'


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _iso(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


# -- results --------------------------------------------------------------------------------------------


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


def _customer_info(row: Customer | Row[Any], phones: Iterable[PhoneInfo] = ()) -> CustomerInfo:
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
    )


def _record_info(row: ServiceRecord | Row[Any]) -> ServiceRecordInfo:
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
        assigned_to=row.assigned_to,
        created_by=row.created_by,
        caller_number=row.caller_number,
        caller_name=row.caller_name,
        idempotency_key=row.idempotency_key,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _product_info(row: Product) -> ProductInfo:
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


def _history_entry(row: ServiceRecordHistory) -> HistoryEntry:
    changes: dict[str, Any] = {}
    if row.changes:
        try:
            parsed = json.loads(row.changes)
        except ValueError:
            parsed = {"raw": row.changes}
        changes = parsed if isinstance(parsed, dict) else {"value": parsed}
    return HistoryEntry(row.at, row.actor, row.action, row.from_status, row.to_status, changes)


def _tier_order() -> ColumnElement[int]:
    return case(TIER_RANK, value=Customer.tier, else_=len(TIER_RANK))


def _contact_tuple(row: Contact | ContactIn) -> tuple[str, str | None, str | None, str | None]:
    return (row.name, row.role, row.phone, row.email)


_SCALAR_FIELDS = (
    "name",
    "company",
    "tier",
    "address",
    "notes",
    "account_manager",
    "first_contact",
    "last_contact",
    "churn_risk",
)


# -- the screen-pop's statements, built once (their compiled forms are cached) -------------------------------

_CUSTOMERS = cast(Table, Customer.__table__)
_PHONES = cast(Table, CustomerPhone.__table__)
_CONTACTS = cast(Table, Contact.__table__)
_RECORDS = cast(Table, ServiceRecord.__table__)
_CUSTOMER_COLUMNS = [column for column in _CUSTOMERS.c if column.name != "name_key"]
_IDS: BindParameter[list[int]] = bindparam("ids", expanding=True)

# Every customer owning a number, best tier first; the phone index answers the inner query alone.
_OWNERS_BY_KEY = (
    select(*_CUSTOMER_COLUMNS)
    .where(_CUSTOMERS.c.id.in_(select(_PHONES.c.customer_id).where(_PHONES.c.normalized == bindparam("key"))))
    .order_by(case(TIER_RANK, value=_CUSTOMERS.c.tier, else_=len(TIER_RANK)), _CUSTOMERS.c.id)
    .limit(bindparam("limit"))
)

# Numbers and contacts in one round trip: (part, customer_id, id, a, b, c, d).
_PHONES_AND_CONTACTS = union_all(
    select(
        literal_column("'phone'").label("part"),
        _PHONES.c.customer_id,
        _PHONES.c.id,
        _PHONES.c.number.label("a"),
        _PHONES.c.normalized.label("b"),
        _PHONES.c.kind.label("c"),
        null().label("d"),
    ).where(_PHONES.c.customer_id.in_(_IDS)),
    select(
        literal_column("'contact'"),
        _CONTACTS.c.customer_id,
        _CONTACTS.c.id,
        _CONTACTS.c.name,
        _CONTACTS.c.role,
        _CONTACTS.c.phone,
        _CONTACTS.c.email,
    ).where(_CONTACTS.c.customer_id.in_(_IDS)),
).order_by(literal_column("part"), literal_column("id"))


def _records_for_pop() -> Select[Any]:
    """Each customer's latest RECENT_RECORDS records and up to OPEN_RECORDS_MAX open ones, in one query."""
    newest_first = (_RECORDS.c.created_at.desc(), _RECORDS.c.id.desc())
    is_open = case((_RECORDS.c.status.in_([status.value for status in OPEN_STATUSES]), 1), else_=0)
    ranked = (
        select(
            *_RECORDS.c,
            func.row_number().over(partition_by=_RECORDS.c.customer_id, order_by=newest_first).label("rank"),
            func.row_number()
            .over(partition_by=(_RECORDS.c.customer_id, is_open), order_by=newest_first)
            .label("open_rank"),
            is_open.label("is_open"),
        )
        .where(_RECORDS.c.customer_id.in_(_IDS))
        .subquery()
    )
    return (
        select(ranked)
        .where(
            or_(ranked.c.rank <= RECENT_RECORDS, and_(ranked.c.is_open == 1, ranked.c.open_rank <= OPEN_RECORDS_MAX))
        )
        .order_by(ranked.c.created_at.desc(), ranked.c.id.desc())
    )


_RECORDS_FOR_POP = _records_for_pop()


class CrmService:
    def __init__(
        self,
        database: Database,
        *,
        rules: PhoneRules = DEFAULT_RULES,
        audit: AuditLog | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._database = database
        self.rules = rules
        self._audit = audit
        self._clock = clock

    @property
    def database(self) -> Database:
        return self._database

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return aware datetimes")
        return now

    def phone_key(self, raw: str) -> str | None:
        """The lookup key of a written number under the configured rules (None: not a phone number)."""
        return self.rules.normalize(raw)

    # -- customer files ---------------------------------------------------------------------------------

    async def files_by_number(self, number: str, *, limit: int = OWNERS_MAX) -> list[CustomerFile]:
        """The files of every customer owning ``number`` (best tier first); [] for an unknown or junk number."""
        key = self.phone_key(number)
        if key is None:
            return []
        async with self._database.session() as session:
            owners = await session.execute(_OWNERS_BY_KEY, {"key": key, "limit": max(1, min(limit, OWNERS_MAX))})
            return await self._files(session, owners.all())

    async def files_by_name(self, name: str, *, match: str = "prefix", limit: int = 20) -> list[CustomerFile]:
        """Customers whose name starts with (``prefix``, indexed) or contains (``contains``, a scan) ``name``."""
        key = name_key(name)
        if not key:
            return []
        limit = max(1, min(limit, 50))
        if match == "prefix":
            end = _prefix_end(key)
            condition = _CUSTOMERS.c.name_key >= key
            if end is not None:
                condition = and_(condition, _CUSTOMERS.c.name_key < end)
        else:
            condition = _CUSTOMERS.c.name_key.like(f"%{like_escape(key)}%", escape="\\")
        async with self._database.session() as session:
            found = await session.execute(
                select(*_CUSTOMER_COLUMNS)
                .where(condition)
                .order_by(_CUSTOMERS.c.name_key, _CUSTOMERS.c.id)
                .limit(limit)
            )
            return await self._files(session, found.all())

    async def customer_file(self, customer_id: int) -> CustomerFile:
        async with self._database.session() as session:
            found = (await session.execute(select(*_CUSTOMER_COLUMNS).where(_CUSTOMERS.c.id == customer_id))).all()
            if not found:
                raise CustomerNotFound(customer_id)
            (file,) = await self._files(session, found)
            return file

    async def _files(self, session: AsyncSession, customers: Sequence[Customer | Row[Any]]) -> list[CustomerFile]:
        """The files of customers (rows of _CUSTOMER_COLUMNS): two more queries, whatever their number.

        Core rows, not ORM objects: this is the screen-pop's path, and object loading is most of its cost.
        """
        if not customers:
            return []
        ids = [row.id for row in customers]
        phones: dict[int, list[PhoneInfo]] = {}
        contacts: dict[int, list[ContactInfo]] = {}
        for row in await session.execute(_PHONES_AND_CONTACTS, {"ids": ids}):
            if row.part == "phone":
                phones.setdefault(row.customer_id, []).append(PhoneInfo(row.a, row.b, row.c))
            else:
                contacts.setdefault(row.customer_id, []).append(ContactInfo(row.id, row.a, row.b, row.c, row.d))
        recent: dict[int, list[ServiceRecordInfo]] = {}
        open_: dict[int, list[ServiceRecordInfo]] = {}
        for row in await session.execute(_RECORDS_FOR_POP, {"ids": ids}):
            info = _record_info(row)
            customer_id = cast(int, row.customer_id)
            if row.rank <= RECENT_RECORDS:
                recent.setdefault(customer_id, []).append(info)
            if info.is_open and row.open_rank <= OPEN_RECORDS_MAX:
                open_.setdefault(customer_id, []).append(info)
        return [
            CustomerFile(
                customer=_customer_info(row, phones.get(row.id, ())),
                contacts=tuple(contacts.get(row.id, ())),
                recent_records=tuple(recent.get(row.id, ())),
                open_records=tuple(open_.get(row.id, ())),
            )
            for row in customers
        ]

    def _phone_keys(self, phones: Sequence[PhoneIn]) -> list[str]:
        keys: list[str] = []
        for index, phone in enumerate(phones):
            key = self.phone_key(phone.number)
            if key is None:
                raise InvalidCrmInput(f"phones.{index}.number", "not a phone number")
            if key in keys:
                raise InvalidCrmInput(f"phones.{index}.number", "the same number is listed twice")
            keys.append(key)
        return keys

    async def create_customer(
        self, data: CustomerIn, *, actor: str | None = None, remote: str | None = None
    ) -> CustomerFile:
        """A new customer file with its numbers and contacts; audited as customer_created."""
        keys = self._phone_keys(data.phones)
        now = self._now()
        async with self._database.session() as session:
            customer = Customer(
                name=data.name,
                name_key=name_key(data.name),
                company=data.company,
                tier=str(data.tier),
                address=data.address,
                notes=data.notes,
                account_manager=data.account_manager,
                first_contact=data.first_contact,
                last_contact=data.last_contact,
                churn_risk=data.churn_risk,
                created_at=now,
                updated_at=now,
            )
            session.add(customer)
            await session.flush()
            self._add_phones(session, customer.id, data.phones, keys)
            self._add_contacts(session, customer.id, data.contacts)
            await session.flush()
            (created,) = await self._files(session, [customer])
        await self._write_audit(
            AuditAction.CUSTOMER_CREATED,
            actor,
            created.customer.id,
            remote,
            {"name": data.name, "tier": str(data.tier), "phones": [phone.number for phone in data.phones]},
        )
        return created

    def _add_phones(self, session: AsyncSession, customer_id: int, phones: Sequence[PhoneIn], keys: list[str]) -> None:
        session.add_all(
            CustomerPhone(customer_id=customer_id, number=phone.number, normalized=key, kind=str(phone.kind))
            for phone, key in zip(phones, keys, strict=True)
        )

    def _add_contacts(self, session: AsyncSession, customer_id: int, contacts: Sequence[ContactIn]) -> None:
        session.add_all(
            Contact(customer_id=customer_id, name=c.name, role=c.role, phone=c.phone, email=c.email) for c in contacts
        )

    async def update_customer(
        self, customer_id: int, patch: CustomerPatch, *, actor: str | None = None, remote: str | None = None
    ) -> CustomerFile:
        """Applies the fields sent; audited as customer_updated with every change (from, to) when any."""
        sent = patch.model_fields_set
        keys = self._phone_keys(patch.phones) if patch.phones is not None else []
        changes: dict[str, Any] = {}
        async with self._database.session() as session:
            customer = await session.get(Customer, customer_id)
            if customer is None:
                raise CustomerNotFound(customer_id)
            for name in _SCALAR_FIELDS:
                if name not in sent:
                    continue
                new = getattr(patch, name)
                new = str(new) if name == "tier" else new
                old = getattr(customer, name)
                if new != old:
                    changes[name] = {"from": _jsonable(old), "to": _jsonable(new)}
                    setattr(customer, name, new)
            if "name" in changes:
                customer.name_key = name_key(customer.name)
            if patch.phones is not None:
                current = list(
                    await session.scalars(
                        select(CustomerPhone).where(CustomerPhone.customer_id == customer_id).order_by(CustomerPhone.id)
                    )
                )
                before = [(phone.number, phone.kind) for phone in current]
                after = [(phone.number, str(phone.kind)) for phone in patch.phones]
                if before != after:
                    # A statement now, not at flush: the unit of work would insert the new rows before deleting
                    # the old ones and trip over the (customer, number) uniqueness.
                    await session.execute(delete(CustomerPhone).where(CustomerPhone.customer_id == customer_id))
                    self._add_phones(session, customer_id, patch.phones, keys)
                    changes["phones"] = {"from": [n for n, _ in before], "to": [n for n, _ in after]}
            if patch.contacts is not None:
                current_contacts = list(
                    await session.scalars(
                        select(Contact).where(Contact.customer_id == customer_id).order_by(Contact.id)
                    )
                )
                before_contacts = [_contact_tuple(c) for c in current_contacts]
                after_contacts = [_contact_tuple(c) for c in patch.contacts]
                if before_contacts != after_contacts:
                    await session.execute(delete(Contact).where(Contact.customer_id == customer_id))
                    self._add_contacts(session, customer_id, patch.contacts)
                    changes["contacts"] = {
                        "from": [c[0] for c in before_contacts],
                        "to": [c[0] for c in after_contacts],
                    }
            if changes:
                customer.updated_at = self._now()
            await session.flush()
            session.expire_all()
            refreshed = await session.get(Customer, customer_id)
            (updated,) = await self._files(session, [cast(Customer, refreshed)])
        if changes:
            await self._write_audit(AuditAction.CUSTOMER_UPDATED, actor, customer_id, remote, {"changes": changes})
        return updated

    async def _write_audit(
        self, action: str, actor: str | None, customer_id: int, remote: str | None, details: dict[str, Any]
    ) -> None:
        if self._audit is None:
            return
        await self._audit.audit(action, actor=actor, target=f"customer:{customer_id}", remote=remote, details=details)

    async def best_tier(self, number: str) -> str | None:
        """The best tier among the customers owning ``number`` (vip before gold...), or None."""
        key = self.phone_key(number)
        if key is None:
            return None
        async with self._database.session() as session:
            tiers = await session.scalars(
                select(Customer.tier)
                .join(CustomerPhone, CustomerPhone.customer_id == Customer.id)
                .where(CustomerPhone.normalized == key)
            )
            known = [tier for tier in tiers if tier in TIER_RANK]
        return min(known, key=TIER_RANK.__getitem__) if known else None

    async def owners_of(self, number: str, *, limit: int = 2) -> list[int]:
        """Ids of customers owning ``number`` (at most ``limit``)."""
        key = self.phone_key(number)
        if key is None:
            return []
        async with self._database.session() as session:
            return await self._owner_ids(session, key, limit)

    async def _owner_ids(self, session: AsyncSession, key: str, limit: int) -> list[int]:
        rows = await session.scalars(
            select(CustomerPhone.customer_id)
            .where(CustomerPhone.normalized == key)
            .order_by(CustomerPhone.customer_id)
            .limit(limit)
        )
        return list(rows)

    # -- service records --------------------------------------------------------------------------------

    async def create_service_record(self, data: ServiceRecordIn, *, actor: str) -> tuple[ServiceRecordInfo, bool]:
        """The record and True, or, for an idempotency key already written, the existing record and False.

        Without a customer, a caller number owned by exactly one customer links the record to that customer.
        """
        try:
            return await self._create_record(data, actor)
        except ConstraintViolation:
            # Two writers of one idempotency key at once: the other one won; what it wrote is the answer.
            if data.idempotency_key is not None:
                existing = await self.record_by_key(data.idempotency_key)
                if existing is not None:
                    return existing, False
            raise

    async def _create_record(self, data: ServiceRecordIn, actor: str) -> tuple[ServiceRecordInfo, bool]:
        now = self._now()
        who = (actor or SYSTEM_ACTOR)[:ACTOR_MAX]
        async with self._database.session() as session:
            if data.idempotency_key is not None:
                existing = await session.scalar(
                    select(ServiceRecord).where(ServiceRecord.idempotency_key == data.idempotency_key)
                )
                if existing is not None:
                    return _record_info(existing), False
            customer_id = data.customer_id
            if customer_id is not None:
                if await session.get(Customer, customer_id) is None:
                    raise InvalidCrmInput("customer_id", "no customer with this id")
            elif data.caller_number:
                key = self.phone_key(data.caller_number)
                owners = await self._owner_ids(session, key, 2) if key is not None else []
                if len(owners) == 1:
                    customer_id = owners[0]
            record = ServiceRecord(
                customer_id=customer_id,
                linkedid=data.linkedid,
                type=str(data.type),
                status=RecordStatus.NEW.value,
                content=data.content,
                outcome=data.outcome,
                feedback=None,
                follow_up=data.follow_up,
                appointment_at=data.appointment_at,
                assigned_to=None,
                created_by=who,
                caller_number=data.caller_number,
                caller_name=data.caller_name,
                idempotency_key=data.idempotency_key,
                created_at=now,
                updated_at=now,
            )
            session.add(record)
            await session.flush()
            session.add(
                ServiceRecordHistory(
                    record_id=record.id,
                    at=now,
                    actor=who,
                    action="create",
                    from_status=None,
                    to_status=RecordStatus.NEW.value,
                    changes=None,
                )
            )
            return _record_info(record), True

    async def record_by_key(self, idempotency_key: str) -> ServiceRecordInfo | None:
        async with self._database.session() as session:
            row = await session.scalar(select(ServiceRecord).where(ServiceRecord.idempotency_key == idempotency_key))
            return None if row is None else _record_info(row)

    async def service_record(self, record_id: int) -> tuple[ServiceRecordInfo, list[HistoryEntry]]:
        """A record and its history, oldest change first."""
        async with self._database.session() as session:
            row = await session.get(ServiceRecord, record_id)
            if row is None:
                raise ServiceRecordNotFound(record_id)
            history = await session.scalars(
                select(ServiceRecordHistory)
                .where(ServiceRecordHistory.record_id == record_id)
                .order_by(ServiceRecordHistory.at, ServiceRecordHistory.id)
            )
            return _record_info(row), [_history_entry(entry) for entry in history]

    async def transition(self, record_id: int, data: TransitionIn, *, actor: str) -> ServiceRecordInfo:
        """Moves a record along its lifecycle and keeps the change (who, when, from, to, fields) in its history.

        The status is compared and set in one statement: of two agents acting on one record at once, the second
        gets InvalidTransition instead of silently overwriting the first.
        """
        now = self._now()
        who = (actor or SYSTEM_ACTOR)[:ACTOR_MAX]
        async with self._database.session() as session:
            record = await session.get(ServiceRecord, record_id)
            if record is None:
                raise ServiceRecordNotFound(record_id)
            current = record.status
            target = next_status(data.action, current)
            values: dict[str, Any] = {"status": target.value, "updated_at": now}
            changes: dict[str, Any] = {}
            if data.action == "assign":
                if await session.scalar(select(User.id).where(User.id == data.assigned_to)) is None:
                    raise InvalidCrmInput("assigned_to", "no user with this id")
                if record.assigned_to != data.assigned_to:
                    values["assigned_to"] = data.assigned_to
                    changes["assigned_to"] = {"from": record.assigned_to, "to": data.assigned_to}
            for name in ("outcome", "feedback"):
                new = getattr(data, name)
                if new is not None and new != getattr(record, name):
                    values[name] = new
                    changes[name] = {"from": getattr(record, name), "to": new}
            if data.note:
                changes["note"] = data.note
            result = await session.execute(
                update(ServiceRecord)
                .where(ServiceRecord.id == record_id, ServiceRecord.status == current)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if cast("CursorResult[Any]", result).rowcount != 1:
                latest = await session.scalar(select(ServiceRecord.status).where(ServiceRecord.id == record_id))
                raise InvalidTransition(data.action, str(latest), TRANSITIONS[data.action][0])
            session.add(
                ServiceRecordHistory(
                    record_id=record_id,
                    at=now,
                    actor=who,
                    action=data.action,
                    from_status=current,
                    to_status=target.value,
                    changes=json.dumps(changes, ensure_ascii=False, sort_keys=True) if changes else None,
                )
            )
            await session.flush()
            await session.refresh(record)
            return _record_info(record)

    async def list_service_records(self, query: ServiceRecordQuery) -> list[ServiceRecordInfo]:
        conditions: list[ColumnElement[bool]] = []
        if query.customer_id is not None:
            conditions.append(ServiceRecord.customer_id == query.customer_id)
        if query.status is not None:
            conditions.append(ServiceRecord.status == query.status.value)
        if query.linkedid is not None:
            conditions.append(ServiceRecord.linkedid == query.linkedid)
        async with self._database.session() as session:
            rows = await session.scalars(
                select(ServiceRecord)
                .where(*conditions)
                .order_by(ServiceRecord.created_at.desc(), ServiceRecord.id.desc())
                .limit(query.limit)
                .offset(query.offset)
            )
            return [_record_info(row) for row in rows]

    # -- products and the knowledge base ----------------------------------------------------------------

    async def product(self, code: str) -> ProductInfo | None:
        """The product a caller typed the code of; None for an unknown code or anything that is not one."""
        if not isinstance(code, str) or PRODUCT_CODE.fullmatch(code) is None:
            return None
        async with self._database.session() as session:
            row = await session.scalar(select(Product).where(Product.code == code))
            return None if row is None else _product_info(row)

    async def add_article(self, title: str, body: str, tags: Iterable[str] = ()) -> KbArticleInfo:
        now = self._now()
        async with self._database.session() as session:
            article = KbArticle(title=title, body=body, tags=" ".join(tags), created_at=now, updated_at=now)
            session.add(article)
            await session.flush()
            return KbArticleInfo(article.id, article.title, article.body, article.tags, article.updated_at)

    async def search_kb(self, query: str, *, limit: int = 20) -> list[KbArticleInfo]:
        """Articles holding every word of ``query`` (case-insensitive substrings of title, body or tags), articles
        whose title holds the first word first, then the most recently updated."""
        words = search_words(query)
        if not words:
            return []
        # Parenthesised: the same expression as the PostgreSQL index, which must be repeated exactly to be used.
        document: ColumnElement[str] = literal_column(f"({KB_DOCUMENT_SQL})")
        conditions: list[ColumnElement[bool]] = []
        scanned = words
        if self._database.dialect == "sqlite":
            indexed = [word for word in words if len(word) >= TRIGRAM]
            scanned = [word for word in words if len(word) < TRIGRAM]
            if indexed:
                fts = table(KB_FTS_TABLE, literal_column("rowid"))
                matches: Select[tuple[int]] = (
                    select(literal_column("rowid"))
                    .select_from(fts)
                    .where(
                        text(f"{KB_FTS_TABLE} MATCH :fts_query").bindparams(
                            fts_query=" AND ".join(map(_fts_phrase, indexed))
                        )
                    )
                )
                conditions.append(KbArticle.id.in_(matches))
        conditions.extend(document.ilike(f"%{like_escape(word)}%", escape="\\") for word in scanned)
        first = KbArticle.title.ilike(f"%{like_escape(words[0])}%", escape="\\")
        async with self._database.session() as session:
            rows = await session.scalars(
                select(KbArticle)
                .where(*conditions)
                .order_by(case((first, 0), else_=1), KbArticle.updated_at.desc(), KbArticle.id.desc())
                .limit(max(1, min(limit, 50)))
            )
            return [KbArticleInfo(row.id, row.title, row.body, row.tags, row.updated_at) for row in rows]
