"""Statistics from what survives a restart: the call records and the agents' login and pause intervals.

Nothing here reads the live model, so the figures of a past day are the same before and after an engine restart.
Every figure is computed in Python from the rows of the range (bound parameters only), so SQLite and PostgreSQL
give the same answers and the center's time zone (``[flows] timezone``) decides where a day or an hour begins.

Definitions (docs/supervisor.md says the same for users):

- Call volume counts inbound calls (``direction = inbound``; a supervisor's listen call or a desk-to-desk call
  is not a customer's call, and listen calls are also told by their ``ccspy-`` linkedid) by the period their
  call started in. The ``totals`` rows count each call once, by its outcome; the ``queues`` rows count each
  stay in a queue (an expert handoff is a second stay, in the expert queue), and calls that never reached a
  queue (after hours, voicemail, hung up in the menus) in a row whose queue is empty.
- A stay is answered when a seat answered it, abandoned when the caller hung up while waiting, and within the
  service level when answered after at most ``[supervisor] service_level_seconds`` of waiting. The service
  level is answered-within over every stay offered to the queue (abandons and time-outs count against it).
- Workload attributes an answered stay to the user logged in to the answering seat at the moment it was
  answered, by the period it was answered in. Wrap-up time is not recorded by Asterisk: it is estimated as the
  queue's configured wrap-up (``[queues] wrapup_time``/``expert_wrapup_time``) per call handled, and named so.
- Business volume counts the CRM's service records created in the range, by type and current status (the CRM's
  figures, through its port).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from callcenter.web.errors import InvalidInput
from calls.ports import CallRecords
from crm_bridge.ports import BusinessVolume
from seats.ports import SeatHistory, SeatInterval

INTERVALS: Mapping[str, timedelta] = {
    "15m": timedelta(minutes=15),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}
# More rows than a chart can show: the request should use a coarser interval.
MAX_BUCKETS = 10_000
# A call answered in the range may have started this much before it (a long wait across midnight).
ANSWER_LOOKBACK = timedelta(days=1)
NO_QUEUE = ""
# The uniqueid (and so the linkedid) of every listen/whisper/barge call the engine places (supervisor.spy). The
# call recorder keeps a record of those calls too, and takes the dialplan's "s" for a DID, so the direction alone
# does not tell them from a customer's call.
SPY_CALL_PREFIX = "ccspy-"


# -- segments of a call record --------------------------------------------------------------------------------


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class Stay:
    """One stay of a call in one queue, as its call record keeps it."""

    queue: str
    agent: str
    entered: datetime | None
    answered_at: datetime | None
    wait: float | None
    talk: float | None
    abandoned: bool

    @property
    def answered(self) -> bool:
        return self.answered_at is not None

    def within(self, service_level: float) -> bool:
        return self.answered and self.wait is not None and self.wait <= service_level


def stays(segments_json: str | None) -> list[Stay]:
    """The queue stays of a call record's ``segments`` column; anything unreadable is skipped, never fatal."""
    try:
        items = json.loads(segments_json or "[]")
    except ValueError:
        return []
    found: list[Stay] = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        answered_at = _moment(item.get("answered_at"))
        found.append(
            Stay(
                queue=str(item.get("queue") or ""),
                agent=str(item.get("agent") or ""),
                entered=_moment(item.get("entered")),
                answered_at=answered_at,
                wait=_seconds(item.get("wait_time")),
                talk=_seconds(item.get("talk_time")),
                abandoned=bool(item.get("abandoned")) and answered_at is None,
            )
        )
    return found


# -- periods --------------------------------------------------------------------------------------------------


def bucket_start(moment: datetime, interval: str, zone: ZoneInfo) -> datetime:
    """The start of the period ``moment`` falls in, as an aware local time of ``zone``."""
    local = moment.astimezone(zone)
    if interval == "day":
        floor = local.replace(hour=0, minute=0, second=0, microsecond=0)
    elif interval == "hour":
        floor = local.replace(minute=0, second=0, microsecond=0)
    else:
        floor = local.replace(minute=local.minute - local.minute % 15, second=0, microsecond=0)
    # replace() kept the wall time; astimezone() settles the offset that wall time really has.
    return floor.astimezone(UTC).astimezone(zone)


def buckets(start: datetime, end: datetime, interval: str, zone: ZoneInfo) -> list[datetime]:
    """Every period that overlaps [start, end), in order, as aware local start times."""
    found: dict[datetime, datetime] = {}
    if interval == "day":
        day = start.astimezone(zone).date()
        last = (end - timedelta(microseconds=1)).astimezone(zone).date()
        while day <= last:
            local = datetime.combine(day, time(), zone)
            found[local.astimezone(UTC)] = local
            day += timedelta(days=1)
            if len(found) > MAX_BUCKETS:
                break
    else:
        step = INTERVALS[interval]
        cursor = bucket_start(start, interval, zone).astimezone(UTC)
        while cursor < end and len(found) <= MAX_BUCKETS:
            local = bucket_start(cursor, interval, zone)
            found.setdefault(local.astimezone(UTC), local)
            cursor += step
    if len(found) > MAX_BUCKETS:
        raise InvalidInput(
            f"the range has more than {MAX_BUCKETS} periods of {interval}; choose a coarser interval",
            {"fields": {"interval": interval}},
        )
    return list(found.values())


def _next_hour(moment: datetime, zone: ZoneInfo) -> datetime:
    return bucket_start(moment, "hour", zone).astimezone(UTC) + timedelta(hours=1)


def _split_by_hour(start: datetime, end: datetime, zone: ZoneInfo) -> Iterable[tuple[datetime, float]]:
    """[start, end) cut at the local hours: (the hour's local start, seconds of the span in it)."""
    cursor = start
    while cursor < end:
        boundary = min(_next_hour(cursor, zone), end)
        yield bucket_start(cursor, "hour", zone), (boundary - cursor).total_seconds()
        cursor = boundary


def resolve_range(
    start: datetime | None, end: datetime | None, *, now: datetime, zone: ZoneInfo, max_days: int
) -> tuple[datetime, datetime]:
    """The range of a request in UTC: naive times are the center's local time; by default, today so far."""

    def aware(value: datetime) -> datetime:
        return (value.replace(tzinfo=zone) if value.tzinfo is None else value).astimezone(UTC)

    begin = aware(start) if start is not None else bucket_start(now, "day", zone).astimezone(UTC)
    finish = aware(end) if end is not None else max(now, begin + timedelta(seconds=1))
    if finish <= begin:
        raise InvalidInput("'to' must be after 'from'", {"fields": {"to": finish.isoformat()}})
    if finish - begin > timedelta(days=max_days):
        raise InvalidInput(f"a range covers at most {max_days} days", {"fields": {"to": finish.isoformat()}})
    return begin, finish


def _ratio(part: float, whole: float, digits: int = 4) -> float | None:
    return round(part / whole, digits) if whole else None


# -- call volume ----------------------------------------------------------------------------------------------

VOLUME_COLUMNS = (
    "period",
    "queue",
    "offered",
    "answered",
    "abandoned",
    "after_hours",
    "voicemail",
    "abandoned_in_ivr",
    "failed",
    "answered_within_sl",
    "service_level",
    "avg_wait",
    "avg_talk",
)
OUTCOMES = ("answered", "abandoned", "after_hours", "voicemail", "abandoned_in_ivr", "failed")


@dataclass(slots=True)
class _Volume:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("offered", *OUTCOMES), 0))
    within: int = 0
    reached_queue: int = 0
    wait_total: float = 0.0
    wait_count: int = 0
    talk_total: float = 0.0
    talk_count: int = 0

    def waited(self, wait: float | None) -> None:
        if wait is not None:
            self.wait_total += wait
            self.wait_count += 1

    def talked(self, talk: float | None) -> None:
        if talk is not None:
            self.talk_total += talk
            self.talk_count += 1

    def row(self, period: datetime, queue: str | None, *, service_level_base: int) -> dict[str, Any]:
        return {
            "period": period.isoformat(),
            "queue": queue,
            **self.counts,
            "answered_within_sl": self.within,
            "service_level": _ratio(self.within, service_level_base),
            "avg_wait": _ratio(self.wait_total, self.wait_count, 3),
            "avg_talk": _ratio(self.talk_total, self.talk_count, 3),
        }


def call_volume(
    records: Iterable[tuple[datetime, str, str | None]],
    *,
    start: datetime,
    end: datetime,
    interval: str,
    zone: ZoneInfo,
    service_level: float,
) -> dict[str, Any]:
    """Pure: the call-volume tables from (started_at, outcome, segments JSON) of the range's inbound calls."""
    periods = buckets(start, end, interval, zone)
    totals = {period.astimezone(UTC): _Volume() for period in periods}
    by_queue: dict[tuple[datetime, str], _Volume] = {}
    for started_at, outcome, segments in records:
        key = bucket_start(started_at, interval, zone).astimezone(UTC)
        total = totals.get(key)
        if total is None:
            continue
        outcome = outcome if outcome in OUTCOMES else "failed"
        total.counts["offered"] += 1
        total.counts[outcome] += 1
        call_stays = stays(segments)
        if call_stays:
            total.reached_queue += 1
            total.within += call_stays[0].within(service_level)
        if outcome == "answered":
            answered = [stay for stay in call_stays if stay.answered]
            if answered:
                total.waited(sum(stay.wait or 0.0 for stay in call_stays))
                talks = [stay.talk for stay in answered if stay.talk is not None]
                total.talked(sum(talks) if talks else None)
        if not call_stays:
            row = by_queue.setdefault((key, NO_QUEUE), _Volume())
            row.counts["offered"] += 1
            row.counts[outcome] += 1
            continue
        for stay in call_stays:
            row = by_queue.setdefault((key, stay.queue), _Volume())
            row.counts["offered"] += 1
            if stay.answered:
                row.counts["answered"] += 1
                row.within += stay.within(service_level)
                row.waited(stay.wait)
                row.talked(stay.talk)
            elif stay.abandoned:
                row.counts["abandoned"] += 1
            elif outcome == "voicemail":
                # Nobody took the stay and the caller left a message (an expert nobody answered).
                row.counts["voicemail"] += 1
    local = {period.astimezone(UTC): period for period in periods}
    return {
        "interval": interval,
        "totals": [
            total.row(local[key], None, service_level_base=total.reached_queue) for key, total in totals.items()
        ],
        "queues": [
            row.row(local[key], queue or None, service_level_base=row.counts["offered"] if queue else 0)
            for (key, queue), row in sorted(by_queue.items(), key=lambda item: (item[0][0], item[0][1]))
        ],
    }


# -- workload -------------------------------------------------------------------------------------------------

WORKLOAD_COLUMNS = (
    "username",
    "user_id",
    "interfaces",
    "login_seconds",
    "pause_seconds",
    "handled",
    "talk_seconds",
    "wrapup_seconds_estimated",
    "aht_seconds",
    "calls_per_hour",
)
HOURLY_COLUMNS = ("hour", "username", "user_id", "login_seconds", "pause_seconds", "handled", "talk_seconds")


@dataclass(slots=True)
class _Work:
    user_id: int | None
    username: str | None
    interfaces: set[str] = field(default_factory=set)
    login: float = 0.0
    pause: float = 0.0
    pause_by_reason: dict[str, float] = field(default_factory=dict)
    handled: int = 0
    talk: float = 0.0
    wrapup: float = 0.0


def _clip(interval: SeatInterval, start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    begin = max(interval.started_at, start)
    finish = min(interval.ended_at or end, end)
    return (begin, finish) if finish > begin else None


class _Owners:
    """Who was logged in to a seat at a given moment, from the login intervals."""

    def __init__(self, intervals: Iterable[SeatInterval]) -> None:
        self._by_interface: dict[str, list[SeatInterval]] = {}
        for interval in intervals:
            if interval.kind == "login":
                self._by_interface.setdefault(interval.interface, []).append(interval)

    def at(self, interface: str, moment: datetime) -> SeatInterval | None:
        for interval in self._by_interface.get(interface, ()):
            if interval.started_at <= moment and (interval.ended_at is None or moment < interval.ended_at):
                return interval
        return None


def _key(user_id: int | None, interface: str) -> tuple[int, str]:
    return (user_id, "") if user_id is not None else (-1, interface)


def workload(
    intervals: Sequence[SeatInterval],
    records: Iterable[str | None],
    *,
    start: datetime,
    end: datetime,
    wrapup_for: Callable[[str], float],
    zone: ZoneInfo,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pure: the per-agent table and the per-agent per-hour table from the range's intervals and call segments.

    ``end`` is already clipped to now: an interval still open counts up to it.
    """
    agents: dict[tuple[int, str], _Work] = {}
    hours: dict[tuple[tuple[int, str], datetime], dict[str, Any]] = {}

    def agent(user_id: int | None, username: str | None, interface: str) -> tuple[tuple[int, str], _Work]:
        key = _key(user_id, interface)
        work = agents.setdefault(key, _Work(user_id, username))
        work.interfaces.add(interface)
        return key, work

    def hour_row(key: tuple[int, str], work: _Work, hour: datetime) -> dict[str, Any]:
        return hours.setdefault(
            (key, hour.astimezone(UTC)),
            {
                "hour": hour.isoformat(),
                "username": work.username,
                "user_id": work.user_id,
                "login_seconds": 0.0,
                "pause_seconds": 0.0,
                "handled": 0,
                "talk_seconds": 0.0,
            },
        )

    for interval in intervals:
        span = _clip(interval, start, end)
        if span is None:
            continue
        key, work = agent(interval.user_id, interval.username, interval.interface)
        seconds = (span[1] - span[0]).total_seconds()
        column = "login_seconds" if interval.kind == "login" else "pause_seconds"
        if interval.kind == "login":
            work.login += seconds
        else:
            work.pause += seconds
            reason = interval.reason or "unspecified"
            work.pause_by_reason[reason] = work.pause_by_reason.get(reason, 0.0) + seconds
        for hour, part in _split_by_hour(span[0], span[1], zone):
            hour_row(key, work, hour)[column] += part
    owners = _Owners(intervals)
    for segments in records:
        for stay in stays(segments):
            if not stay.agent or stay.answered_at is None or not start <= stay.answered_at < end:
                continue
            owner = owners.at(stay.agent, stay.answered_at)
            key, work = agent(owner.user_id if owner else None, owner.username if owner else None, stay.agent)
            work.handled += 1
            work.talk += stay.talk or 0.0
            work.wrapup += wrapup_for(stay.queue)
            row = hour_row(key, work, bucket_start(stay.answered_at, "hour", zone))
            row["handled"] += 1
            row["talk_seconds"] += stay.talk or 0.0
    table_rows = [
        {
            "username": work.username,
            "user_id": work.user_id,
            "interfaces": sorted(work.interfaces),
            "login_seconds": round(work.login, 3),
            "pause_seconds": round(work.pause, 3),
            "pause_by_reason": {reason: round(value, 3) for reason, value in sorted(work.pause_by_reason.items())},
            "handled": work.handled,
            "talk_seconds": round(work.talk, 3),
            "wrapup_seconds_estimated": round(work.wrapup, 3),
            "aht_seconds": _ratio(work.talk + work.wrapup, work.handled, 3),
            "calls_per_hour": _ratio(work.handled, work.login / 3600, 3),
        }
        for _, work in sorted(agents.items(), key=lambda item: (item[1].username or "~", sorted(item[1].interfaces)))
    ]
    hour_rows = []
    for (_, _), row in sorted(hours.items(), key=lambda item: (item[1]["username"] or "~", item[0][1])):
        for name in ("login_seconds", "pause_seconds", "talk_seconds"):
            row[name] = round(row[name], 3)
        hour_rows.append(row)
    return table_rows, hour_rows


# -- the service ----------------------------------------------------------------------------------------------


class StatsService:
    """The statistics, from the call records (``calls``), the seats' intervals (``seats``) and, when the CRM is
    there, its business volume (``business``): ports given by the composition root."""

    def __init__(
        self,
        calls: CallRecords,
        seats: SeatHistory,
        *,
        business: BusinessVolume | None = None,
        zone: ZoneInfo,
        service_level: float,
        wrapup_for: Callable[[str], float],
        max_days: int,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._calls = calls
        self._seats = seats
        self._business = business
        self.zone = zone
        self.service_level = service_level
        self._wrapup_for = wrapup_for
        self._max_days = max_days
        self._now = now

    def range(self, start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
        return resolve_range(start, end, now=self._now(), zone=self.zone, max_days=self._max_days)

    def _header(self, start: datetime, end: datetime) -> dict[str, Any]:
        return {
            "from": start.astimezone(self.zone).isoformat(),
            "to": end.astimezone(self.zone).isoformat(),
            "timezone": self.zone.key,
        }

    async def call_volume(self, start: datetime, end: datetime, interval: str) -> dict[str, Any]:
        found = await self._calls.started_between(start, end, direction="inbound")
        rows = [
            (call.started_at, call.outcome, call.segments)
            for call in found
            if not call.linkedid.startswith(SPY_CALL_PREFIX)
        ]
        tables = call_volume(
            rows,
            start=start,
            end=end,
            interval=interval,
            zone=self.zone,
            service_level=self.service_level,
        )
        return {**self._header(start, end), "service_level_seconds": self.service_level, **tables}

    async def workload(self, start: datetime, end: datetime) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The per-agent table (with the header) and the per-agent per-hour rows."""
        until = min(end, self._now())
        intervals = await self._seats.intervals(start, end)
        calls = await self._calls.started_between(start - ANSWER_LOOKBACK, end)
        agents, hours = workload(
            intervals,
            [call.segments for call in calls],
            start=start,
            end=max(until, start),
            wrapup_for=self._wrapup_for,
            zone=self.zone,
        )
        return {**self._header(start, end), "agents": agents}, hours

    async def business_volume(self, start: datetime, end: datetime) -> dict[str, Any]:
        header = self._header(start, end)
        if self._business is None:
            # No CRM in this engine: the supervisor does not depend on it being there.
            return {**header, "available": False, "items": [], "by_type": {}, "by_status": {}, "total": 0}
        counts = await self._business.record_counts(start, end)
        rows = sorted((count.type, count.status, count.count) for count in counts)
        by_type: dict[str, int] = {}
        by_status: dict[str, int] = {}
        for kind, status, count in rows:
            by_type[kind] = by_type.get(kind, 0) + count
            by_status[status] = by_status.get(status, 0) + count
        return {
            **header,
            "available": True,
            "items": [{"type": kind, "status": status, "count": count} for kind, status, count in rows],
            "by_type": by_type,
            "by_status": by_status,
            "total": sum(by_type.values()),
        }


def local_today(now: datetime, zone: ZoneInfo) -> date:
    return now.astimezone(zone).date()
