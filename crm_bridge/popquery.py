"""The screen-pop's read path: the files of every customer owning a calling number, and that number's last calls.

The files are the CRM's (the owners of the number key; their numbers and contacts; their latest and open service
records), read here in three statements on one pooled connection, on the raw driver rather than through
SQLAlchemy's async ORM path, which was about nine tenths of a pop's CPU (docs/benchmarks.md, the screen-pop). On
SQLite every statement through the async adapter is a round trip to aiosqlite's thread (a queue put, a thread
wake-up, a callback into the loop; a pop made twenty), so the whole read runs as one function on that thread: one
hop. On PostgreSQL the three are one statement sent straight to asyncpg (prepared once per connection), each part
an array of row values, so that the files are one round trip after the pool's ping: on a busy machine every round
trip waits for the server process to be scheduled.

The last calls are the call features' (``call_records``), asked through their port (:class:`calls.ports.CallHistory`,
given by the composition root) for the calling number and the owners' numbers; they read them the same way (one
hop, or one round trip). The CRM's numbering rules then keep the calls from the same numbers.

Every value is bound: the caller ID is hostile text. The only text put into the SQL is the code's own constants
(the tier order, the open statuses) and, on SQLite, a run of ``?`` as long as the list bound to it.

What comes back is what ``Customers.files_by_number`` and the call records gave before, to the same JSON: the
same dataclasses, the datetimes read back as aware UTC as ``callcenter.db.UtcDateTime`` does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from callcenter.db import Database
from calls.ports import CallHistory, PastCall
from crm_bridge.files import OPEN_RECORDS_MAX, OWNERS_MAX, RECENT_RECORDS
from crm_bridge.infos import ContactInfo, CustomerFile, CustomerInfo, PhoneInfo, ServiceRecordInfo
from crm_bridge.models import OPEN_STATUSES, TIER_RANK
from crm_bridge.phones import PhoneRules

# Calls shown on a pop, and candidates read to find them: a tail can match other numbers, which the rules drop.
HISTORY = 10
HISTORY_CANDIDATES = HISTORY * 5
# The calling number and the owners' numbers whose calls are shown (a switchboard's customers can have many).
NUMBERS_MAX = 50

Row = Sequence[Any]

_CUSTOMER = (
    "id, name, company, tier, address, notes, account_manager, first_contact, last_contact, churn_risk, "
    "created_at, updated_at"
)
_RECORD = (
    "id, customer_id, linkedid, type, status, content, outcome, feedback, follow_up, appointment_at, assigned_to, "
    "created_by, caller_number, caller_name, idempotency_key, created_at, updated_at"
)
_TIER_ORDER = (
    "CASE tier "
    + " ".join(f"WHEN '{tier}' THEN {rank}" for tier, rank in TIER_RANK.items())
    + f" ELSE {len(TIER_RANK)} END"
)
_IS_OPEN = "CASE WHEN status IN (" + ", ".join(f"'{status.value}'" for status in OPEN_STATUSES) + ") THEN 1 ELSE 0 END"
_NEWEST_FIRST = "created_at DESC, id DESC"


def _owners(key: str, limit: str) -> str:
    """Every customer owning a number key, best tier first; the (normalized, customer_id) index answers the inner."""
    return (
        f"SELECT {_CUSTOMER} FROM customers "  # noqa: S608 (the code's constants and placeholders only)
        f"WHERE id IN (SELECT customer_id FROM customer_phones WHERE normalized = {key}) "
        f"ORDER BY {_TIER_ORDER}, id LIMIT {limit}"
    )


def _parts(ids: str) -> str:
    """Numbers and contacts in one statement: (part, customer_id, id, a, b, c, d), phones after contacts, by id."""
    return (
        "SELECT 'phone' AS part, customer_id, id, number AS a, normalized AS b, kind AS c, NULL AS d "  # noqa: S608
        f"FROM customer_phones WHERE customer_id {ids} "
        "UNION ALL SELECT 'contact', customer_id, id, name, role, phone, email "
        f"FROM contacts WHERE customer_id {ids} "
        "ORDER BY part, id"
    )


def _records(ids: str) -> str:
    """Each customer's latest RECENT_RECORDS records and up to OPEN_RECORDS_MAX open ones, newest first."""
    return (
        f"SELECT {_RECORD}, rank, open_rank FROM ("  # noqa: S608
        f"SELECT {_RECORD}, "
        f"row_number() OVER (PARTITION BY customer_id ORDER BY {_NEWEST_FIRST}) AS rank, "
        f"row_number() OVER (PARTITION BY customer_id, {_IS_OPEN} ORDER BY {_NEWEST_FIRST}) AS open_rank, "
        f"{_IS_OPEN} AS is_open "
        f"FROM service_records WHERE customer_id {ids}) AS ranked "
        f"WHERE rank <= {RECENT_RECORDS} OR (is_open = 1 AND open_rank <= {OPEN_RECORDS_MAX}) "
        f"ORDER BY {_NEWEST_FIRST}"
    )


def _pg_files() -> str:
    """PostgreSQL: the three statements as one, each result an array of row values in its order (one round trip)."""
    owners = "(SELECT id FROM owners)"
    return (
        f"WITH owners AS ({_owners('$1', '$2')}) "  # noqa: S608 (the code's constants and placeholders only)
        f"SELECT ARRAY(SELECT ROW({_CUSTOMER}) FROM owners ORDER BY {_TIER_ORDER}, id), "
        "ARRAY(SELECT ROW(part, customer_id, id, a, b, c, d) FROM ("
        "SELECT 'phone'::varchar AS part, customer_id, id, number AS a, normalized AS b, kind AS c, NULL::varchar AS d "
        f"FROM customer_phones WHERE customer_id IN {owners} "
        "UNION ALL SELECT 'contact', customer_id, id, name, role, phone, email "
        f"FROM contacts WHERE customer_id IN {owners}) AS parts ORDER BY part, id), "
        f"ARRAY(SELECT ROW({_RECORD}, rank, open_rank) FROM ({_records('IN ' + owners)}) AS records "
        f"ORDER BY {_NEWEST_FIRST})"
    )


# PostgreSQL: a fixed text (asyncpg prepares it once per connection).
_PG_FILES = _pg_files()
# SQLite: a ``?`` per value of the list (at most OWNERS_MAX ids), each text made once.
_SQLITE_OWNERS = _owners("?", "?")


def _marks(count: int) -> str:
    return "IN (" + ", ".join("?" * count) + ")"


@lru_cache(maxsize=OWNERS_MAX)
def _sqlite_parts(count: int) -> str:
    return _parts(_marks(count))


@lru_cache(maxsize=OWNERS_MAX)
def _sqlite_records(count: int) -> str:
    return _records(_marks(count))


# -- rows to the CRM's results ----------------------------------------------------------------------------------


def _sqlite_datetime(value: str | None) -> datetime | None:
    # SQLAlchemy stores UtcDateTime on SQLite as naive UTC text ("2030-01-01 09:00:00.000000").
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _sqlite_date(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def _pg_datetime(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class _Types:
    """How a driver's values become what the ORM's column types gave (datetimes aware UTC, dates, booleans)."""

    moment: Callable[[Any], datetime | None]
    day: Callable[[Any], date | None]
    flag: Callable[[Any], bool]


_SQLITE_TYPES = _Types(_sqlite_datetime, _sqlite_date, bool)
_PG_TYPES = _Types(_pg_datetime, _same, _same)


def _customer(row: Row, phones: Sequence[PhoneInfo], t: _Types) -> CustomerInfo:
    return CustomerInfo(
        id=row[0],
        name=row[1],
        company=row[2],
        tier=row[3],
        address=row[4],
        notes=row[5],
        account_manager=row[6],
        first_contact=t.moment(row[7]),
        last_contact=t.moment(row[8]),
        churn_risk=t.flag(row[9]),
        created_at=t.moment(row[10]),  # type: ignore[arg-type]
        updated_at=t.moment(row[11]),  # type: ignore[arg-type]
        phones=tuple(phones),
    )


def _record(row: Row, t: _Types) -> ServiceRecordInfo:
    return ServiceRecordInfo(
        id=row[0],
        customer_id=row[1],
        linkedid=row[2],
        type=row[3],
        status=row[4],
        content=row[5],
        outcome=row[6],
        feedback=row[7],
        follow_up=t.day(row[8]),
        appointment_at=t.moment(row[9]),
        assigned_to=row[10],
        created_by=row[11],
        caller_number=row[12],
        caller_name=row[13],
        idempotency_key=row[14],
        created_at=t.moment(row[15]),  # type: ignore[arg-type]
        updated_at=t.moment(row[16]),  # type: ignore[arg-type]
    )


def _files(owners: Sequence[Row], parts: Sequence[Row], records: Sequence[Row], t: _Types) -> list[CustomerFile]:
    phones: dict[int, list[PhoneInfo]] = {}
    contacts: dict[int, list[ContactInfo]] = {}
    for part, customer_id, id_, a, b, c, d in parts:
        if part == "phone":
            phones.setdefault(customer_id, []).append(PhoneInfo(a, b, c))
        else:
            contacts.setdefault(customer_id, []).append(ContactInfo(id_, a, b, c, d))
    recent: dict[int, list[ServiceRecordInfo]] = {}
    open_: dict[int, list[ServiceRecordInfo]] = {}
    for row in records:
        info = _record(row, t)
        customer_id = row[1]
        if row[17] <= RECENT_RECORDS:
            recent.setdefault(customer_id, []).append(info)
        if info.is_open and row[18] <= OPEN_RECORDS_MAX:
            open_.setdefault(customer_id, []).append(info)
    return [
        CustomerFile(
            customer=_customer(row, phones.get(row[0], ()), t),
            contacts=tuple(contacts.get(row[0], ())),
            recent_records=tuple(recent.get(row[0], ())),
            open_records=tuple(open_.get(row[0], ())),
        )
        for row in owners
    ]


def _every_number(files: Sequence[CustomerFile], calling: str) -> set[str]:
    found = {calling}
    for file in files:
        found.update(phone.number for phone in file.customer.phones)
    return found


def _numbers(found: set[str]) -> list[str]:
    return sorted(found)[:NUMBERS_MAX]


def _history(candidates: Sequence[PastCall], numbers: Sequence[str], rules: PhoneRules) -> list[dict[str, Any]]:
    # The calls' port finds candidates by the numbers' last digits; the CRM's numbering rules say which are the
    # same number.
    written = set(numbers)
    keys = {key for key in map(rules.normalize, numbers) if key}
    calls: list[dict[str, Any]] = []
    for call in candidates:
        number = call.caller_number
        if number not in written and rules.normalize(number) not in keys:
            continue
        calls.append(
            {
                "linkedid": call.linkedid,
                "started_at": call.started_at.isoformat(),
                "caller_number": number,
                "outcome": call.outcome,
                "choice": call.ivr_choice,
                "agent": call.agent,
                "expert": call.expert,
                "talk_time": call.talk_time,
                "notes": call.handoff_notes,
            }
        )
        if len(calls) == HISTORY:
            break
    return calls


@dataclass(frozen=True, slots=True)
class CallerFiles:
    """What the database gives a pop: the owners' files (best tier first) and the last calls (newest first)."""

    files: list[CustomerFile]
    history: list[dict[str, Any]]


NOTHING = CallerFiles([], [])


def _files_sqlite(connection: sqlite3.Connection, key: str) -> list[CustomerFile]:
    """The files, on aiosqlite's thread (no await in here: one hop)."""

    def rows(sql: str, params: Sequence[Any]) -> list[Any]:
        return connection.execute(sql, params).fetchall()

    owners = rows(_SQLITE_OWNERS, (key, OWNERS_MAX))
    if not owners:
        return []
    ids = [row[0] for row in owners]
    parts = rows(_sqlite_parts(len(ids)), ids + ids)
    records = rows(_sqlite_records(len(ids)), ids)
    return _files(owners, parts, records, _SQLITE_TYPES)


class PopReader:
    """The screen-pop's database read for one calling number: the files on one connection of ``database``'s pool,
    then the last calls from ``history`` (the call features' port)."""

    def __init__(self, database: Database, rules: PhoneRules, history: CallHistory) -> None:
        self._database = database
        self._rules = rules
        self._history = history

    async def files(self, key: str) -> list[CustomerFile]:
        """The files of every customer owning the number key, best tier first; raises DatabaseError when
        unreachable."""
        async with self._database.driver() as driver:
            if self._database.dialect == "sqlite":
                # aiosqlite runs a function on its connection's thread: the one hop of the files. _execute and
                # _conn are aiosqlite's private parts (as of 0.22; SQLAlchemy's adapter reaches into _conn and _tx
                # too): the screen-pop tests, the hop-counting one first, fail if they change.
                found: list[CustomerFile] = await driver._execute(_files_sqlite, driver._conn, key)
            else:
                owners, parts, records = await driver.fetchrow(_PG_FILES, key, OWNERS_MAX)
                found = _files(owners, parts, records, _PG_TYPES)
        return found

    async def read(self, number: str) -> CallerFiles:
        """The files of every customer owning ``number`` and its last calls; raises DatabaseError when unreachable."""
        if not number:
            return NOTHING
        key = self._rules.normalize(number)
        # One connection for both reads: the calls' port reads on the connection this block holds (see
        # Database.driver), so the pop pays one checkout, as when one statement read both.
        async with self._database.driver():
            files = await self.files(key) if key is not None else []
            # The calls of the calling number and of every number of its owners (at most NUMBERS_MAX of them).
            numbers = _numbers(_every_number(files, number))
            candidates = await self._history.calls_from(numbers, HISTORY_CANDIDATES)
        return CallerFiles(files, _history(candidates, numbers, self._rules))
