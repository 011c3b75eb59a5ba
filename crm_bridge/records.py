"""Service records: writing one once (its idempotency key), moving it along its lifecycle, its history, listing.

A record's lifecycle is the table TRANSITIONS (action -> the statuses it may start from, the status it leads to);
every move is kept in the record's history with who, when, from, to and the fields it changed. Records come from
agents (the API, through the outbox) and from calls (crm_bridge.from_calls, the IVR's voicemail): an idempotency
key makes a second write of the same record, by a retry or a replay of the outbox, return the first one. A record
written without a customer is filed under the caller's number's one owner, which is the only thing records ask of
the customers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Select, select, update
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression

from callcenter.auth.directory import UserDirectory
from callcenter.db import ConstraintViolation, Database, utcnow
from crm_bridge.customers import Customers, owner_ids
from crm_bridge.exceptions import InvalidCrmInput, InvalidTransition, ServiceRecordNotFound
from crm_bridge.infos import HistoryEntry, ServiceRecordInfo, history_entry, record_info
from crm_bridge.models import ACTOR_MAX, Customer, Product, RecordStatus, ServiceRecord, ServiceRecordHistory
from crm_bridge.schemas import ServiceRecordIn, ServiceRecordPatch, ServiceRecordQuery, TransitionIn

# Who history rows name when no person acted.
SYSTEM_ACTOR = "system"

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


class ServiceRecords:
    def __init__(
        self,
        database: Database,
        customers: Customers,
        *,
        users: UserDirectory | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``users``: who may be assigned a record (the core's user directory; by default over ``database``)."""
        self._database = database
        self._customers = customers
        self._users = users or UserDirectory(database)
        self._clock = clock

    async def create(self, data: ServiceRecordIn, *, actor: str) -> tuple[ServiceRecordInfo, bool]:
        """The record and True, or, for an idempotency key already written, the existing record and False.

        Without a customer, a caller number owned by exactly one customer links the record to that customer.
        """
        try:
            return await self._create(data, actor)
        except ConstraintViolation:
            # Two writers of one idempotency key at once: the other one won; what it wrote is the answer.
            if data.idempotency_key is not None:
                existing = await self.by_key(data.idempotency_key)
                if existing is not None:
                    return existing, False
            raise

    async def _create(self, data: ServiceRecordIn, actor: str) -> tuple[ServiceRecordInfo, bool]:
        now = self._clock()
        who = (actor or SYSTEM_ACTOR)[:ACTOR_MAX]
        async with self._database.session() as session:
            if data.idempotency_key is not None:
                existing = await session.scalar(
                    select(ServiceRecord).where(ServiceRecord.idempotency_key == data.idempotency_key)
                )
                if existing is not None:
                    return record_info(existing), False
            customer_id = data.customer_id
            if customer_id is not None:
                if await session.get(Customer, customer_id) is None:
                    raise InvalidCrmInput("customer_id", "no customer with this id")
            elif data.caller_number:
                key = self._customers.phone_key(data.caller_number)
                owners = await owner_ids(session, key, 2) if key is not None else []
                if len(owners) == 1:
                    customer_id = owners[0]
            if data.product_id is not None and await session.get(Product, data.product_id) is None:
                raise InvalidCrmInput("product_id", "no product with this id")
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
                product_id=data.product_id,
                fault_type=data.fault_type,
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
            return record_info(record), True

    async def by_key(self, idempotency_key: str) -> ServiceRecordInfo | None:
        """The record written with ``idempotency_key``, if any."""
        async with self._database.session() as session:
            row = await session.scalar(select(ServiceRecord).where(ServiceRecord.idempotency_key == idempotency_key))
            return None if row is None else record_info(row)

    async def get(self, record_id: int) -> tuple[ServiceRecordInfo, list[HistoryEntry]]:
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
            return record_info(row), [history_entry(entry) for entry in history]

    async def transition(self, record_id: int, data: TransitionIn, *, actor: str) -> ServiceRecordInfo:
        """Moves a record along its lifecycle and keeps the change (who, when, from, to, fields) in its history.

        The status is compared and set in one statement: of two agents acting on one record at once, the second
        gets InvalidTransition instead of silently overwriting the first.
        """
        now = self._clock()
        who = (actor or SYSTEM_ACTOR)[:ACTOR_MAX]
        # Asked before the record's session opens (one connection at a time per transition), judged in it.
        assignee_known = data.assigned_to is not None and data.assigned_to in await self._users.users(
            [data.assigned_to] if data.action == "assign" else []
        )
        async with self._database.session() as session:
            record = await session.get(ServiceRecord, record_id)
            if record is None:
                raise ServiceRecordNotFound(record_id)
            current = record.status
            target = next_status(data.action, current)
            values: dict[str, Any] = {"status": target.value, "updated_at": now}
            changes: dict[str, Any] = {}
            if data.action == "assign":
                if not assignee_known:
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
            return record_info(record)

    async def update(self, record_id: int, patch: ServiceRecordPatch, *, actor: str) -> ServiceRecordInfo:
        """Sets the fields sent (the product, the fault type), kept in the record's history as an ``update`` that
        leaves the status as it is; nothing is kept when nothing changes."""
        now = self._clock()
        who = (actor or SYSTEM_ACTOR)[:ACTOR_MAX]
        async with self._database.session() as session:
            # The record's row is held first (a write that changes nothing): a change made at the same moment
            # waits, and this one starts from what that one left, its history's "from" included.
            held = await session.execute(
                update(ServiceRecord)
                .where(ServiceRecord.id == record_id)
                .values(updated_at=ServiceRecord.updated_at)
                .execution_options(synchronize_session=False)
            )
            record = await session.get(ServiceRecord, record_id)
            if record is None or cast("CursorResult[Any]", held).rowcount != 1:
                raise ServiceRecordNotFound(record_id)
            if patch.product_id is not None and await session.get(Product, patch.product_id) is None:
                raise InvalidCrmInput("product_id", "no product with this id")
            changes: dict[str, Any] = {}
            for name in ("product_id", "fault_type"):
                new = getattr(patch, name)
                if name in patch.model_fields_set and new != getattr(record, name):
                    changes[name] = {"from": getattr(record, name), "to": new}
                    setattr(record, name, new)
            if changes:
                record.updated_at = now
                session.add(
                    ServiceRecordHistory(
                        record_id=record_id,
                        at=now,
                        actor=who,
                        action="update",
                        from_status=record.status,
                        to_status=record.status,
                        changes=json.dumps(changes, ensure_ascii=False, sort_keys=True),
                    )
                )
            await session.flush()
            return record_info(record)

    async def find(self, query: ServiceRecordQuery, *, me: int | None = None) -> list[ServiceRecordInfo]:
        """One page of records as ``query`` asks (``me``: the user ``assigned_to=me`` names). Its ``due`` filter
        needs the desk's rules: :class:`crm_bridge.record_queue.RecordQueue` answers it."""
        if query.due is not None:
            raise ValueError("the due filter is the desk's: ask crm_bridge.record_queue.RecordQueue")
        async with self._database.session() as session:
            rows = (await session.execute(listing(query, me=me))).all()
            return [record_info(record) for record, _ in rows]


_ORDERS: Mapping[str, tuple[UnaryExpression[Any], ...]] = {
    "-created_at": (ServiceRecord.created_at.desc(), ServiceRecord.id.desc()),
    "created_at": (ServiceRecord.created_at.asc(), ServiceRecord.id.asc()),
    # NULLS LAST spelled out: the two engines put them at opposite ends by default.
    "follow_up": (ServiceRecord.follow_up.asc().nulls_last(), ServiceRecord.id.asc()),
    "appointment_at": (ServiceRecord.appointment_at.asc().nulls_last(), ServiceRecord.id.asc()),
    "updated_at": (ServiceRecord.updated_at.asc(), ServiceRecord.id.asc()),
}


def listing(
    query: ServiceRecordQuery, *, me: int | None, also: Sequence[ColumnElement[bool]] = ()
) -> Select[ServiceRecord, str]:
    """The statement of one page of records with their customer's name (one outer join), in the query's order;
    ``also``: conditions of the caller's (the desk's due rule)."""
    conditions: list[ColumnElement[bool]] = list(also)
    if query.customer_id is not None:
        conditions.append(ServiceRecord.customer_id == query.customer_id)
    if query.status is not None:
        conditions.append(ServiceRecord.status.in_(sorted({status.value for status in query.status})))
    if query.type is not None:
        conditions.append(ServiceRecord.type.in_(sorted({kind.value for kind in query.type})))
    if query.assigned_to == "none":
        conditions.append(ServiceRecord.assigned_to.is_(None))
    elif query.assigned_to == "me":
        if me is None:
            raise ValueError("assigned_to=me needs the caller's user id")
        conditions.append(ServiceRecord.assigned_to == me)
    elif query.assigned_to is not None:
        conditions.append(ServiceRecord.assigned_to == int(query.assigned_to))
    if query.linkedid is not None:
        conditions.append(ServiceRecord.linkedid == query.linkedid)
    return (
        select(ServiceRecord, Customer.name)
        .outerjoin(Customer, Customer.id == ServiceRecord.customer_id)
        .where(*conditions)
        .order_by(*_ORDERS[query.sort])
        .limit(query.limit)
        .offset(query.offset)
    )
