"""QA search over the recordings index: filters to SQL, per engine, and keyset cursors.

Text search works on words. Description and tags are cut into word tokens in Python (``recordings.text``),
the same way for both engines and for queries; ``search_text`` keeps the tokens one space apart. A query
matches when every one of its tokens begins some token of the recording ("refund" finds "refunded").
SQLite indexes the tokens with FTS5 (``fts_recordings``, prefix queries). PostgreSQL keeps a narrow table of
the recordings that have text, ``fts_recordings`` (pk, the tsvector with a GIN index, start, duration...),
filled by a trigger, which also repeats the columns searches filter and sort on: a search on words is
counted and paged in that table (and joins the recordings only for numbers or a linkedid); the table has
indexes of the two sort orders, which a page walks when a word has many matches.

Partial number search means the digits occur anywhere in the caller's or the called number: SQLite's FTS5
trigram table ``fts_recording_numbers``, PostgreSQL's pg_trgm indexes under ``LIKE '%...%'``; fewer than three
characters cannot use a trigram index and fall back to a scan. Caller text reaches SQL as bound parameters.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Row,
    Select,
    String,
    bindparam,
    column,
    func,
    literal_column,
    or_,
    select,
    table,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

from callcenter.db import UtcDateTime
from recordings.exceptions import InvalidFilter
from recordings.models import Recording
from recordings.schemas import SearchQuery
from recordings.text import query_tokens

TRIGRAM = 3
# SQLite: up to this many FTS matches are looked up one by one; beyond, the sort order is walked instead.
FTS_DRIVE_LIMIT = 2000
FTS_COUNT_LIMIT = 200_000
# SQLite: up to this many FTS matches, a page looks them up one by one; beyond, it walks the sort order.
PAGE_DRIVE_LIMIT = 500
# PostgreSQL, a search on words alone: beyond this many matches a page walks the word table's index of the sort
# order (2,000 of the bench's 123,000 word rows: a page's 51 are met after some 3,000); up to it, the matches
# come through GIN and are sorted.
WORDS_WALK_LIMIT = 2000
TEXT_FTS = "fts_recordings"
NUMBERS_FTS = "fts_recording_numbers"
# PostgreSQL: the word table and its text search configuration (a literal, as in the trigger).
_TS_CONFIG: ColumnElement[Any] = literal_column("'simple'")
_WORDS = table(
    TEXT_FTS,
    column("pk", Integer),
    column("document"),
    column("started_at", UtcDateTime),
    column("duration", Float),
    column("kind", String),
    column("status", String),
    column("direction", String),
    column("agent_interface", String),
    column("agent_user_id", Integer),
    column("queue", String),
    column("service_record_type", String),
)


def _fts_string(term: str) -> str:
    # Inside an FTS5 string only the double quote is special, and doubling it escapes it.
    return '"' + term.replace('"', '""') + '"'


def _tsquery_lexeme(term: str) -> str:
    # A quoted lexeme in tsquery syntax; tokens hold letters and digits only, quoting is belt and braces.
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class Cursor:
    sort: str
    order: str
    value: Any
    pk: int


def encode_cursor(sort: str, order: str, value: Any, pk: int) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([sort, order, value, pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, query: SearchQuery) -> Cursor:
    """The position a cursor names; InvalidFilter('cursor') for anything this search did not issue."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        sort, order, value, pk = json.loads(raw)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidFilter("cursor", "not a cursor issued by this search") from exc
    if (sort, order) != (query.sort, query.order):
        raise InvalidFilter("cursor", "issued for another sort order; start again without it")
    if not isinstance(pk, int) or isinstance(pk, bool):
        raise InvalidFilter("cursor", "not a cursor issued by this search")
    if sort == "started_at":
        try:
            value = datetime.fromisoformat(value)
        except (TypeError, ValueError) as exc:
            raise InvalidFilter("cursor", "not a cursor issued by this search") from exc
        if value.tzinfo is None:
            raise InvalidFilter("cursor", "not a cursor issued by this search")
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidFilter("cursor", "not a cursor issued by this search")
    return Cursor(sort, order, value, pk)


@dataclass(frozen=True, slots=True)
class FtsMatch:
    """A MATCH on one of SQLite's FTS5 tables: the rowids it yields are recordings' pks."""

    table: str
    parameter: str
    expression: str

    def rowids(self) -> Select[Any]:
        fts = table(self.table, literal_column("rowid"))
        return (
            select(literal_column("rowid"))
            .select_from(fts)
            .where(literal_column(self.table).op("MATCH")(bindparam(self.parameter, self.expression)))
        )

    def count(self, limit: int = 0) -> Select[int]:
        matching = self.rowids()
        if limit > 0:
            matching = matching.limit(limit + 1)
        return select(func.count()).select_from(matching.subquery())


def fts_matches(query: SearchQuery, dialect: str) -> list[FtsMatch]:
    """The FTS5 lookups of a search on SQLite (text words, partial numbers of three or more characters)."""
    if dialect != "sqlite":
        return []
    matches = []
    if query.q is not None:
        expression = " AND ".join(_fts_string(token) + "*" for token in query_tokens(query.q))
        matches.append(FtsMatch(TEXT_FTS, "fts_text", expression))
    if query.number is not None and query.number_match == "partial" and len(query.number) >= TRIGRAM:
        matches.append(FtsMatch(NUMBERS_FTS, "fts_numbers", _fts_string(query.number)))
    return matches


def _text_conditions(query: SearchQuery, dialect: str, drive: bool) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    # "pk + 0" hides the key from SQLite's planner: it then walks another index (the sort order, a filter)
    # and checks each row against the FTS result, instead of looking up every FTS match in the table.
    key = Recording.pk if drive else Recording.pk + 0
    for match in fts_matches(query, dialect):
        conditions.append(key.in_(match.rowids()))
    if query.q is not None and dialect != "sqlite":
        conditions.append(Recording.pk.in_(select(_WORDS.c.pk).where(_document_matches(query))))
    number = query.number if query.number_match == "partial" else None
    if number is not None and (dialect != "sqlite" or len(number) < TRIGRAM):
        conditions.append(
            or_(
                Recording.caller_number.contains(number, autoescape=True),
                Recording.called_number.contains(number, autoescape=True),
            )
        )
    return conditions


def _document_matches(query: SearchQuery) -> ColumnElement[bool]:
    assert query.q is not None
    tsquery = " & ".join(_tsquery_lexeme(token) + ":*" for token in query_tokens(query.q))
    return _WORDS.c.document.op("@@")(func.to_tsquery(_TS_CONFIG, bindparam("tsquery", tsquery)))


def _words_alone(query: SearchQuery, dialect: str) -> bool:
    """PostgreSQL: whether the word table answers by itself (it has every column but numbers and linkedid)."""
    return dialect != "sqlite" and query.q is not None and query.number is None and query.linkedid is None


# Every filter but the words; a search with none of them is on words alone.
_FILTERS = (
    "kind",
    "status",
    "agent",
    "agent_user_id",
    "queue",
    "since",
    "until",
    "number",
    "direction",
    "min_duration",
    "max_duration",
    "service_record_type",
    "linkedid",
)


def _words_only(query: SearchQuery, dialect: str) -> bool:
    """PostgreSQL: a search on words and nothing else, counted first and paged by the count (see run_search)."""
    return _words_alone(query, dialect) and all(getattr(query, name) is None for name in _FILTERS)


def conditions_for(query: SearchQuery, dialect: str, *, drive: bool = True) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a search (without the cursor), for ``dialect`` (sqlite or postgresql).

    ``drive`` (SQLite): let the FTS matches lead (few matches) or only filter rows found another way (many).
    """
    conditions = plain_conditions(query)
    conditions.extend(_text_conditions(query, dialect, drive))
    return conditions


def plain_conditions(query: SearchQuery, source: Any = Recording) -> list[ColumnElement[bool]]:
    """Every condition except text and partial-number search, on ``source``'s columns (the recordings table,
    or PostgreSQL's word table, which repeats the filterable ones)."""
    conditions: list[ColumnElement[bool]] = []
    if query.kind is not None:
        conditions.append(source.kind == query.kind.value)
    if query.status is not None:
        conditions.append(source.status == query.status.value)
    if query.agent is not None:
        conditions.append(source.agent_interface == query.agent)
    if query.agent_user_id is not None:
        conditions.append(source.agent_user_id == query.agent_user_id)
    if query.queue is not None:
        conditions.append(source.queue == query.queue)
    if query.since is not None:
        conditions.append(source.started_at >= query.since)
    if query.until is not None:
        conditions.append(source.started_at < query.until)
    if query.number is not None and query.number_match == "exact":
        conditions.append(or_(Recording.caller_number == query.number, Recording.called_number == query.number))
    if query.direction is not None:
        conditions.append(source.direction == query.direction.value)
    if query.min_duration is not None:
        conditions.append(source.duration >= query.min_duration)
    if query.max_duration is not None:
        conditions.append(source.duration <= query.max_duration)
    if query.service_record_type is not None:
        conditions.append(source.service_record_type == query.service_record_type)
    if query.linkedid is not None:
        conditions.append(Recording.linkedid == query.linkedid)
    if query.sort == "duration":
        # A recording still being made has no duration yet; sorting by duration lists finished ones.
        conditions.append(source.duration.is_not(None))
    return conditions


def count_statement(query: SearchQuery, dialect: str, limit: int = 0, *, drive: bool = True) -> Select[int]:
    """How many rows match; with ``limit``, counting stops after limit + 1 (the total is then "more than")."""
    if _words_alone(query, dialect):
        conditions = [_document_matches(query), *plain_conditions(query, _WORDS.c)]
        matching: Select[Any] = select(literal_column("1")).select_from(_WORDS).where(*conditions)
    else:
        # No column is selected: PostgreSQL can then count from an index without visiting the table.
        conditions = conditions_for(query, dialect, drive=drive)
        matching = select(literal_column("1")).select_from(Recording).where(*conditions)
    if limit > 0:
        matching = matching.limit(limit + 1)
    return select(func.count()).select_from(matching.subquery())


# The columns a page shows: plain rows, not ORM objects (cheaper to load, and never written back).
_PAGE_COLUMNS = [column for column in Recording.__table__.c if column.name != "search_text"]


def _ordered(statement: Select[Any], query: SearchQuery, source: Any, cursor: Cursor | None) -> Select[Any]:
    """The sort order, then the cursor's position or the offset, and the page size plus one."""
    column = source.started_at if query.sort == "started_at" else source.duration
    if query.order == "desc":
        statement = statement.order_by(column.desc(), source.pk.desc())
    else:
        statement = statement.order_by(column.asc(), source.pk.asc())
    if cursor is not None:
        position = tuple_(column, source.pk)
        after = (cursor.value, cursor.pk)
        statement = statement.where(position < after if query.order == "desc" else position > after)
    else:
        statement = statement.offset(query.offset)
    return statement.limit(query.limit + 1)


def _words_page_with_total(query: SearchQuery) -> Select[Any]:
    """PostgreSQL, a word search without a cursor: the page and the number of matches in one pass over the word
    table (the count is taken over every match before the offset and the limit apply)."""
    keys = select(_WORDS.c.pk, func.count().over().label("total")).where(
        _document_matches(query), *plain_conditions(query, _WORDS.c)
    )
    chosen = _ordered(keys, query, _WORDS.c, None).subquery()
    rows = select(*_PAGE_COLUMNS, chosen.c.total).join(chosen, Recording.pk == chosen.c.pk)
    return _ordered(rows, query.model_copy(update={"offset": 0}), Recording, None)


def page_statement(query: SearchQuery, dialect: str, cursor: Cursor | None, *, drive: bool = True) -> Select[Any]:
    """One page plus one row (which tells whether there is a next page).

    ``drive``: let the text matches lead (few matches), or walk the sort order keeping the rows among them (many).
    """
    if _words_alone(query, dialect):
        # PostgreSQL: the page's keys are chosen in the word table; then their rows are read.
        conditions = [_document_matches(query), *plain_conditions(query, _WORDS.c)]
        if drive:
            # OFFSET 0 is a fence: the matches come from GIN and are sorted, whatever the planner thinks of the
            # sort order's index (its guess for a prefix tsquery is 2% of the table, even for a word that is rare).
            matching = (
                select(_WORDS.c.pk, _WORDS.c.started_at, _WORDS.c.duration)
                .where(*conditions)
                .offset(literal_column("0"))
            )
            fenced = matching.subquery()
            keys = _ordered(select(fenced.c.pk), query, fenced.c, cursor)
        else:
            keys = _ordered(select(_WORDS.c.pk).where(*conditions), query, _WORDS.c, cursor)
        rows = select(*_PAGE_COLUMNS).where(Recording.pk.in_(keys))
        return _ordered(rows, query.model_copy(update={"offset": 0, "cursor": None}), Recording, None)
    statement = select(*_PAGE_COLUMNS).where(*conditions_for(query, dialect, drive=drive))
    return _ordered(statement, query, Recording, cursor)


def next_cursor(query: SearchQuery, last: Any) -> str:
    value = last.started_at if query.sort == "started_at" else last.duration
    return encode_cursor(query.sort, query.order, value, last.pk)


async def run_search(
    session: AsyncSession, query: SearchQuery, dialect: str, count_limit: int, cursor: Cursor | None
) -> tuple[int, list[Row[Any]]]:
    """The count (stopping after ``count_limit`` + 1 when that is above 0) and one page plus one row.

    Usually one statement: the count rides along with the page as a scalar subquery (evaluated once), and on
    PostgreSQL a word search takes a window count over the word table.

    On SQLite the FTS5 matches are counted first, which costs little: a search on text or a partial number
    alone takes its total from there. The numbers then choose how rows are found, separately for the count
    and for the page. A few matches are looked up one by one; many are better met by walking another index
    and keeping the rows among them: for the count, the other filters' index when it yields fewer rows; for
    the page, the sort order, which soon meets enough rows of a large set of matches.
    """
    # (On PostgreSQL every statement is planned for its own values: callcenter.db sets plan_cache_mode.)
    if _words_only(query, dialect):
        # Words and nothing else: a common word has thousands of matches, which the window count below would
        # read and hold in full. Counted alone (the count stops at the limit), their number chooses the page's
        # plan: many matches walk the sort order and meet a page's rows soon; a few are fetched and sorted.
        total = int(await session.scalar(count_statement(query, dialect, count_limit)) or 0)
        if total == 0:
            return 0, []
        page = page_statement(query, dialect, cursor, drive=total <= WORDS_WALK_LIMIT)
        return _capped(total, count_limit), list((await session.execute(page)).all())
    if _words_alone(query, dialect) and cursor is None:
        rows = list((await session.execute(_words_page_with_total(query))).all())
        if rows or query.offset == 0:
            counted = int(rows[0].total) if rows else 0
            return _capped(counted, count_limit), rows
    matches = fts_matches(query, dialect)
    if not matches:
        return await _count_and_page(session, query, dialect, count_limit, cursor)
    # Counted further than the total needs: the sizes choose the plan, and FTS5 counts cheaply.
    limit = 0 if count_limit <= 0 else max(count_limit, FTS_COUNT_LIMIT)
    sizes = [int(await session.scalar(match.count(limit)) or 0) for match in matches]
    plain = plain_conditions(query)
    fewest = min(sizes)
    if len(matches) == 1 and not plain:
        total = sizes[0]
    else:
        drive = fewest <= FTS_DRIVE_LIMIT
        if not drive and plain:
            # Many matches, and other filters: walk whichever side is smaller (counting stops there).
            others: Select[Any] = select(literal_column("1")).select_from(Recording).where(*plain).limit(fewest + 1)
            drive = int(await session.scalar(select(func.count()).select_from(others.subquery())) or 0) > fewest
        total = int(await session.scalar(count_statement(query, dialect, count_limit, drive=drive)) or 0)
    # The page looks matches up one by one only when there are few to look up; otherwise it walks the sort
    # order (within the other filters' index when there is one) until the page is full.
    page = page_statement(query, dialect, cursor, drive=fewest <= PAGE_DRIVE_LIMIT)
    return _capped(total, count_limit), list((await session.execute(page)).all())


def _capped(total: int, count_limit: int) -> int:
    return total if count_limit <= 0 else min(total, count_limit + 1)


async def _count_and_page(
    session: AsyncSession, query: SearchQuery, dialect: str, count_limit: int, cursor: Cursor | None
) -> tuple[int, list[Row[Any]]]:
    count = count_statement(query, dialect, count_limit)
    page = page_statement(query, dialect, cursor).add_columns(count.scalar_subquery().label("total"))
    rows = list((await session.execute(page)).all())
    if rows:
        return int(rows[0].total), rows
    if cursor is None and query.offset == 0:
        return 0, rows
    return int(await session.scalar(count) or 0), rows
