"""The live board: every seat and every queue as a supervisor sees them right now.

The live model says what is happening (who talks, who waits, since when); today's figures (calls handled per
seat, service level, abandons, average wait and talk per queue) come from the day's call records, folded in as
each record is written (``CallRecorded``) and loaded again from the table when the engine starts, so a restart
loses none of them. :func:`build_board` is pure: a model, the time, who sits where and the day's tally in, plain
JSON-ready data out. The same data feeds ``GET /api/v1/board``, the websocket's ``board`` frames and the
Prometheus gauges (:class:`BoardCollector`).

Caller numbers and names are the caller's own text: they are passed on verbatim (JSON escapes them; a page must
insert them as text, never as HTML).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client.core import GaugeMetricFamily, Metric

from callcenter.auth.directory import UserDirectory
from callcenter.db import DatabaseError
from callcenter.model import AgentState, AgentStatus, Call, LiveModel
from calls.ports import CallRecords, FinishedCall
from seats.ports import SeatDirectory
from supervisor.stats import ANSWER_LOOKBACK, bucket_start, stays

log = logging.getLogger("callcenter.supervisor")

BUSY = frozenset({AgentStatus.RINGING, AgentStatus.ON_CALL, AgentStatus.WRAP_UP})
# Seconds between two lookups of seats the live model shows but the directory does not know.
UNKNOWN_SEAT_REFRESH = 2.0


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


def _ratio(part: float, whole: float, digits: int = 4) -> float | None:
    return round(part / whole, digits) if whole else None


@dataclass(frozen=True, slots=True)
class SeatInfo:
    """Who is logged in to a seat, with their name and teams, for the board."""

    user_id: int
    username: str
    display_name: str
    teams: tuple[str, ...] = ()


@dataclass(slots=True)
class QueueDay:
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    within: int = 0
    wait_total: float = 0.0
    wait_count: int = 0
    talk_total: float = 0.0
    talk_count: int = 0


@dataclass(slots=True)
class SeatDay:
    handled: int = 0
    by_hour: dict[int, int] = field(default_factory=dict)


class Tally:
    """Today's finished calls (in the center's time zone), from their records; each record is counted once."""

    def __init__(self, zone: ZoneInfo, service_level: float) -> None:
        self.zone = zone
        self.service_level = service_level
        self.day: date | None = None
        self.queues: dict[str, QueueDay] = {}
        self.seats: dict[str, SeatDay] = {}
        self._seen: set[str] = set()

    def roll(self, now: datetime) -> None:
        """Starts a new day at local midnight."""
        today = now.astimezone(self.zone).date()
        if today != self.day:
            self.day = today
            self.queues = {}
            self.seats = {}
            self._seen = set()

    def fold(self, linkedid: str, started_at: datetime, segments: str | None, now: datetime) -> bool:
        """Adds one call record's queue stays; False when it was counted already."""
        self.roll(now)
        if linkedid in self._seen:
            return False
        self._seen.add(linkedid)
        today = started_at.astimezone(self.zone).date() == self.day
        for stay in stays(segments):
            if today:
                queue = self.queues.setdefault(stay.queue, QueueDay())
                queue.offered += 1
                if stay.answered:
                    queue.answered += 1
                    queue.within += stay.within(self.service_level)
                    if stay.wait is not None:
                        queue.wait_total += stay.wait
                        queue.wait_count += 1
                    if stay.talk is not None:
                        queue.talk_total += stay.talk
                        queue.talk_count += 1
                elif stay.abandoned:
                    queue.abandoned += 1
            if stay.agent and stay.answered_at is not None:
                answered = stay.answered_at.astimezone(self.zone)
                if answered.date() == self.day:
                    seat = self.seats.setdefault(stay.agent, SeatDay())
                    seat.handled += 1
                    seat.by_hour[answered.hour] = seat.by_hour.get(answered.hour, 0) + 1
        return True


def _current_call(agent: AgentState, call: Call | None, now: float) -> dict[str, Any] | None:
    if call is None:
        return None
    queue, answered_at = call.queue, None
    for segment in reversed(call.segments):
        if segment.agent == agent.interface or (not segment.agent and agent.status is AgentStatus.RINGING):
            queue, answered_at = segment.queue, segment.answered_at
            break
    begun = answered_at if answered_at is not None else call.started
    return {
        "linkedid": call.linkedid,
        "queue": queue or None,
        "caller_number": call.caller_number,
        "caller_name": call.caller_name,
        "did": call.did or None,
        "started_at": _iso(call.started),
        "answered_at": _iso(answered_at),
        # Since this seat answered; while it rings, since the call began.
        "duration": round(max(0.0, now - begun), 1),
    }


def _seat(
    interface: str,
    agent: AgentState | None,
    info: SeatInfo | None,
    model: LiveModel,
    day: SeatDay | None,
    now: float,
    hour: int,
) -> dict[str, Any]:
    status = agent.status if agent is not None else AgentStatus.LOGGED_OUT
    call = model.calls.get(agent.linkedid) if agent is not None and agent.linkedid else None
    return {
        "interface": interface,
        "user": info.username if info else None,
        "display_name": info.display_name if info else None,
        "teams": list(info.teams) if info else [],
        "state": str(status),
        "since": _iso(agent.since) if agent is not None else None,
        "state_seconds": round(max(0.0, now - agent.since), 1) if agent is not None else None,
        "pause_reason": (agent.pause_reason or None) if agent is not None and agent.paused else None,
        "queues": sorted(agent.queues) if agent is not None else [],
        "call": _current_call(agent, call, now) if agent is not None and status in BUSY else None,
        "handled_this_hour": day.by_hour.get(hour, 0) if day else 0,
        "handled_today": day.handled if day else 0,
    }


def _queue(name: str, model: LiveModel, day: QueueDay | None, now: float) -> dict[str, Any]:
    state = model.queues.get(name)
    agents = {"available": 0, "busy": 0, "paused": 0}
    waiting = 0
    longest = 0.0
    if state is not None:
        waiting = len(state.waiting)
        longest = state.longest_wait(now)
        for interface in state.members:
            agent = model.agents.get(interface)
            if agent is None:
                continue
            if agent.status in BUSY:
                agents["busy"] += 1
            elif agent.status is AgentStatus.PAUSED:
                agents["paused"] += 1
            elif agent.status is AgentStatus.AVAILABLE:
                agents["available"] += 1
    day = day or QueueDay()
    return {
        "queue": name,
        "waiting": waiting,
        "longest_wait": round(longest, 1),
        "agents": agents,
        "offered": day.offered,
        "answered": day.answered,
        "abandoned": day.abandoned,
        "abandon_rate": _ratio(day.abandoned, day.offered),
        "answered_within_sl": day.within,
        "service_level": _ratio(day.within, day.offered),
        "avg_wait": _ratio(day.wait_total, day.wait_count, 1),
        "avg_talk": _ratio(day.talk_total, day.talk_count, 1),
    }


def build_board(
    model: LiveModel,
    now: float,
    *,
    directory: Mapping[str, SeatInfo],
    tally: Tally,
    version: int = 0,
    engine: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole board as plain data (``now`` is the live model's clock: epoch seconds)."""
    moment = datetime.fromtimestamp(now, UTC)
    tally.roll(moment)
    hour = moment.astimezone(tally.zone).hour
    interfaces = sorted(
        {interface for interface, agent in model.agents.items() if agent.status is not AgentStatus.LOGGED_OUT}
        | set(directory)
    )
    seats = [
        _seat(
            interface,
            model.agents.get(interface),
            directory.get(interface),
            model,
            tally.seats.get(interface),
            now,
            hour,
        )
        for interface in interfaces
    ]
    queues = [
        _queue(name, model, tally.queues.get(name), now) for name in sorted(set(model.queues) | set(tally.queues))
    ]
    states: dict[str, int] = dict.fromkeys((str(status) for status in AgentStatus), 0)
    for seat in seats:
        states[seat["state"]] += 1
    return {
        # First, so that a reader can tell frames apart without parsing the rest.
        "version": version,
        "day": tally.day.isoformat() if tally.day else None,
        "timezone": tally.zone.key,
        "service_level_seconds": tally.service_level,
        "seats": seats,
        "queues": queues,
        "totals": {
            "seats": states,
            "waiting": sum(queue["waiting"] for queue in queues),
            "handled_today": sum(day.handled for day in tally.seats.values()),
        },
        "engine": dict(engine or {}),
    }


class BoardService:
    """Holds who sits where and today's tally; builds the board from the live model on demand.

    Who sits where comes from the seats (``seats``) with names and teams from the core's user directory
    (``users``); the day's figures from the call records (``calls``): ports given by the composition root.
    """

    def __init__(
        self,
        calls: CallRecords,
        seats: SeatDirectory,
        users: UserDirectory,
        model: Callable[[], LiveModel],
        *,
        zone: ZoneInfo,
        service_level: float,
        engine: Callable[[], Mapping[str, Any]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._calls = calls
        self._seats = seats
        self._users = users
        self._model = model
        self._engine = engine
        self._clock = clock
        self.tally = Tally(zone, service_level)
        self.directory: dict[str, SeatInfo] = {}
        # Counts the changes seen (bus events); a frame carries the count it was built at.
        self.version = 0
        self._refresh: asyncio.Task[None] | None = None
        self._unknown_refreshed_at = -UNKNOWN_SEAT_REFRESH

    def touch(self) -> int:
        self.version += 1
        return self.version

    def snapshot(self) -> dict[str, Any]:
        model = self._model()
        if any(
            interface not in self.directory
            for interface, agent in model.agents.items()
            if agent.status is not AgentStatus.LOGGED_OUT
        ):
            # A seat Asterisk knows but the directory does not: its login row may have been written just after
            # the event that showed it. Looked up again, at most every few seconds.
            self._refresh_soon()
        return build_board(
            model,
            self._clock(),
            directory=self.directory,
            tally=self.tally,
            version=self.version,
            engine=self._engine() if self._engine else None,
        )

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def load_directory(self) -> None:
        seated = await self._seats.seated()
        ids = [seat.user_id for seat in seated]
        users = await self._users.users(ids)
        teams = await self._users.teams_of(ids)
        self.directory = {
            seat.interface: SeatInfo(user.id, user.username, user.display_name, teams.get(user.id, ()))
            for seat in seated
            # A user deleted between the two reads: their seat went with them.
            if (user := users.get(seat.user_id)) is not None
        }

    def _refresh_soon(self) -> None:
        now = time.monotonic()
        if now - self._unknown_refreshed_at < UNKNOWN_SEAT_REFRESH:
            return
        self._unknown_refreshed_at = now
        try:
            self.refresh_directory()
        except RuntimeError:
            # No event loop (a synchronous caller): the next snapshot in the loop will do it.
            self._unknown_refreshed_at = 0.0

    def refresh_directory(self) -> None:
        """Reloads who sits where in the background (a seat logged in or out); one reload at a time."""
        if self._refresh is not None and not self._refresh.done():
            return
        self._refresh = asyncio.get_running_loop().create_task(self._reload(), name="board-directory")

    async def _reload(self) -> None:
        try:
            await self.load_directory()
        except DatabaseError as exc:
            log.warning("board: could not reload the seats: %s", exc)

    async def load_today(self) -> int:
        """Folds in every record of today (the engine just started); returns how many were new."""
        now = self.now()
        midnight = bucket_start(now, "day", self.tally.zone).astimezone(UTC)
        calls = await self._calls.started_between(midnight - ANSWER_LOOKBACK)
        return sum(self.tally.fold(call.linkedid, call.started_at, call.segments, now) for call in calls)

    def record(self, call: FinishedCall) -> bool:
        """Folds in one call's record once it is written."""
        return self.tally.fold(call.linkedid, call.started_at, call.segments, self.now())

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)


# -- Prometheus ---------------------------------------------------------------------------------------------


def _gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


class BoardCollector:
    """The board's figures as gauges, computed when /metrics is scraped (no series outlive a seat or queue)."""

    def __init__(self, board: BoardService, extra: Callable[[], Mapping[str, float]] | None = None) -> None:
        self._board = board
        self._extra = extra

    def _families(self) -> dict[str, GaugeMetricFamily]:
        return {
            "waiting": _gauge("callcenter_queue_waiting", "Callers waiting in the queue", ["queue"]),
            "longest": _gauge("callcenter_queue_longest_wait_seconds", "The longest wait now", ["queue"]),
            "agents": _gauge("callcenter_queue_agents", "Queue members by state", ["queue", "state"]),
            "offered": _gauge("callcenter_queue_offered_today", "Stays in the queue today", ["queue"]),
            "answered": _gauge("callcenter_queue_answered_today", "Stays answered today", ["queue"]),
            "abandoned": _gauge("callcenter_queue_abandoned_today", "Callers who hung up waiting today", ["queue"]),
            "abandon_rate": _gauge("callcenter_queue_abandon_rate", "Abandoned / offered today", ["queue"]),
            "service_level": _gauge(
                "callcenter_queue_service_level", "Answered within the service level / offered today", ["queue"]
            ),
            "avg_wait": _gauge("callcenter_queue_avg_wait_seconds", "Average wait of answered calls today", ["queue"]),
            "avg_talk": _gauge("callcenter_queue_avg_talk_seconds", "Average talk time today", ["queue"]),
            "seat_state": _gauge("callcenter_seat_state", "1 for the seat's current state", ["agent", "state"]),
            "seat_seconds": _gauge("callcenter_seat_state_seconds", "Seconds in the current state", ["agent"]),
            "seat_handled": _gauge("callcenter_seat_handled_today", "Calls the seat answered today", ["agent"]),
            "seats": _gauge("callcenter_seats", "Seats by state", ["state"]),
        }

    def describe(self) -> Iterable[Metric]:
        families = list(self._families().values())
        if self._extra is not None:
            families += [_gauge(name, name) for name in self._extra()]
        return families

    def collect(self) -> Iterable[Metric]:
        board = self._board.snapshot()
        families = self._families()
        for queue in board["queues"]:
            name = queue["queue"]
            families["waiting"].add_metric([name], queue["waiting"])
            families["longest"].add_metric([name], queue["longest_wait"])
            for state, count in queue["agents"].items():
                families["agents"].add_metric([name, state], count)
            for key in ("offered", "answered", "abandoned", "abandon_rate", "service_level", "avg_wait", "avg_talk"):
                if queue[key] is not None:
                    families[key].add_metric([name], queue[key])
        for seat in board["seats"]:
            interface = seat["interface"]
            for state in AgentStatus:
                families["seat_state"].add_metric([interface, str(state)], 1.0 if seat["state"] == state else 0.0)
            if seat["state_seconds"] is not None:
                families["seat_seconds"].add_metric([interface], seat["state_seconds"])
            families["seat_handled"].add_metric([interface], seat["handled_today"])
        for state, count in board["totals"]["seats"].items():
            families["seats"].add_metric([state], count)
        yield from families.values()
        if self._extra is not None:
            for name, value in self._extra().items():
                family = _gauge(name, EXTRA_HELP.get(name, name))
                family.add_metric([], value)
                yield family


EXTRA_HELP = {
    "callcenter_spy_sessions_active": "Listen, whisper or barge calls running now",
    "callcenter_crm_outbox_pending": "Service records waiting in the outbox for the database",
}

# Seconds a seat's directory entry may be old before the periodic reload (logins also trigger one).
DIRECTORY_REFRESH = timedelta(seconds=30)
