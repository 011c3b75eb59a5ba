"""A customer's file, as the API and the screen-pop show it, and how it is read: three indexed statements.

A file is the profile with its numbers, the contacts, the latest service records and the open ones. The lookup by
number (a caller ID to the files of every customer owning that number) is three queries in one session whatever
the number of owners: the owners, their numbers and contacts together, and their service records (the latest ten
and the open ones of every owner in one windowed query). It reads Core rows, not ORM objects: loading objects was
most of its cost. The screen-pop reads the same files, with the same limits, on the raw driver
(crm_bridge.popquery), which is why the limits live here, beside the statements they shape, rather than in the
customer service that uses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    Row,
    Select,
    Table,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter

from crm_bridge.infos import ContactInfo, CustomerFile, PhoneInfo, ServiceRecordInfo, customer_info, record_info
from crm_bridge.models import OPEN_STATUSES, TIER_RANK, Contact, Customer, CustomerPhone, ServiceRecord

# A file shows a customer's latest records and their open ones (bounded: a company can have many).
RECENT_RECORDS = 10
OPEN_RECORDS_MAX = 50
# A number shared by more customers than this (a switchboard) pops the best-tier ones.
OWNERS_MAX = 20

# The statements are built once: their compiled forms are cached.
CUSTOMERS = cast(Table, Customer.__table__)
_PHONES = cast(Table, CustomerPhone.__table__)
_CONTACTS = cast(Table, Contact.__table__)
_RECORDS = cast(Table, ServiceRecord.__table__)
# What read_files takes a customer row as (the name key is for searching, not for showing).
CUSTOMER_COLUMNS = [column for column in CUSTOMERS.c if column.name != "name_key"]
_IDS: BindParameter[list[int]] = bindparam("ids", expanding=True)

# Every customer owning a number key (``key``), best tier first, at most ``limit``; the phone index answers the
# inner query alone.
OWNERS_BY_KEY = (
    select(*CUSTOMER_COLUMNS)
    .where(CUSTOMERS.c.id.in_(select(_PHONES.c.customer_id).where(_PHONES.c.normalized == bindparam("key"))))
    .order_by(case(TIER_RANK, value=CUSTOMERS.c.tier, else_=len(TIER_RANK)), CUSTOMERS.c.id)
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


def _records_of_files() -> Select[Any]:
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


_RECORDS_OF_FILES = _records_of_files()


async def read_files(session: AsyncSession, customers: Sequence[Customer | Row[Any]]) -> list[CustomerFile]:
    """The files of customers (ORM objects or rows of CUSTOMER_COLUMNS), in their order: two more queries,
    whatever their number."""
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
    for row in await session.execute(_RECORDS_OF_FILES, {"ids": ids}):
        info = record_info(row)
        customer_id = cast(int, row.customer_id)
        if row.rank <= RECENT_RECORDS:
            recent.setdefault(customer_id, []).append(info)
        if info.is_open and row.open_rank <= OPEN_RECORDS_MAX:
            open_.setdefault(customer_id, []).append(info)
    return [
        CustomerFile(
            customer=customer_info(row, phones.get(row.id, ())),
            contacts=tuple(contacts.get(row.id, ())),
            recent_records=tuple(recent.get(row.id, ())),
            open_records=tuple(open_.get(row.id, ())),
        )
        for row in customers
    ]
