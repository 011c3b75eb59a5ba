"""Follow-ups and reminders (跟进提醒): which open service records are due or overdue, and the job that pushes them.

A record is **due** when it is still someone's work (new, assigned, in progress) and its follow-up date is today
or earlier in the center's calendar (``flows.timezone``), or its appointment is within the lead time
(``desk.appointment_lead_minutes``) or past. It is **overdue** when its follow-up date has passed, or its
appointment is more than ``desk.appointment_grace_minutes`` past while nobody has started on it (new, assigned).

:class:`ReminderJob` runs every ``desk.reminder_interval`` seconds: it pushes a ``reminder`` frame to the owner
(``assigned_to``) of each record that became due, and one ``overdue`` frame per pass to the service desk
(``desk.work``: the back office and supervisors' board) listing the records that became overdue. What was pushed is
kept in ``desk_reminders`` per record and occasion (the follow-up date, the appointment time): a record is pushed
once per occasion, across restarts and engines, and again only when its date is moved. A reminder is claimed only
while its owner has a page open, so that it reaches them when they come back; the desk's notice is claimed at once
(the board reads the whole list from the API when it opens). The same pass makes the visits of complaints resolved
lately (:meth:`crm_bridge.visits.Visits.for_resolved_complaints`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from callcenter.auth.permissions import Permission
from callcenter.db import ConstraintViolation, Database, DatabaseError, utcnow
from callcenter.web.ws import Hub
from crm_bridge.models import OPEN_STATUSES, Customer, RecordStatus, ServiceRecord
from crm_bridge.visit_models import DeskReminder, ReminderKind
from crm_bridge.visits import Visits

log = logging.getLogger("crm_bridge.desk")

# Records looked at per pass and kind; the next pass takes the rest.
PASS_BATCH = 500
# Records listed in one overdue frame (the count says how many there were).
FRAME_RECORDS = 50

_OPEN = tuple(status.value for status in OPEN_STATUSES)
_NOT_STARTED = (RecordStatus.NEW.value, RecordStatus.ASSIGNED.value)


@dataclass(frozen=True, slots=True)
class DeskRules:
    zone: ZoneInfo
    appointment_lead: timedelta = timedelta(minutes=60)
    appointment_grace: timedelta = timedelta(minutes=30)

    def today(self, now: datetime) -> date:
        """The center's date at ``now``."""
        return now.astimezone(self.zone).date()


def _occasion_conditions(
    kind: ReminderKind, rules: DeskRules, now: datetime
) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """When a record's follow-up date and when its appointment make it due (``reminder``) or overdue, at ``now``:
    the rule of :func:`occasions`, in SQL."""
    today = rules.today(now)
    if kind == ReminderKind.REMINDER:
        return ServiceRecord.follow_up <= today, ServiceRecord.appointment_at <= now + rules.appointment_lead
    return ServiceRecord.follow_up < today, and_(
        ServiceRecord.appointment_at < now - rules.appointment_grace,
        ServiceRecord.status.in_(_NOT_STARTED),
    )


def due_condition(rules: DeskRules, now: datetime) -> ColumnElement[bool]:
    return and_(ServiceRecord.status.in_(_OPEN), or_(*_occasion_conditions(ReminderKind.REMINDER, rules, now)))


def overdue_condition(rules: DeskRules, now: datetime) -> ColumnElement[bool]:
    return and_(ServiceRecord.status.in_(_OPEN), or_(*_occasion_conditions(ReminderKind.OVERDUE, rules, now)))


def unclaimed_condition(kind: ReminderKind, rules: DeskRules, now: datetime) -> ColumnElement[bool]:
    """Records with a due (``reminder``) or overdue occasion of ``kind`` that no claim names yet."""

    def claimed(same: ColumnElement[bool]) -> ColumnElement[bool]:
        return exists().where(DeskReminder.record_id == ServiceRecord.id, DeskReminder.kind == kind.value, same)

    follow_up, appointment = _occasion_conditions(kind, rules, now)
    return and_(
        ServiceRecord.status.in_(_OPEN),
        or_(
            and_(follow_up, ~claimed(DeskReminder.follow_up == ServiceRecord.follow_up)),
            and_(appointment, ~claimed(DeskReminder.appointment_at == ServiceRecord.appointment_at)),
        ),
    )


def occasions(record: ServiceRecord, rules: DeskRules, now: datetime) -> tuple[list[str], list[str]]:
    """The occasions ``record`` is due on and those it is overdue on, at ``now`` (pure: the job's rule)."""
    due: list[str] = []
    overdue: list[str] = []
    if record.status not in _OPEN:
        return due, overdue
    today = rules.today(now)
    if record.follow_up is not None and record.follow_up <= today:
        due.append(f"follow_up:{record.follow_up.isoformat()}")
        if record.follow_up < today:
            overdue.append(f"overdue:follow_up:{record.follow_up.isoformat()}")
    if record.appointment_at is not None and record.appointment_at <= now + rules.appointment_lead:
        when = record.appointment_at.isoformat()
        due.append(f"appointment:{when}")
        if record.appointment_at < now - rules.appointment_grace and record.status in _NOT_STARTED:
            overdue.append(f"overdue:appointment:{when}")
    return due, overdue


def desk_item(record: ServiceRecord, customer_name: str | None, rules: DeskRules, now: datetime) -> dict[str, Any]:
    """A due or overdue record as the desk, the frames and the board show it (caller text verbatim)."""
    due, overdue = occasions(record, rules, now)
    return {
        "id": record.id,
        "type": record.type,
        "status": record.status,
        "content": record.content,
        "customer": None if record.customer_id is None else {"id": record.customer_id, "name": customer_name},
        "caller_number": record.caller_number,
        "caller_name": record.caller_name,
        "follow_up": record.follow_up.isoformat() if record.follow_up else None,
        "appointment_at": record.appointment_at.isoformat() if record.appointment_at else None,
        "assigned_to": record.assigned_to,
        "due": sorted({occasion.split(":", 1)[0] for occasion in due}),
        "overdue": sorted({occasion.split(":", 2)[1] for occasion in overdue}),
        "created_at": record.created_at.isoformat(),
    }


def _owner_condition(owner: int | str | None) -> list[ColumnElement[bool]]:
    if owner == "all":
        return []
    if owner is None:
        return [ServiceRecord.assigned_to.is_(None)]
    return [ServiceRecord.assigned_to == owner]


def urgency(record: ServiceRecord, rules: DeskRules, now: datetime) -> tuple[bool, datetime]:
    """How urgent a due record is, smallest first: overdue before not, then by when it fell due (a follow-up at
    its day's start in the center's zone, an appointment at its time; the earlier of the two)."""
    _, overdue = occasions(record, rules, now)
    moments = []
    if record.follow_up is not None:
        moments.append(datetime.combine(record.follow_up, time(0), rules.zone))
    if record.appointment_at is not None:
        moments.append(record.appointment_at)
    return not overdue, min(moments) if moments else datetime.max.replace(tzinfo=UTC)


class Desk:
    """Due and overdue records, read for the desk, the agent's desktop and the supervisor's board."""

    def __init__(self, database: Database, rules: DeskRules, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._database = database
        self.rules = rules
        self._clock = clock

    async def _items(
        self, condition: ColumnElement[bool], owner: int | str | None, limit: int, now: datetime
    ) -> list[Any]:
        """The ``limit`` most urgent records that meet ``condition`` (see :func:`urgency`), with their customers'
        names. Urgency takes the earlier of two columns and the center's zone, which SQL cannot order by on both
        engines alike: the database gives the most urgent by each column (overdue first), and the page is the most
        urgent of the two lists, which holds every record of the true page."""
        overdue_first = case((overdue_condition(self.rules, now), 0), else_=1)
        found: dict[int, Any] = {}
        async with self._database.session() as session:
            for moment in (ServiceRecord.follow_up, ServiceRecord.appointment_at):
                rows = await session.execute(
                    select(ServiceRecord, Customer.name)
                    .outerjoin(Customer, Customer.id == ServiceRecord.customer_id)
                    .where(condition, *_owner_condition(owner))
                    # NULLS LAST spelled out: the two engines put them at opposite ends by default.
                    .order_by(overdue_first, moment.asc().nulls_last(), ServiceRecord.id)
                    .limit(limit)
                )
                for row in rows:
                    found.setdefault(row[0].id, row)
        ranked = sorted(found.values(), key=lambda row: (*urgency(row[0], self.rules, now), row[0].id))
        return ranked[:limit]

    async def due(self, owner: int | str | None, *, limit: int = 100) -> dict[str, Any]:
        """The due records of ``owner`` (a user id, None: nobody's, "all"), overdue first."""
        now = self._clock()
        rows = await self._items(due_condition(self.rules, now), owner, limit, now)
        items = [desk_item(record, name, self.rules, now) for record, name in rows]
        return {
            "items": items,
            "today": self.rules.today(now).isoformat(),
            "due": len(items),
            "overdue": sum(1 for item in items if item["overdue"]),
        }

    async def overdue(self, owner: int | str | None, *, limit: int = 100) -> dict[str, Any]:
        """The overdue records (a page of them) with the board's counts: in all, per owner and per type."""
        now = self._clock()
        condition = overdue_condition(self.rules, now)
        rows = await self._items(condition, owner, limit, now)
        async with self._database.session() as session:
            by_owner = (
                await session.execute(
                    select(ServiceRecord.assigned_to, func.count())
                    .where(condition)
                    .group_by(ServiceRecord.assigned_to)
                    .order_by(ServiceRecord.assigned_to)
                )
            ).all()
            by_type = (
                await session.execute(
                    select(ServiceRecord.type, func.count())
                    .where(condition)
                    .group_by(ServiceRecord.type)
                    .order_by(ServiceRecord.type)
                )
            ).all()
        return {
            "items": [desk_item(record, name, self.rules, now) for record, name in rows],
            "today": self.rules.today(now).isoformat(),
            "counts": {
                "total": sum(count for _, count in by_owner),
                "by_owner": [{"user_id": user_id, "count": count} for user_id, count in by_owner],
                "by_type": {record_type: count for record_type, count in by_type},
            },
        }


class ReminderJob:
    """The periodic pass: reminders to owners, overdue notices to the desk, visits for resolved complaints."""

    def __init__(
        self,
        database: Database,
        desk: Desk,
        hub: Hub,
        visits: Visits,
        *,
        interval: float,
        complaint_visit_window: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._database = database
        self._desk = desk
        self._hub = hub
        self._visits = visits
        self._interval = interval
        self._complaint_window = complaint_visit_window
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.passes = 0
        self.reminded = 0
        self.flagged = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="crm-desk-reminders")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self._interval)

    async def run_once(self) -> None:
        """One pass; an outage (or any failure) is one warning until a pass works again, never a traceback each."""
        try:
            await self._pass()
        except DatabaseError as exc:
            self._failed(exc)
        except Exception as exc:
            self._failed(exc, unexpected=True)
        else:
            if self._failing:
                log.info("desk reminders work again")
            self._failing = False
        self.passes += 1

    def _failed(self, exc: Exception, *, unexpected: bool = False) -> None:
        if self._failing:
            log.debug("desk reminders still failing: %s", exc)
            return
        self._failing = True
        # The first unexpected failure keeps its traceback (a bug to find); an outage needs none.
        log.warning("desk reminders paused until the next pass works: %s", exc, exc_info=unexpected)

    async def _pass(self) -> None:
        now = self._clock()
        await self._remind(now)
        await self._flag_overdue(now)
        await self._visits.for_resolved_complaints(within=self._complaint_window)

    async def _unclaimed(self, kind: ReminderKind, now: datetime, owners: Iterable[int] | None = None) -> list[Any]:
        """The records with an occasion of ``kind`` not pushed yet: (record, customer name, its fresh occasions).

        The database is asked only for records with such an occasion (the claims keep the date or time they were
        about), in batches by id, so a backlog claimed long ago costs nothing at each pass."""
        rules = self._desk.rules
        condition = unclaimed_condition(kind, rules, now)
        if owners is not None:
            condition = and_(condition, ServiceRecord.assigned_to.in_(list(owners)))
        found = []
        after = 0
        while True:
            async with self._database.session() as session:
                rows = (
                    await session.execute(
                        select(ServiceRecord, Customer.name)
                        .outerjoin(Customer, Customer.id == ServiceRecord.customer_id)
                        .where(condition, ServiceRecord.id > after)
                        .order_by(ServiceRecord.id)
                        .limit(PASS_BATCH)
                    )
                ).all()
                ids = [record.id for record, _ in rows]
                claimed = set()
                if ids:
                    claimed = set(
                        (
                            await session.execute(
                                select(DeskReminder.record_id, DeskReminder.occasion).where(
                                    DeskReminder.record_id.in_(ids)
                                )
                            )
                        ).all()
                    )
            for record, name in rows:
                due, late = occasions(record, rules, now)
                wanted = late if kind == ReminderKind.OVERDUE else due
                fresh = [occasion for occasion in wanted if (record.id, occasion) not in claimed]
                if fresh:
                    found.append((record, name, fresh))
            if len(rows) < PASS_BATCH:
                return found
            after = ids[-1]

    @staticmethod
    def _claims(record: ServiceRecord, fresh: Iterable[str], kind: ReminderKind, now: datetime) -> list[DeskReminder]:
        return [
            DeskReminder(
                record_id=record.id,
                occasion=occasion,
                kind=kind.value,
                follow_up=record.follow_up if "follow_up:" in occasion else None,
                appointment_at=record.appointment_at if "appointment:" in occasion else None,
                sent_at=now,
            )
            for occasion in fresh
        ]

    async def _claim(self, claims: list[DeskReminder]) -> bool:
        """Keeps the occasions as pushed; False when another pass or engine claimed one of them first."""
        try:
            async with self._database.session() as session:
                session.add_all(claims)
        except ConstraintViolation:
            return False
        return True

    async def _remind(self, now: datetime) -> None:
        rules = self._desk.rules
        # Only the records of owners with a page open: the others are reminded when they open one.
        online = {client.who.user_id for client in self._hub.recipients()}
        if not online:
            return
        for record, name, fresh in await self._unclaimed(ReminderKind.REMINDER, now, online):
            owner = record.assigned_to
            if owner is None or not self._hub.recipients(user_id=owner):
                continue
            if not await self._claim(self._claims(record, fresh, ReminderKind.REMINDER, now)):
                continue
            # The record under a key of its own: its "type" would overwrite the frame's.
            self._hub.send("reminder", {"record": desk_item(record, name, rules, now)}, user_id=owner)
            self.reminded += 1

    async def _flag_overdue(self, now: datetime) -> None:
        rules = self._desk.rules
        found = await self._unclaimed(ReminderKind.OVERDUE, now)
        newly: list[dict[str, Any]] = []
        for start in range(0, len(found), PASS_BATCH):
            batch = found[start : start + PASS_BATCH]
            claims = [
                claim for record, _, fresh in batch for claim in self._claims(record, fresh, ReminderKind.OVERDUE, now)
            ]
            # One transaction a batch; when another engine claimed some of them meanwhile, one record at a time.
            if await self._claim(claims):
                newly += [desk_item(record, name, rules, now) for record, name, _ in batch]
                continue
            for record, name, fresh in batch:
                if await self._claim(self._claims(record, fresh, ReminderKind.OVERDUE, now)):
                    newly.append(desk_item(record, name, rules, now))
        if not newly:
            return
        self.flagged += len(newly)
        self._hub.send(
            "overdue",
            {"records": newly[:FRAME_RECORDS], "new": len(newly)},
            permission=Permission.DESK_WORK,
        )


def owner_of(value: str, me: int) -> int | str | None:
    """A due list's ``owner=`` as :meth:`Desk.due` takes it: "me" is the caller, "none" nobody, "all" everyone."""
    if value == "me":
        return me
    if value == "none":
        return None
    if value == "all":
        return "all"
    return int(value)
