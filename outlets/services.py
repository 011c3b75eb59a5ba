"""The service outlets' logic: outlets (create, change, retire), dispatching repair and installation bookings as
work orders, an outlet's feedback on an order, fee settlements and their review, and the outlets' evaluations.

Every change is kept in ``outlet_history`` (who, when, what, the fields from and to) in the same transaction as
the change itself. A refused rule raises :class:`outlets.exceptions.RuleRefused` (409, its code naming the rule)
and leaves nothing written. What an order needs of its service record (the record's type, status, customer,
region and product category, and moving it along the CRM's lifecycle) comes through the CRM's port
(:class:`crm_bridge.ports.ServiceRecordDesk`); the events go on the bus once the change is committed.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import CursorResult, Select, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from callcenter.bus import Bus
from callcenter.db import ConstraintViolation, Database, utcnow
from crm_bridge.ports import LifecycleRefused, ServiceRecordDesk, ServiceRecordFacts
from outlets.events import FeeReviewed, WorkOrderCancelled, WorkOrderDispatched, WorkOrderDone
from outlets.exceptions import (
    InvalidOutletInput,
    OutletNotFound,
    RecordNotFound,
    RuleRefused,
    SettlementNotFound,
    WorkOrderNotFound,
)
from outlets.infos import (
    EvaluationInfo,
    HistoryEntry,
    OrderInfo,
    OutletInfo,
    SettlementInfo,
    evaluation_info,
    history_entry,
    order_info,
    outlet_info,
    settlement_info,
)
from outlets.models import (
    ACTOR_MAX,
    Choice,
    FeeSettlement,
    OrderFeedback,
    OrderKind,
    OrderStatus,
    Outlet,
    OutletCategory,
    OutletEvaluation,
    OutletHistory,
    SettlementStatus,
    WorkOrder,
)
from outlets.schemas import (
    CancelIn,
    DispatchIn,
    EvaluationIn,
    EvaluationQuery,
    FeedbackIn,
    OrderQuery,
    OutletIn,
    OutletPatch,
    OutletQuery,
    ReviewIn,
    SettlementQuery,
)

# The CRM's record types that become work orders, and the kind of order each becomes.
KIND_OF_RECORD_TYPE: Mapping[str, OrderKind] = {
    "repair_booking": OrderKind.REPAIR,
    "installation_booking": OrderKind.INSTALLATION,
}
# The CRM's statuses a record may be dispatched from: still someone's work (not resolved, not archived).
DISPATCHABLE_STATUSES = ("new", "assigned", "in_progress")

_OUTLET_FIELDS = ("name", "region", "contact_person", "phone", "address", "notes")


class Subject:
    OUTLET = "outlet"
    WORK_ORDER = "work_order"
    SETTLEMENT = "fee_settlement"
    EVALUATION = "evaluation"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, tuple):
        return list(value)
    return value


def _who(actor: str) -> str:
    return (actor or "system")[:ACTOR_MAX]


class OutletService:
    def __init__(
        self, database: Database, desk: ServiceRecordDesk, bus: Bus, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        """``desk``: the CRM's port for the service records orders are made of."""
        self._database = database
        self._desk = desk
        self._bus = bus
        self._clock = clock

    # -- history ------------------------------------------------------------------------------------------

    def _history(
        self,
        session: AsyncSession,
        subject: str,
        subject_id: int,
        action: str,
        actor: str,
        at: datetime,
        changes: Mapping[str, Any] | None = None,
    ) -> None:
        session.add(
            OutletHistory(
                subject=subject,
                subject_id=subject_id,
                at=at,
                actor=_who(actor),
                action=action,
                changes=json.dumps(
                    {key: _jsonable(value) for key, value in changes.items()}, ensure_ascii=False, sort_keys=True
                )
                if changes
                else None,
            )
        )

    async def history(self, subject: str, subject_id: int) -> list[HistoryEntry]:
        async with self._database.session() as session:
            rows = await session.scalars(
                select(OutletHistory)
                .where(OutletHistory.subject == subject, OutletHistory.subject_id == subject_id)
                .order_by(OutletHistory.at, OutletHistory.id)
            )
            return [history_entry(row) for row in rows]

    # -- outlets ------------------------------------------------------------------------------------------

    async def _categories(self, session: AsyncSession, ids: Sequence[int]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {outlet_id: [] for outlet_id in ids}
        if ids:
            rows = await session.execute(
                select(OutletCategory.outlet_id, OutletCategory.category).where(OutletCategory.outlet_id.in_(ids))
            )
            for outlet_id, category in rows:
                found[outlet_id].append(category)
        return {outlet_id: sorted(categories) for outlet_id, categories in found.items()}

    async def _open_counts(self, session: AsyncSession, ids: Sequence[int]) -> dict[int, int]:
        if not ids:
            return {}
        rows = await session.execute(
            select(WorkOrder.outlet_id, func.count())
            .where(WorkOrder.outlet_id.in_(ids), WorkOrder.status == OrderStatus.DISPATCHED.value)
            .group_by(WorkOrder.outlet_id)
        )
        return {int(outlet_id): int(count) for outlet_id, count in rows}

    async def _outlet_infos(self, session: AsyncSession, rows: Sequence[Outlet]) -> list[OutletInfo]:
        ids = [row.id for row in rows]
        categories = await self._categories(session, ids)
        counts = await self._open_counts(session, ids)
        return [outlet_info(row, categories[row.id], counts.get(row.id, 0)) for row in rows]

    async def create_outlet(self, data: OutletIn, *, actor: str) -> OutletInfo:
        now = self._clock()
        async with self._database.session() as session:
            outlet = Outlet(
                name=data.name,
                region=data.region,
                contact_person=data.contact_person,
                phone=data.phone,
                address=data.address,
                notes=data.notes,
                created_at=now,
                updated_at=now,
                retired_at=None,
                retired_reason=None,
            )
            session.add(outlet)
            await session.flush()
            session.add_all(OutletCategory(outlet_id=outlet.id, category=category) for category in data.categories)
            self._history(
                session,
                Subject.OUTLET,
                outlet.id,
                "create",
                actor,
                now,
                {**{name: getattr(data, name) for name in _OUTLET_FIELDS}, "categories": data.categories},
            )
            await session.flush()
            (info,) = await self._outlet_infos(session, [outlet])
            return info

    async def outlet(self, outlet_id: int) -> OutletInfo:
        async with self._database.session() as session:
            row = await session.get(Outlet, outlet_id)
            if row is None:
                raise OutletNotFound(outlet_id)
            (info,) = await self._outlet_infos(session, [row])
            return info

    async def outlets(self, query: OutletQuery) -> list[OutletInfo]:
        conditions: list[ColumnElement[bool]] = []
        if query.region is not None:
            conditions.append(Outlet.region == query.region)
        if query.category is not None:
            conditions.append(
                Outlet.id.in_(select(OutletCategory.outlet_id).where(OutletCategory.category == query.category))
            )
        if not query.include_retired:
            conditions.append(Outlet.retired_at.is_(None))
        async with self._database.session() as session:
            rows = list(
                await session.scalars(
                    select(Outlet).where(*conditions).order_by(Outlet.id).limit(query.limit).offset(query.offset)
                )
            )
            return await self._outlet_infos(session, rows)

    async def update_outlet(self, outlet_id: int, patch: OutletPatch, *, actor: str) -> OutletInfo:
        sent = patch.model_fields_set
        now = self._clock()
        async with self._database.session() as session:
            # Held first: a change made at the same moment waits, and this one starts from what that one left (its
            # history's "from" included).
            await _hold_outlet(session, outlet_id)
            outlet = await session.get(Outlet, outlet_id)
            if outlet is None:
                raise OutletNotFound(outlet_id)
            if outlet.retired_at is not None:
                raise RuleRefused(
                    "outlet_retired", "a retired outlet is kept as it was; it cannot be changed", outlet_id=outlet_id
                )
            changes: dict[str, Any] = {}
            for name in _OUTLET_FIELDS:
                if name in sent and getattr(patch, name) != getattr(outlet, name):
                    changes[name] = {"from": getattr(outlet, name), "to": getattr(patch, name)}
                    setattr(outlet, name, getattr(patch, name))
            if patch.categories is not None:
                before = (await self._categories(session, [outlet_id]))[outlet_id]
                if sorted(patch.categories) != before:
                    await session.execute(delete(OutletCategory).where(OutletCategory.outlet_id == outlet_id))
                    session.add_all(OutletCategory(outlet_id=outlet_id, category=c) for c in patch.categories)
                    changes["categories"] = {"from": before, "to": sorted(patch.categories)}
            if changes:
                outlet.updated_at = now
                self._history(session, Subject.OUTLET, outlet_id, "update", actor, now, changes)
            await session.flush()
            (info,) = await self._outlet_infos(session, [outlet])
            return info

    async def retire_outlet(self, outlet_id: int, reason: str | None, *, actor: str) -> OutletInfo:
        """Retires an outlet: it gets no new orders. Refused while it has open orders (finish or cancel them)."""
        now = self._clock()
        async with self._database.session() as session:
            # The outlet's row is written (and locked) before its open orders are counted: a dispatch to it that
            # is under way holds the same row (see dispatch), so the count includes its order or the dispatch
            # meets the outlet retired. Counted first, both could pass and leave a retired outlet an open order.
            result = await session.execute(
                update(Outlet)
                .where(Outlet.id == outlet_id, Outlet.retired_at.is_(None))
                .values(retired_at=now, retired_reason=reason, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if cast("CursorResult[Any]", result).rowcount != 1:
                gone = await session.get(Outlet, outlet_id)
                if gone is None:
                    raise OutletNotFound(outlet_id)
                raise _retired(gone, "the outlet is retired already")
            open_orders = (await self._open_counts(session, [outlet_id])).get(outlet_id, 0)
            if open_orders:
                raise RuleRefused(
                    "outlet_has_open_orders",
                    f"the outlet has {open_orders} open work order(s): register their feedback or cancel them first",
                    outlet_id=outlet_id,
                    open_orders=open_orders,
                )
            outlet = await session.get(Outlet, outlet_id)
            assert outlet is not None
            self._history(session, Subject.OUTLET, outlet_id, "retire", actor, now, {"reason": reason})
            await session.flush()
            await session.refresh(outlet)
            (info,) = await self._outlet_infos(session, [outlet])
            return info

    # -- dispatch -----------------------------------------------------------------------------------------

    async def _ranked(self, session: AsyncSession, region: str, category: str) -> list[OutletInfo]:
        """The active outlets of ``region`` serving ``category``, in the rule's order: the fewest open orders, then
        the name, then the id."""
        candidates = list(
            await session.scalars(
                select(Outlet).where(
                    Outlet.region == region,
                    Outlet.retired_at.is_(None),
                    Outlet.id.in_(select(OutletCategory.outlet_id).where(OutletCategory.category == category)),
                )
            )
        )
        infos = await self._outlet_infos(session, candidates)
        # Sorted here, not in SQL: the same order on every backend whatever its collation (names compare by code
        # point), and the id settles two outlets of one name.
        return sorted(infos, key=lambda outlet: (outlet.open_orders, outlet.name, outlet.id))

    async def preview(self, record_id: int) -> dict[str, Any]:
        """What dispatching the record now would do, writing nothing: the outlet the rule would choose and the
        other candidates in the rule's order, or the rule that would refuse it (``refusal``: code, message,
        details). The dispatcher may still name another active outlet (an override)."""
        facts = await self._desk.record_facts(record_id)
        if facts is None:
            raise RecordNotFound(record_id)
        kind: OrderKind | None = None
        refusal: RuleRefused | None = None
        candidates: list[OutletInfo] = []
        try:
            kind = self._check_record(facts)
        except RuleRefused as exc:
            refusal = exc
        async with self._database.session() as session:
            if facts.region and facts.product_category:
                candidates = await self._ranked(session, facts.region, facts.product_category)
            if refusal is None:
                existing = await _open_order_id(session, facts.id)
                if existing is not None:
                    refusal = _open_order(facts.id, existing)
        if refusal is None and not candidates:
            refusal = _no_match(facts)
        return {
            "service_record_id": facts.id,
            "kind": None if kind is None else kind.value,
            "region": facts.region,
            "category": facts.product_category,
            "product_id": facts.product_id,
            "fault_type": facts.fault_type,
            "appointment_at": None if facts.appointment_at is None else facts.appointment_at.isoformat(),
            "chosen": candidates[0].as_json() if candidates and refusal is None else None,
            "candidates": [outlet.as_json() for outlet in candidates],
            "refusal": None
            if refusal is None
            else {"code": refusal.code, "message": refusal.message, "details": refusal.details},
        }

    def _check_record(self, facts: ServiceRecordFacts) -> OrderKind:
        kind = KIND_OF_RECORD_TYPE.get(facts.type)
        if kind is None:
            raise RuleRefused(
                "record_wrong_type",
                f"only repair and installation bookings become work orders; this record is a {facts.type}",
                service_record_id=facts.id,
                record_type=facts.type,
                allowed_types=sorted(KIND_OF_RECORD_TYPE),
            )
        if facts.status not in DISPATCHABLE_STATUSES:
            raise RuleRefused(
                "record_wrong_status",
                f"a record that is {facts.status} cannot be dispatched",
                service_record_id=facts.id,
                status=facts.status,
                allowed_from=list(DISPATCHABLE_STATUSES),
            )
        return kind

    async def dispatch(self, data: DispatchIn, *, actor: str, user_id: int) -> OrderInfo:
        """A work order for a repair or installation booking, at the outlet the rule chooses (the record's region
        and product category; the fewest open orders, then the name) or the one the dispatcher names with a reason.

        Every rule is checked before anything is written; then the order is written and the record moves along the
        CRM's lifecycle (assigned to the dispatcher, then in progress). An order whose record cannot move (its
        lifecycle refuses now) is taken back."""
        facts = await self._desk.record_facts(data.service_record_id)
        if facts is None:
            raise RecordNotFound(data.service_record_id)
        kind = self._check_record(facts)
        outlet_id, outlet_name, chosen = await self._choose(facts, data)
        # The order is written first: the open-order index lets one of two dispatchers of a record through, and
        # the other is refused before it touches the record. Should the record's lifecycle then refuse the move
        # (someone resolved it meanwhile), the order is taken back.
        info = await self._write_order(facts, kind, data, outlet_id, outlet_name, chosen, actor=actor)
        note = f"work order {info.id} at outlet {outlet_id} ({outlet_name})"
        try:
            await self._desk.move(facts.id, "assign", actor=_who(actor), assignee=user_id, note=note)
            await self._desk.move(facts.id, "start", actor=_who(actor), note=note)
        except LifecycleRefused as exc:
            await self._take_back(info.id)
            raise RuleRefused(
                "record_wrong_status",
                f"the record's lifecycle refused to {exc.action} it ({exc.status or 'gone'})",
                service_record_id=facts.id,
                status=exc.status,
                allowed_from=list(exc.allowed_from),
            ) from exc
        except BaseException:
            await self._take_back(info.id)
            raise
        self._bus.publish(
            WorkOrderDispatched(info.id, info.service_record_id, info.customer_id, info.outlet_id, info.kind, chosen)
        )
        return info

    async def _choose(self, facts: ServiceRecordFacts, data: DispatchIn) -> tuple[int, str, Choice]:
        """The outlet the order goes to (id, name) and how it was chosen; RuleRefused when none may have it."""
        async with self._database.session() as session:
            existing = await _open_order_id(session, facts.id)
            if existing is not None:
                raise _open_order(facts.id, existing)
            if data.outlet_id is not None:
                outlet = await session.get(Outlet, data.outlet_id)
                if outlet is None:
                    raise OutletNotFound(data.outlet_id)
                if outlet.retired_at is not None:
                    raise _retired(outlet, "a retired outlet takes no work orders")
                chosen = Choice.OVERRIDE
            else:
                region, category = facts.region, facts.product_category
                ranked = await self._ranked(session, region, category) if region and category else []
                if not ranked:
                    raise _no_match(facts)
                found = await session.get(Outlet, ranked[0].id)
                assert found is not None
                outlet = found
                chosen = Choice.AUTO
            return outlet.id, outlet.name, chosen

    async def _write_order(
        self,
        facts: ServiceRecordFacts,
        kind: OrderKind,
        data: DispatchIn,
        outlet_id: int,
        outlet_name: str,
        chosen: Choice,
        *,
        actor: str,
    ) -> OrderInfo:
        """Writes the order with its history; RuleRefused when the record has an open order by now (the open-order
        index) or the outlet was retired meanwhile."""
        now = self._clock()
        try:
            async with self._database.session() as session:
                # The outlet's row is held until the order is committed, so that a retirement at the same moment
                # either waits and then counts this order (and refuses), or went first and is seen here.
                if not await _hold_outlet(session, outlet_id, Outlet.retired_at.is_(None)):
                    gone = await session.get(Outlet, outlet_id)
                    if gone is None:
                        raise OutletNotFound(outlet_id)
                    raise _retired(gone, "a retired outlet takes no work orders")
                order = WorkOrder(
                    service_record_id=facts.id,
                    outlet_id=outlet_id,
                    kind=kind.value,
                    status=OrderStatus.DISPATCHED.value,
                    customer_id=facts.customer_id,
                    region=facts.region,
                    product_category=facts.product_category,
                    product_id=facts.product_id,
                    fault_type=facts.fault_type,
                    appointment_at=data.appointment_at or facts.appointment_at,
                    chosen=chosen.value,
                    override_reason=data.override_reason,
                    dispatched_by=_who(actor),
                    created_at=now,
                    updated_at=now,
                    closed_at=None,
                    cancel_reason=None,
                )
                session.add(order)
                await session.flush()
                self._history(
                    session,
                    Subject.WORK_ORDER,
                    order.id,
                    "dispatch",
                    actor,
                    now,
                    {
                        "outlet_id": outlet_id,
                        "chosen": chosen.value,
                        "override_reason": data.override_reason,
                        "region": facts.region,
                        "product_category": facts.product_category,
                        "appointment_at": order.appointment_at,
                    },
                )
                return order_info(order, outlet_name)
        except ConstraintViolation as exc:
            # Another dispatcher's order for the same record was written first (the open-order index).
            raise RuleRefused(
                "open_order_exists", "the record has an open work order already", service_record_id=facts.id
            ) from exc

    async def _take_back(self, order_id: int) -> None:
        """Removes an order whose record could not be moved, with its history: as if it had never been written."""
        async with self._database.session() as session:
            await session.execute(
                delete(OutletHistory).where(
                    OutletHistory.subject == Subject.WORK_ORDER, OutletHistory.subject_id == order_id
                )
            )
            await session.execute(delete(WorkOrder).where(WorkOrder.id == order_id))

    # -- orders -------------------------------------------------------------------------------------------

    async def _order_row(self, session: AsyncSession, order_id: int) -> WorkOrder:
        row = await session.get(WorkOrder, order_id)
        if row is None:
            raise WorkOrderNotFound(order_id)
        return row

    async def _full(self, session: AsyncSession, order: WorkOrder) -> OrderInfo:
        name = await session.scalar(select(Outlet.name).where(Outlet.id == order.outlet_id))
        feedback = await session.get(OrderFeedback, order.id)
        settlement = await session.scalar(select(FeeSettlement).where(FeeSettlement.order_id == order.id))
        return order_info(order, name or "", feedback, settlement)

    async def order(self, order_id: int) -> OrderInfo:
        async with self._database.session() as session:
            return await self._full(session, await self._order_row(session, order_id))

    async def orders(self, query: OrderQuery) -> list[OrderInfo]:
        conditions: list[ColumnElement[bool]] = []
        if query.status is not None:
            conditions.append(WorkOrder.status == query.status.value)
        if query.outlet_id is not None:
            conditions.append(WorkOrder.outlet_id == query.outlet_id)
        if query.region is not None:
            conditions.append(WorkOrder.region == query.region)
        if query.service_record_id is not None:
            conditions.append(WorkOrder.service_record_id == query.service_record_id)
        if query.kind is not None:
            conditions.append(WorkOrder.kind == query.kind.value)
        async with self._database.session() as session:
            rows = (
                await session.execute(
                    select(WorkOrder, Outlet.name, OrderFeedback, FeeSettlement)
                    .join(Outlet, Outlet.id == WorkOrder.outlet_id)
                    .outerjoin(OrderFeedback, OrderFeedback.order_id == WorkOrder.id)
                    .outerjoin(FeeSettlement, FeeSettlement.order_id == WorkOrder.id)
                    .where(*conditions)
                    .order_by(WorkOrder.created_at.desc(), WorkOrder.id.desc())
                    .limit(query.limit)
                    .offset(query.offset)
                )
            ).all()
            return [order_info(order, name, feedback, settlement) for order, name, feedback, settlement in rows]

    async def _close(
        self, session: AsyncSession, order: WorkOrder, status: OrderStatus, now: datetime, **values: Any
    ) -> None:
        """Closes an open order in one compare-and-set statement: of two closing it at once, the second is refused."""
        result = await session.execute(
            update(WorkOrder)
            .where(WorkOrder.id == order.id, WorkOrder.status == OrderStatus.DISPATCHED.value)
            .values(status=status.value, closed_at=now, updated_at=now, **values)
            .execution_options(synchronize_session=False)
        )
        if cast("CursorResult[Any]", result).rowcount != 1:
            raise _order_not_open(order.id, order.status)

    async def register_feedback(self, order_id: int, data: FeedbackIn, *, actor: str) -> OrderInfo:
        """The outlet's report on an order, once: the order is done, a fee above zero opens a settlement pending
        review, and the service record is resolved (when its lifecycle allows; the desk may have moved it)."""
        now = self._clock()
        async with self._database.session() as session:
            order = await self._order_row(session, order_id)
            if await session.get(OrderFeedback, order_id) is not None:
                raise RuleRefused(
                    "feedback_registered",
                    "the order's feedback is registered already (once per order)",
                    order_id=order_id,
                )
            if order.status != OrderStatus.DISPATCHED.value:
                raise _order_not_open(order_id, order.status)
            await self._close(session, order, OrderStatus.DONE, now)
            session.add(
                OrderFeedback(
                    order_id=order_id,
                    completed_at=data.completed_at,
                    parts_used=data.parts_used,
                    fee=data.fee,
                    notes=data.notes,
                    registered_by=_who(actor),
                    registered_at=now,
                )
            )
            self._history(
                session,
                Subject.WORK_ORDER,
                order_id,
                "feedback",
                actor,
                now,
                {
                    "status": {"from": OrderStatus.DISPATCHED.value, "to": OrderStatus.DONE.value},
                    "completed_at": data.completed_at,
                    "parts_used": data.parts_used,
                    "fee": data.fee,
                    "notes": data.notes,
                },
            )
            if data.fee > 0:
                settlement = FeeSettlement(
                    order_id=order_id,
                    amount=data.fee,
                    status=SettlementStatus.PENDING.value,
                    reason=None,
                    reviewed_by=None,
                    reviewed_at=None,
                    created_at=now,
                )
                session.add(settlement)
                await session.flush()
                self._history(session, Subject.SETTLEMENT, settlement.id, "open", actor, now, {"amount": data.fee})
            await session.flush()
            session.expire_all()
            info = await self._full(session, await self._order_row(session, order_id))
        try:
            # Not the order's to insist: the desk may have moved the record itself (resolved it, say) meanwhile.
            with contextlib.suppress(LifecycleRefused):
                await self._desk.move(
                    info.service_record_id,
                    "resolve",
                    actor=_who(actor),
                    note=f"work order {order_id} done by the outlet",
                )
        finally:
            # The order is done (committed) whatever became of the record's move: what follows from it, such as
            # the customer's callback visit, must not be lost to a database that failed in between.
            self._bus.publish(WorkOrderDone(info.id, info.service_record_id, info.customer_id, info.outlet_id))
        return info

    async def cancel(self, order_id: int, data: CancelIn, *, actor: str) -> OrderInfo:
        """Cancels an open order with the reason; the record stays where it is (it may be dispatched again)."""
        now = self._clock()
        async with self._database.session() as session:
            order = await self._order_row(session, order_id)
            if order.status != OrderStatus.DISPATCHED.value:
                raise _order_not_open(order_id, order.status)
            await self._close(session, order, OrderStatus.CANCELLED, now, cancel_reason=data.reason)
            self._history(
                session,
                Subject.WORK_ORDER,
                order_id,
                "cancel",
                actor,
                now,
                {
                    "status": {"from": OrderStatus.DISPATCHED.value, "to": OrderStatus.CANCELLED.value},
                    "reason": data.reason,
                },
            )
            await session.flush()
            session.expire_all()
            info = await self._full(session, await self._order_row(session, order_id))
        self._bus.publish(WorkOrderCancelled(info.id, info.service_record_id, info.outlet_id, data.reason))
        return info

    # -- fee settlements ----------------------------------------------------------------------------------

    async def settlements(self, query: SettlementQuery) -> list[SettlementInfo]:
        conditions: list[ColumnElement[bool]] = []
        if query.status is not None:
            conditions.append(FeeSettlement.status == query.status.value)
        if query.outlet_id is not None:
            conditions.append(WorkOrder.outlet_id == query.outlet_id)
        if query.region is not None:
            conditions.append(WorkOrder.region == query.region)
        async with self._database.session() as session:
            rows = (
                await session.execute(
                    _settlement_rows()
                    .where(*conditions)
                    .order_by(FeeSettlement.created_at.desc(), FeeSettlement.id.desc())
                    .limit(query.limit)
                    .offset(query.offset)
                )
            ).all()
            return [settlement_info(settlement, order, name) for settlement, order, name in rows]

    async def _settlement(self, session: AsyncSession, settlement_id: int) -> SettlementInfo:
        row = (await session.execute(_settlement_rows().where(FeeSettlement.id == settlement_id))).first()
        if row is None:
            raise SettlementNotFound(settlement_id)
        return settlement_info(row[0], row[1], row[2])

    async def settlement(self, settlement_id: int) -> SettlementInfo:
        async with self._database.session() as session:
            return await self._settlement(session, settlement_id)

    async def review(self, settlement_id: int, data: ReviewIn, *, actor: str) -> SettlementInfo:
        """Approves or rejects (with the reason) a pending settlement, once."""
        now = self._clock()
        target = SettlementStatus.APPROVED if data.decision == "approve" else SettlementStatus.REJECTED
        async with self._database.session() as session:
            current = await self._settlement(session, settlement_id)
            if current.status != SettlementStatus.PENDING.value:
                raise _reviewed_already(current)
            result = await session.execute(
                update(FeeSettlement)
                .where(FeeSettlement.id == settlement_id, FeeSettlement.status == SettlementStatus.PENDING.value)
                .values(status=target.value, reason=data.reason, reviewed_by=_who(actor), reviewed_at=now)
                .execution_options(synchronize_session=False)
            )
            if cast("CursorResult[Any]", result).rowcount != 1:
                raise _reviewed_already(current)
            self._history(
                session,
                Subject.SETTLEMENT,
                settlement_id,
                data.decision,
                actor,
                now,
                {"status": {"from": SettlementStatus.PENDING.value, "to": target.value}, "reason": data.reason},
            )
            await session.flush()
            session.expire_all()
            info = await self._settlement(session, settlement_id)
        self._bus.publish(FeeReviewed(info.id, info.order_id, info.outlet_id, info.status, f"{info.amount:.2f}"))
        return info

    # -- evaluations --------------------------------------------------------------------------------------

    async def evaluate(self, outlet_id: int, data: EvaluationIn, *, actor: str) -> EvaluationInfo:
        """An evaluation of an outlet (retired ones too: an evaluation may come late), optionally of one of its
        orders."""
        now = self._clock()
        async with self._database.session() as session:
            if await session.get(Outlet, outlet_id) is None:
                raise OutletNotFound(outlet_id)
            if data.order_id is not None:
                order_outlet = await session.scalar(select(WorkOrder.outlet_id).where(WorkOrder.id == data.order_id))
                if order_outlet is None:
                    raise InvalidOutletInput("order_id", "no work order with this id")
                if order_outlet != outlet_id:
                    raise InvalidOutletInput("order_id", "the work order is another outlet's")
            row = OutletEvaluation(
                outlet_id=outlet_id,
                order_id=data.order_id,
                score=data.score,
                comment=data.comment,
                evaluated_by=_who(actor),
                evaluated_at=now,
            )
            session.add(row)
            await session.flush()
            self._history(
                session,
                Subject.EVALUATION,
                row.id,
                "evaluate",
                actor,
                now,
                {"outlet_id": outlet_id, "order_id": data.order_id, "score": data.score, "comment": data.comment},
            )
            return evaluation_info(row)

    async def evaluations(self, outlet_id: int, query: EvaluationQuery) -> tuple[list[EvaluationInfo], float | None]:
        """An outlet's evaluations, newest first, and its average score over all of them (None: never scored)."""
        async with self._database.session() as session:
            if await session.get(Outlet, outlet_id) is None:
                raise OutletNotFound(outlet_id)
            rows = await session.scalars(
                select(OutletEvaluation)
                .where(OutletEvaluation.outlet_id == outlet_id)
                .order_by(OutletEvaluation.evaluated_at.desc(), OutletEvaluation.id.desc())
                .limit(query.limit)
                .offset(query.offset)
            )
            items = [evaluation_info(row) for row in rows]
            average = await session.scalar(
                select(func.avg(OutletEvaluation.score)).where(OutletEvaluation.outlet_id == outlet_id)
            )
        return items, None if average is None else round(float(average), 2)


async def _hold_outlet(session: AsyncSession, outlet_id: int, *conditions: ColumnElement[bool]) -> bool:
    """Holds the outlet's row until the transaction ends (a write that changes nothing), if it meets
    ``conditions``; whether it did. A write to it by another transaction waits meanwhile, on both engines."""
    held = await session.execute(
        update(Outlet)
        .where(Outlet.id == outlet_id, *conditions)
        .values(updated_at=Outlet.updated_at)
        .execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", held).rowcount == 1


async def _open_order_id(session: AsyncSession, record_id: int) -> int | None:
    """The record's open (dispatched) work order, if it has one."""
    return await session.scalar(
        select(WorkOrder.id).where(
            WorkOrder.service_record_id == record_id, WorkOrder.status == OrderStatus.DISPATCHED.value
        )
    )


def _settlement_rows() -> Select[FeeSettlement, WorkOrder, str]:
    """A settlement with its order and the order's outlet's name: what a settlement is shown with."""
    return (
        select(FeeSettlement, WorkOrder, Outlet.name)
        .join(WorkOrder, WorkOrder.id == FeeSettlement.order_id)
        .join(Outlet, Outlet.id == WorkOrder.outlet_id)
    )


def _no_match(facts: ServiceRecordFacts) -> RuleRefused:
    region, category = facts.region, facts.product_category
    if not region:
        message = "the record's customer has no region: give the customer one, or name the outlet (an override)"
    elif not category:
        message = "the record names no product (so no category): give it the product, or name the outlet (an override)"
    else:
        message = f"no active outlet in region {region!r} serves the product category {category!r}"
    return RuleRefused("no_matching_outlet", message, service_record_id=facts.id, region=region, category=category)


def _retired(outlet: Outlet, message: str) -> RuleRefused:
    retired_at = None if outlet.retired_at is None else outlet.retired_at.isoformat()
    return RuleRefused("outlet_retired", message, outlet_id=outlet.id, retired_at=retired_at)


def _open_order(record_id: int, order_id: int) -> RuleRefused:
    return RuleRefused(
        "open_order_exists",
        f"the record has an open work order already ({order_id}): cancel it to dispatch again",
        service_record_id=record_id,
        order_id=order_id,
    )


def _order_not_open(order_id: int, status: str) -> RuleRefused:
    return RuleRefused(
        "order_not_open",
        f"the work order is {status}; only a dispatched order takes feedback or a cancellation",
        order_id=order_id,
        status=status,
        allowed_from=[OrderStatus.DISPATCHED.value],
    )


def _reviewed_already(current: SettlementInfo) -> RuleRefused:
    return RuleRefused(
        "settlement_reviewed",
        f"the fee settlement is {current.status} already; a settlement is reviewed once",
        settlement_id=current.id,
        status=current.status,
        allowed_from=[SettlementStatus.PENDING.value],
    )
