"""The call features' read interfaces (:mod:`calls.ports`) over ``call_records``.

:meth:`CallReads.calls_from` is on the screen-pop's path (docs/benchmarks.md, the screen-pop), so it reads on the
raw driver of one pooled connection, past SQLAlchemy's execution path: on SQLite as one function on aiosqlite's
thread (one trip to it), on PostgreSQL as one statement prepared once per connection (one round trip after the
pool's ping). The index on (caller_tail, started_at) answers it. The other reads are ordinary short sessions.

Every value is bound: caller numbers are hostile text. The only text put into the SQL is the code's own column
list and, on SQLite, a run of ``?`` as long as the list bound to it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import select

from callcenter.db import Database
from calls.models import CallRecord
from calls.ports import CallFigures, FinishedCall, PastCall
from calls.records import caller_tail, finished_call

# Distinct tails of one history read kept as prepared SQL texts on SQLite (a caller's numbers rarely pass a few).
_TEXTS_KEPT = 64

_PAST = "linkedid, started_at, caller_number, outcome, ivr_choice, agent, expert, talk_time, handoff_notes"


def _history(tails: str) -> str:
    """The newest calls of any of the tails; the (caller_tail, started_at) index answers it."""
    return (
        f"SELECT {_PAST} FROM call_records WHERE caller_tail {tails} "  # noqa: S608 (the code's constants and placeholders only)
        "ORDER BY started_at DESC LIMIT "
    )


_PG_HISTORY = _history("= ANY($1::varchar[])") + "$2"


@lru_cache(maxsize=_TEXTS_KEPT)
def _sqlite_history(count: int) -> str:
    return _history("IN (" + ", ".join("?" * count) + ")") + "?"


def _sqlite_moment(value: str) -> datetime:
    # SQLAlchemy stores UtcDateTime on SQLite as naive UTC text ("2030-01-01 09:00:00.000000").
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _past(row: Sequence[Any], started_at: datetime) -> PastCall:
    return PastCall(row[0], started_at, row[2], row[3], row[4], row[5], row[6], row[7], row[8])


def _history_sqlite(connection: sqlite3.Connection, tails: list[str], limit: int) -> list[PastCall]:
    """The read, on aiosqlite's thread (no await in here: one trip)."""
    rows = connection.execute(_sqlite_history(len(tails)), [*tails, limit]).fetchall()
    return [_past(row, _sqlite_moment(row[1])) for row in rows]


def tails_of(numbers: Sequence[str]) -> list[str]:
    """The distinct tails (:func:`calls.records.caller_tail`) of the numbers that have one, sorted."""
    return sorted({tail for tail in map(caller_tail, numbers) if tail})


_FIGURES = (CallRecord.linkedid, CallRecord.started_at, CallRecord.direction, CallRecord.outcome, CallRecord.segments)


def _finished(row: CallRecord) -> FinishedCall:
    return finished_call(vars(row))


class CallReads:
    """:class:`calls.ports.CallRecords` and :class:`calls.ports.CallHistory` over ``call_records``."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def record(self, linkedid: str) -> FinishedCall | None:
        async with self._database.session() as session:
            row = await session.scalar(select(CallRecord).where(CallRecord.linkedid == linkedid))
            return None if row is None else _finished(row)

    async def started_between(
        self, start: datetime, end: datetime | None = None, *, direction: str | None = None
    ) -> list[CallFigures]:
        query = select(*_FIGURES).where(CallRecord.started_at >= start)
        if end is not None:
            query = query.where(CallRecord.started_at < end)
        if direction is not None:
            query = query.where(CallRecord.direction == direction)
        async with self._database.session() as session:
            rows = (await session.execute(query.order_by(CallRecord.started_at, CallRecord.id))).all()
        return [CallFigures(*row) for row in rows]

    async def calls_from(self, numbers: Sequence[str], limit: int) -> list[PastCall]:
        """See :meth:`calls.ports.CallHistory.calls_from`; raises DatabaseError when the database is unreachable."""
        tails = tails_of(numbers)
        if not tails or limit <= 0:
            return []
        async with self._database.driver() as driver:
            if self._database.dialect == "sqlite":
                # aiosqlite runs a function on its connection's thread: the one trip of the read. _execute and
                # _conn are aiosqlite's private parts (as of 0.22; SQLAlchemy's adapter reaches into _conn and _tx
                # too): the screen-pop tests, the trip-counting one first, fail if they change.
                found: list[PastCall] = await driver._execute(_history_sqlite, driver._conn, tails, limit)
            else:
                rows = await driver.fetch(_PG_HISTORY, tails, limit)
                found = [_past(row, row[1].astimezone(UTC)) for row in rows]
        return found
