"""Callback visits (用户回访) and the evaluation items they are scored on.

A visit is a ``callback_visit`` service record. Why it exists is in its idempotency key, which also makes it one per
cause: ``abandoned:<linkedid>`` (a caller gave up in the queue, crm_bridge.from_calls), ``expert-callback:<handoff>``
(nobody took an expert handoff and the caller asked to be called back), ``visit:complaint:<record id>`` (a complaint
was resolved: did the customer agree?) and ``visit:repair:<order id>`` (an outlet finished a repair). Visits made by
hand have no cause but "other".

The desk places a visit's call from the placing user's own phone through the calls' port (:class:`Callbacks`:
the existing callback, recorded in full by the dialplan) and records one result per visit: the outcome, the
customer's satisfaction (1-5) and a score per evaluation item, kept in ``visit_results``/``visit_scores`` while the
record moves to ``feedback_recorded`` with its history, all in one transaction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import CursorResult, String, and_, exists, func, literal, not_, or_, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from callcenter.db import ConstraintViolation, Database, DatabaseError, utcnow
from callcenter.web.errors import Unavailable
from calls.ports import Callbacks, PlacedCallback
from crm_bridge.models import (
    CALLER_NUMBER_MAX,
    NAME_MAX,
    OPEN_STATUSES,
    Customer,
    CustomerPhone,
    RecordStatus,
    RecordType,
    ServiceRecord,
    ServiceRecordHistory,
)
from crm_bridge.records import ServiceRecords
from crm_bridge.schemas import ServiceRecordIn
from crm_bridge.visit_errors import (
    EvaluationItemExists,
    EvaluationItemNotFound,
    InvalidVisitResult,
    NoPhoneToCallFrom,
    UnknownEvaluationItems,
    VisitClosed,
    VisitNotFound,
    VisitNumberNotDialable,
    VisitResultRecorded,
    VisitWithoutNumber,
)
from crm_bridge.visit_models import (
    ACTOR_MAX,
    AppliesTo,
    EvaluationItem,
    VisitCall,
    VisitOutcome,
    VisitResult,
    VisitScore,
)
from crm_bridge.visit_schemas import (
    EvaluationItemIn,
    EvaluationItemPatch,
    EvaluationItemQuery,
    VisitQuery,
    VisitResultIn,
)

SYSTEM_ACTOR = "system"

# Idempotency-key prefix -> the cause a visit is listed with.
CAUSES: tuple[tuple[str, str], ...] = (
    ("abandoned:", "abandoned_call"),
    ("expert-callback:", "expert_callback"),
    ("visit:complaint:", "complaint"),
    ("visit:repair:", "repair"),
)
COMPLAINT_KEY = "visit:complaint:"
REPAIR_KEY = "visit:repair:"

# Statuses a visit is still to be made in; its result moves it on to feedback_recorded.
_OPEN = tuple(status.value for status in OPEN_STATUSES)
_RESULT_FROM = (*_OPEN, RecordStatus.RESOLVED.value)
IN_PROGRESS = RecordStatus.IN_PROGRESS.value

# What Asterisk's Dial is given: digits after an optional + (as calls.callbacks checks; checked here first so that
# a visit with a caller ID that is no number is refused as the visit's fault, not the user's input).
_DIALABLE = re.compile(r"^\+?[0-9]{3,20}$")

# Complaints resolved in one sweep at most; the next pass takes the rest.
SWEEP_BATCH = 200
# History rows before the last one seen that a sweep reads again: a write that took its id before the last seen
# row may commit after the sweep read past it.
HISTORY_MARGIN = 1000

CSV_COLUMNS = (
    "id",
    "cause",
    "cause_ref",
    "status",
    "customer_id",
    "customer_name",
    "number",
    "caller_name",
    "created_at",
    "assigned_to",
    "calls",
    "outcome",
    "satisfaction",
)


# The evaluation items a new center starts with (``callcenter db seed`` and the demo add them to an empty table).
DEFAULT_EVALUATION_ITEMS: tuple[tuple[str, AppliesTo], ...] = (
    ("服务态度 (attitude)", AppliesTo.VISIT),
    ("响应及时 (timeliness)", AppliesTo.VISIT),
    ("维修质量 (quality of the repair)", AppliesTo.VISIT),
    ("问题解决 (problem solved)", AppliesTo.VISIT),
    ("接听礼貌 (courtesy)", AppliesTo.CALL),
    ("业务熟练 (product knowledge)", AppliesTo.CALL),
    ("一次解决 (solved on the first call)", AppliesTo.CALL),
    ("上门准时 (on time)", AppliesTo.OUTLET),
    ("维修质量 (quality of the repair)", AppliesTo.OUTLET),
    ("收费合理 (fair charges)", AppliesTo.OUTLET),
)


def cause_of(key: str | None) -> tuple[str, str | None]:
    """The cause of a visit and what it refers to (a linkedid, a record id, an order id), from its key."""
    for prefix, cause in CAUSES:
        if key is not None and key.startswith(prefix):
            return cause, key[len(prefix) :]
    return "other", None


def _cause_condition(cause: str) -> ColumnElement[bool]:
    key = ServiceRecord.idempotency_key
    if cause == "other":
        return or_(key.is_(None), and_(*[not_(key.startswith(prefix, autoescape=True)) for prefix, _ in CAUSES]))
    prefix = next(prefix for prefix, name in CAUSES if name == cause)
    return key.startswith(prefix, autoescape=True)


def dialable(number: str) -> str | None:
    """``number`` as Dial may be given it, or None when it is not a phone number."""
    digits = re.sub(r"[\s().-]", "", number)
    return digits if _DIALABLE.match(digits) else None


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The instant a day of the center's calendar begins."""
    return datetime.combine(day, time(0), zone)


@dataclass(frozen=True, slots=True)
class Placer:
    """Who places a visit: the user, and their own phone's extension."""

    user_id: int
    username: str
    extension: str | None


def item_json(row: EvaluationItem) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "applies_to": row.applies_to,
        "active": row.active,
        "position": row.position,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


class EvaluationItems:
    """The center's evaluation items: what visits, calls and outlets are scored on."""

    def __init__(self, database: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._database = database
        self._clock = clock

    async def find(self, query: EvaluationItemQuery) -> list[dict[str, Any]]:
        conditions: list[ColumnElement[bool]] = []
        if query.applies_to is not None:
            conditions.append(EvaluationItem.applies_to == query.applies_to.value)
        if query.active is not None:
            conditions.append(EvaluationItem.active.is_(query.active))
        async with self._database.session() as session:
            rows = await session.scalars(
                select(EvaluationItem)
                .where(*conditions)
                .order_by(EvaluationItem.applies_to, EvaluationItem.position, EvaluationItem.id)
            )
            return [item_json(row) for row in rows]

    async def create(self, data: EvaluationItemIn) -> dict[str, Any]:
        now = self._clock()
        try:
            async with self._database.session() as session:
                position = data.position
                if position is None:
                    last = await session.scalar(
                        select(func.max(EvaluationItem.position)).where(
                            EvaluationItem.applies_to == data.applies_to.value
                        )
                    )
                    position = 0 if last is None else last + 1
                row = EvaluationItem(
                    name=data.name,
                    applies_to=data.applies_to.value,
                    active=data.active,
                    position=position,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                await session.flush()
                return item_json(row)
        except ConstraintViolation:
            raise EvaluationItemExists(data.applies_to.value) from None

    async def update(self, item_id: int, patch: EvaluationItemPatch) -> dict[str, Any]:
        changes = patch.model_dump(exclude_unset=True)
        try:
            async with self._database.session() as session:
                row = await session.get(EvaluationItem, item_id)
                if row is None:
                    raise EvaluationItemNotFound(item_id)
                applies_to = row.applies_to
                for name, value in changes.items():
                    setattr(row, name, value)
                if changes:
                    row.updated_at = self._clock()
                await session.flush()
                return item_json(row)
        except ConstraintViolation:
            raise EvaluationItemExists(applies_to) from None


class Visits:
    """Callback visits: which are due, making them (from causes), placing their calls, recording their results."""

    def __init__(
        self,
        database: Database,
        records: ServiceRecords,
        callbacks: Callbacks | None,
        *,
        zone: ZoneInfo,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``callbacks``: the calls' port that places a visit's call (none: placing is refused as unavailable)."""
        self._database = database
        self._records = records
        self._callbacks = callbacks
        self._zone = zone
        self._clock = clock
        # The last history row the complaint sweep has read (none: the first sweep reads the whole window).
        self._history_seen: int | None = None

    # -- making visits ------------------------------------------------------------------------------------

    async def for_resolved_complaints(self, *, within: timedelta) -> int:
        """Makes a visit for each complaint resolved in the last ``within`` that has none; how many were made.

        Derived from the records' history rather than from an event, so a complaint resolved while the engine was
        away, or by another engine, gets its visit too; the idempotency key keeps it one per complaint. The first
        pass reads the window's history; later ones only the rows added since (by id, with a margin for writes
        that committed late), so a large history is not read every minute."""
        H = ServiceRecordHistory
        since = self._clock() - within
        visit = aliased(ServiceRecord)
        key = literal(COMPLAINT_KEY, String) + sql_cast(ServiceRecord.id, String)
        conditions: list[ColumnElement[bool]] = [
            # A move into resolved, not a row that leaves it resolved (a PATCH's ``update``): only the resolution
            # itself is the complaint's cause, and only when it falls in the window.
            H.to_status == RecordStatus.RESOLVED.value,
            H.from_status.is_distinct_from(RecordStatus.RESOLVED.value),
            H.at >= since,
            ServiceRecord.type == RecordType.COMPLAINT.value,
            ~exists().where(visit.idempotency_key == key),
        ]
        if self._history_seen is not None:
            conditions.append(H.id > self._history_seen - HISTORY_MARGIN)
        async with self._database.session() as session:
            top = await session.scalar(select(func.max(H.id))) or 0
            rows = (
                await session.execute(
                    select(
                        H.id.label("history_id"),
                        ServiceRecord.id,
                        ServiceRecord.customer_id,
                        ServiceRecord.caller_number,
                        ServiceRecord.caller_name,
                        ServiceRecord.linkedid,
                    )
                    .join(ServiceRecord, ServiceRecord.id == H.record_id)
                    .where(*conditions, H.id <= top)
                    .order_by(H.id)
                    .limit(SWEEP_BATCH)
                )
            ).all()
        made = 0
        for row in rows:
            made += await self._make(
                f"{COMPLAINT_KEY}{row.id}",
                f"Complaint #{row.id} was resolved: ask the customer whether they are satisfied with how.",
                customer_id=row.customer_id,
                number=row.caller_number,
                name=row.caller_name,
                linkedid=row.linkedid,
            )
        # A full batch may have left some: the next pass starts after the last one made.
        self._history_seen = rows[-1].history_id if len(rows) == SWEEP_BATCH else top
        return made

    async def repair_visit(
        self, order_id: int, service_record_id: int | None, customer_id: int | None
    ) -> ServiceRecordIn:
        """The visit after a finished repair (one per work order: its idempotency key), with the customer and
        number of the booking it came from; while the database cannot be read, with the event's customer only."""
        number = name = linkedid = None
        try:
            async with self._database.session() as session:
                source = await session.get(ServiceRecord, service_record_id) if service_record_id else None
                if source is not None:
                    customer_id = customer_id or source.customer_id
                    number, name, linkedid = source.caller_number, source.caller_name, source.linkedid
                if customer_id is not None and await session.get(Customer, customer_id) is None:
                    customer_id = None
        except DatabaseError:
            pass
        about = f" (service record #{service_record_id})" if service_record_id is not None else ""
        return self._visit_in(
            f"{REPAIR_KEY}{order_id}",
            f"Work order #{order_id} is done{about}: ask the customer how the repair went.",
            customer_id=customer_id,
            number=number,
            name=name,
            linkedid=linkedid,
        )

    async def for_repair(self, order_id: int, service_record_id: int | None, customer_id: int | None) -> bool:
        """Makes the visit after a finished repair now (once per work order); whether it was made now."""
        data = await self.repair_visit(order_id, service_record_id, customer_id)
        _, created = await self._records.create(data, actor=SYSTEM_ACTOR)
        return created

    @staticmethod
    def _visit_in(
        key: str,
        content: str,
        *,
        customer_id: int | None,
        number: str | None,
        name: str | None,
        linkedid: str | None,
    ) -> ServiceRecordIn:
        return ServiceRecordIn(
            type=RecordType.CALLBACK_VISIT,
            content=content,
            customer_id=customer_id,
            caller_number=(number or "")[:CALLER_NUMBER_MAX] or None,
            caller_name=(name or "")[:NAME_MAX] or None,
            linkedid=linkedid or None,
            idempotency_key=key,
        )

    async def _make(
        self,
        key: str,
        content: str,
        *,
        customer_id: int | None,
        number: str | None,
        name: str | None,
        linkedid: str | None,
    ) -> int:
        if customer_id is not None:
            async with self._database.session() as session:
                if await session.get(Customer, customer_id) is None:
                    customer_id = None
        data = self._visit_in(key, content, customer_id=customer_id, number=number, name=name, linkedid=linkedid)
        _, created = await self._records.create(data, actor=SYSTEM_ACTOR)
        return int(created)

    # -- the list -----------------------------------------------------------------------------------------

    async def find(self, query: VisitQuery) -> tuple[list[dict[str, Any]], int]:
        """One page of visits, oldest first (the longest waiting on top), and how many match."""
        has_result = exists().where(VisitResult.record_id == ServiceRecord.id)
        conditions: list[ColumnElement[bool]] = [ServiceRecord.type == RecordType.CALLBACK_VISIT.value]
        if query.state == "due":
            conditions += [ServiceRecord.status.in_(_OPEN), ~has_result]
        elif query.state == "done":
            conditions.append(or_(ServiceRecord.status.not_in(_OPEN), has_result))
        if query.cause is not None:
            conditions.append(_cause_condition(query.cause))
        if query.customer_id is not None:
            conditions.append(ServiceRecord.customer_id == query.customer_id)
        if query.owner == "none":
            conditions.append(ServiceRecord.assigned_to.is_(None))
        elif query.owner is not None:
            conditions.append(ServiceRecord.assigned_to == int(query.owner))
        if query.since is not None:
            conditions.append(ServiceRecord.created_at >= day_start(query.since, self._zone))
        if query.until is not None:
            conditions.append(ServiceRecord.created_at < day_start(query.until, self._zone))
        async with self._database.session() as session:
            total = await session.scalar(select(func.count()).select_from(ServiceRecord).where(*conditions)) or 0
            rows = (
                await session.execute(
                    select(ServiceRecord, Customer.name)
                    .outerjoin(Customer, Customer.id == ServiceRecord.customer_id)
                    .where(*conditions)
                    .order_by(ServiceRecord.created_at, ServiceRecord.id)
                    .limit(query.limit)
                    .offset(query.offset)
                )
            ).all()
            ids = [record.id for record, _ in rows]
            calls = await self._calls_of(session, ids)
            results = await self._results_of(session, ids)
            phones = await self._first_phones(
                session, [record.customer_id for record, _ in rows if record.customer_id is not None]
            )
        items = []
        for record, customer_name in rows:
            number = record.caller_number or phones.get(record.customer_id or 0)
            items.append(
                self._visit_json(record, customer_name, number, calls.get(record.id, []), results.get(record.id))
            )
        return items, total

    async def get(self, visit_id: int) -> dict[str, Any]:
        async with self._database.session() as session:
            record = await self._visit(session, visit_id)
            customer_name = (
                await session.scalar(select(Customer.name).where(Customer.id == record.customer_id))
                if record.customer_id is not None
                else None
            )
            number = await self._number(session, record)
            calls = await self._calls_of(session, [visit_id])
            results = await self._results_of(session, [visit_id])
        return self._visit_json(record, customer_name, number, calls.get(visit_id, []), results.get(visit_id))

    @staticmethod
    def _visit_json(
        record: ServiceRecord,
        customer_name: str | None,
        number: str | None,
        calls: list[dict[str, Any]],
        result: dict[str, Any] | None,
    ) -> dict[str, Any]:
        cause, cause_ref = cause_of(record.idempotency_key)
        return {
            "id": record.id,
            "cause": cause,
            "cause_ref": cause_ref,
            "status": record.status,
            "content": record.content,
            "customer": None if record.customer_id is None else {"id": record.customer_id, "name": customer_name},
            "number": number,
            "caller_name": record.caller_name,
            "linkedid": record.linkedid,
            "assigned_to": record.assigned_to,
            "created_at": record.created_at.isoformat(),
            "updated_at": record.updated_at.isoformat(),
            "calls": calls,
            "result": result,
        }

    @staticmethod
    def csv_rows(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The list's items flattened to :data:`CSV_COLUMNS`."""
        return [
            {
                "id": item["id"],
                "cause": item["cause"],
                "cause_ref": item["cause_ref"],
                "status": item["status"],
                "customer_id": (item["customer"] or {}).get("id"),
                "customer_name": (item["customer"] or {}).get("name"),
                "number": item["number"],
                "caller_name": item["caller_name"],
                "created_at": item["created_at"],
                "assigned_to": item["assigned_to"],
                "calls": len(item["calls"]),
                "outcome": (item["result"] or {}).get("outcome"),
                "satisfaction": (item["result"] or {}).get("satisfaction"),
            }
            for item in items
        ]

    @staticmethod
    async def _calls_of(session: AsyncSession, ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        found: dict[int, list[dict[str, Any]]] = {}
        if not ids:
            return found
        rows = await session.scalars(
            select(VisitCall).where(VisitCall.record_id.in_(ids)).order_by(VisitCall.placed_at, VisitCall.id)
        )
        for row in rows:
            found.setdefault(row.record_id, []).append(
                {
                    "linkedid": row.linkedid,
                    "callback_id": row.callback_id,
                    "number": row.number,
                    "placed_by": row.placed_by,
                    "placed_at": row.placed_at.isoformat(),
                }
            )
        return found

    @staticmethod
    async def _results_of(session: AsyncSession, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        if not ids:
            return found
        results = list(await session.scalars(select(VisitResult).where(VisitResult.record_id.in_(ids))))
        scores: dict[int, list[dict[str, Any]]] = {}
        if results:
            rows = await session.execute(
                select(VisitScore.result_id, VisitScore.item_id, VisitScore.score, EvaluationItem.name)
                .join(EvaluationItem, EvaluationItem.id == VisitScore.item_id)
                .where(VisitScore.result_id.in_([result.id for result in results]))
                .order_by(EvaluationItem.position, EvaluationItem.id)
            )
            for result_id, item_id, score, name in rows:
                scores.setdefault(result_id, []).append({"item_id": item_id, "name": name, "score": score})
        for result in results:
            found[result.record_id] = {
                "outcome": result.outcome,
                "satisfaction": result.satisfaction,
                "scores": scores.get(result.id, []),
                "comment": result.comment,
                "linkedid": result.linkedid,
                "recorded_by": result.recorded_by,
                "recorded_at": result.recorded_at.isoformat(),
            }
        return found

    @staticmethod
    async def _first_phones(session: AsyncSession, customer_ids: Sequence[int]) -> dict[int, str]:
        found: dict[int, str] = {}
        if not customer_ids:
            return found
        rows = await session.execute(
            select(CustomerPhone.customer_id, CustomerPhone.number)
            .where(CustomerPhone.customer_id.in_(set(customer_ids)))
            .order_by(CustomerPhone.id)
        )
        for customer_id, number in rows:
            found.setdefault(customer_id, number)
        return found

    async def _number(self, session: AsyncSession, record: ServiceRecord) -> str | None:
        if record.caller_number:
            return record.caller_number
        if record.customer_id is None:
            return None
        return (await self._first_phones(session, [record.customer_id])).get(record.customer_id)

    @staticmethod
    async def _visit(session: AsyncSession, visit_id: int) -> ServiceRecord:
        record = await session.get(ServiceRecord, visit_id)
        if record is None or record.type != RecordType.CALLBACK_VISIT.value:
            raise VisitNotFound(visit_id)
        return record

    # -- placing the call ---------------------------------------------------------------------------------

    async def place(self, visit_id: int, who: Placer, *, remote: str | None = None) -> dict[str, Any]:
        """Rings the placing user's phone, then the visit's number; the call is linked to the visit (its record
        moves to ``in_progress`` and is given to the placing user if nobody had it). Everything that can refuse
        is checked before Asterisk is asked."""
        async with self._database.session() as session:
            record = await self._visit(session, visit_id)
            await self._check_open(session, record)
            number = await self._number(session, record)
            customer_id = record.customer_id
        if not number:
            raise VisitWithoutNumber(visit_id)
        target = dialable(number)
        if target is None:
            raise VisitNumberNotDialable(visit_id)
        if not who.extension:
            raise NoPhoneToCallFrom(who.username)
        if self._callbacks is None:
            raise Unavailable("this engine places no calls: a visit cannot be placed", {"visit_id": visit_id})
        placed = await self._callbacks.place(
            user_id=who.user_id,
            username=who.username,
            extension=who.extension,
            number=target,
            service_record_id=visit_id,
            customer_id=customer_id,
            remote=remote,
        )
        await self._link_call(visit_id, placed, who)
        return {
            "visit_id": visit_id,
            "linkedid": placed.linkedid,
            "callback_id": placed.callback_id,
            "number": placed.number,
            "agent": placed.agent,
        }

    async def _link_call(self, visit_id: int, placed: PlacedCallback, who: Placer) -> None:
        """Keeps the call placed for the visit, and moves its record on (in progress, the placing user's if
        nobody's), with its history."""
        now = self._clock()
        actor = who.username[:ACTOR_MAX]
        async with self._database.session() as session:
            record = await self._visit(session, visit_id)
            session.add(
                VisitCall(
                    record_id=visit_id,
                    linkedid=placed.linkedid,
                    callback_id=placed.callback_id,
                    number=placed.number,
                    placed_by=actor,
                    placed_at=now,
                )
            )
            changes: dict[str, Any] = {"linkedid": placed.linkedid}
            # Each change is made only if the record is still as it was read (compare and set): a result recorded
            # by another desk meanwhile is not moved back to in_progress, nor is an owner given meanwhile replaced.
            from_status = target_status = record.status
            await self._set_if(session, visit_id, ServiceRecord.id == visit_id, now)  # the call is a change too
            if record.status in (RecordStatus.NEW.value, RecordStatus.ASSIGNED.value):
                if await self._set_if(
                    session, visit_id, ServiceRecord.status == record.status, now, status=IN_PROGRESS
                ):
                    target_status = IN_PROGRESS
                else:
                    latest = await session.scalar(select(ServiceRecord.status).where(ServiceRecord.id == visit_id))
                    from_status = target_status = str(latest)
            if record.assigned_to is None and await self._set_if(
                session, visit_id, ServiceRecord.assigned_to.is_(None), now, assigned_to=who.user_id
            ):
                changes["assigned_to"] = {"from": None, "to": who.user_id}
            session.add(
                ServiceRecordHistory(
                    record_id=visit_id,
                    at=now,
                    actor=actor,
                    action="visit_call",
                    from_status=from_status,
                    to_status=target_status,
                    changes=json.dumps(changes, ensure_ascii=False, sort_keys=True),
                )
            )

    @staticmethod
    async def _set_if(
        session: AsyncSession, visit_id: int, condition: ColumnElement[bool], now: datetime, **values: Any
    ) -> bool:
        """Sets ``values`` on the visit's record if ``condition`` holds in the database now; whether it did."""
        result = await session.execute(
            update(ServiceRecord)
            .where(ServiceRecord.id == visit_id, condition)
            .values(updated_at=now, **values)
            .execution_options(synchronize_session=False)
        )
        return cast("CursorResult[Any]", result).rowcount == 1

    @staticmethod
    async def _check_open(session: AsyncSession, record: ServiceRecord) -> None:
        if await session.scalar(select(VisitResult.id).where(VisitResult.record_id == record.id)) is not None:
            raise VisitResultRecorded(record.id)
        if record.status not in _OPEN:
            raise VisitClosed(record.id, record.status)

    # -- the result ---------------------------------------------------------------------------------------

    async def record_result(self, visit_id: int, data: VisitResultIn, *, actor: str) -> dict[str, Any]:
        """Stores the visit's one result with its scores and moves the record to ``feedback_recorded`` (history
        kept), in one transaction: a refusal leaves nothing written."""
        _check_result(data)
        now = self._clock()
        who = (actor or SYSTEM_ACTOR)[:ACTOR_MAX]
        try:
            async with self._database.session() as session:
                await _check_items(session, {score.item_id for score in data.scores})
                record = await self._visit(session, visit_id)
                if await session.scalar(select(VisitResult.id).where(VisitResult.record_id == visit_id)) is not None:
                    raise VisitResultRecorded(visit_id)
                current = record.status
                if current not in _RESULT_FROM:
                    raise VisitClosed(visit_id, current)
                linkedid = await session.scalar(
                    select(VisitCall.linkedid)
                    .where(VisitCall.record_id == visit_id)
                    .order_by(VisitCall.placed_at.desc(), VisitCall.id.desc())
                    .limit(1)
                )
                result = VisitResult(
                    record_id=visit_id,
                    outcome=data.outcome.value,
                    satisfaction=data.satisfaction,
                    comment=data.comment,
                    linkedid=linkedid,
                    recorded_by=who,
                    recorded_at=now,
                )
                session.add(result)
                await session.flush()
                session.add_all(
                    VisitScore(result_id=result.id, item_id=score.item_id, score=score.score) for score in data.scores
                )
                values: dict[str, Any] = {
                    "status": RecordStatus.FEEDBACK_RECORDED.value,
                    "outcome": data.outcome.value,
                    "updated_at": now,
                }
                changes: dict[str, Any] = {
                    "outcome": {"from": record.outcome, "to": data.outcome.value},
                    "satisfaction": data.satisfaction,
                }
                if data.comment is not None:
                    values["feedback"] = data.comment
                    changes["feedback"] = {"from": record.feedback, "to": data.comment}
                updated = await session.execute(
                    update(ServiceRecord)
                    .where(ServiceRecord.id == visit_id, ServiceRecord.status == current)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
                if cast("CursorResult[Any]", updated).rowcount != 1:
                    # Another desk moved the record meanwhile: the whole result is rolled back.
                    latest = await session.scalar(select(ServiceRecord.status).where(ServiceRecord.id == visit_id))
                    raise VisitClosed(visit_id, str(latest))
                session.add(
                    ServiceRecordHistory(
                        record_id=visit_id,
                        at=now,
                        actor=who,
                        action="visit_result",
                        from_status=current,
                        to_status=RecordStatus.FEEDBACK_RECORDED.value,
                        changes=json.dumps(changes, ensure_ascii=False, sort_keys=True),
                    )
                )
        except ConstraintViolation:
            # Two results for one visit at once: the other one was stored.
            raise VisitResultRecorded(visit_id) from None
        return await self.get(visit_id)


def _check_result(data: VisitResultIn) -> None:
    """A reached customer gives a satisfaction and may score the items; one not reached gives neither."""
    reached = data.outcome == VisitOutcome.REACHED
    if reached and data.satisfaction is None:
        raise InvalidVisitResult("satisfaction", "a reached customer's satisfaction (1-5) is required")
    if not reached and data.satisfaction is not None:
        raise InvalidVisitResult("satisfaction", "only a reached customer gives a satisfaction")
    if not reached and data.scores:
        raise InvalidVisitResult("scores", "only a reached customer scores the evaluation items")


async def _check_items(session: AsyncSession, wanted: set[int]) -> None:
    """UnknownEvaluationItems unless every one of ``wanted`` is an active item visits are scored on."""
    if not wanted:
        return
    known = set(
        await session.scalars(
            select(EvaluationItem.id).where(
                EvaluationItem.id.in_(wanted),
                EvaluationItem.applies_to == AppliesTo.VISIT.value,
                EvaluationItem.active.is_(True),
            )
        )
    )
    if wanted - known:
        raise UnknownEvaluationItems(sorted(wanted - known))
