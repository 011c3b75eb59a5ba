"""QA search over the recordings index: filters to SQL, per engine, and keyset cursors.

Text search works on words. Description and tags are cut into word tokens in Python (``recordings.text``),
the same way for both engines and for queries. ``search_text`` keeps the tokens one space apart; SQLite indexes them with FTS5
(``fts_recordings``), PostgreSQL with a GIN index on ``to_tsvector('simple', search_text)``. A query matches
when every one of its tokens begins some token of the recording ("refund" finds "refunded").

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

from sqlalchemy import ColumnElement, Select, bindparam, func, literal_column, or_, select, table, tuple_

from recordings.exceptions import InvalidFilter
from recordings.models import Recording
from recordings.schemas import SearchQuery
from recordings.text import query_tokens

TRIGRAM = 3
TEXT_FTS = "fts_recordings"
NUMBERS_FTS = "fts_recording_numbers"
# PostgreSQL: the text search configuration of the index expression (a literal, so the planner matches it).
_TS_CONFIG: ColumnElement[Any] = literal_column("'simple'")


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


def _text_conditions(query: SearchQuery, dialect: str) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    tokens = query_tokens(query.q) if query.q is not None else []
    number = query.number if query.number_match == "partial" else None
    if tokens:
        if dialect == "sqlite":
            expression = " AND ".join(_fts_string(token) + "*" for token in tokens)
            conditions.append(Recording.pk.in_(_fts_rowids(TEXT_FTS, "fts_text", expression)))
        else:
            tsquery = " & ".join(_tsquery_lexeme(token) + ":*" for token in tokens)
            document = func.to_tsvector(_TS_CONFIG, Recording.search_text)
            conditions.append(document.op("@@")(func.to_tsquery(_TS_CONFIG, bindparam("tsquery", tsquery))))
    if number is not None:
        if dialect == "sqlite" and len(number) >= TRIGRAM:
            conditions.append(Recording.pk.in_(_fts_rowids(NUMBERS_FTS, "fts_numbers", _fts_string(number))))
        else:
            conditions.append(
                or_(
                    Recording.caller_number.contains(number, autoescape=True),
                    Recording.called_number.contains(number, autoescape=True),
                )
            )
    return conditions


def _fts_rowids(name: str, parameter: str, expression: str) -> Select[Any]:
    fts = table(name, literal_column("rowid"))
    return (
        select(literal_column("rowid"))
        .select_from(fts)
        .where(literal_column(name).op("MATCH")(bindparam(parameter, expression)))
    )


def conditions_for(query: SearchQuery, dialect: str) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a search (without the cursor), for ``dialect`` (sqlite or postgresql)."""
    conditions: list[ColumnElement[bool]] = []
    if query.kind is not None:
        conditions.append(Recording.kind == query.kind.value)
    if query.status is not None:
        conditions.append(Recording.status == query.status.value)
    if query.agent is not None:
        conditions.append(Recording.agent_interface == query.agent)
    if query.agent_user_id is not None:
        conditions.append(Recording.agent_user_id == query.agent_user_id)
    if query.queue is not None:
        conditions.append(Recording.queue == query.queue)
    if query.since is not None:
        conditions.append(Recording.started_at >= query.since)
    if query.until is not None:
        conditions.append(Recording.started_at < query.until)
    if query.number is not None and query.number_match == "exact":
        conditions.append(or_(Recording.caller_number == query.number, Recording.called_number == query.number))
    if query.direction is not None:
        conditions.append(Recording.direction == query.direction.value)
    if query.min_duration is not None:
        conditions.append(Recording.duration >= query.min_duration)
    if query.max_duration is not None:
        conditions.append(Recording.duration <= query.max_duration)
    if query.service_record_type is not None:
        conditions.append(Recording.service_record_type == query.service_record_type)
    if query.linkedid is not None:
        conditions.append(Recording.linkedid == query.linkedid)
    if query.sort == "duration":
        # A recording still being made has no duration yet; sorting by duration lists finished ones.
        conditions.append(Recording.duration.is_not(None))
    conditions.extend(_text_conditions(query, dialect))
    return conditions


def _sort_column(query: SearchQuery) -> Any:
    return Recording.started_at if query.sort == "started_at" else Recording.duration


def count_statement(query: SearchQuery, dialect: str, limit: int = 0) -> Select[int]:
    """How many rows match; with ``limit``, counting stops after limit + 1 (the total is then "more than")."""
    if limit <= 0:
        return select(func.count()).select_from(Recording).where(*conditions_for(query, dialect))
    # No column is selected: PostgreSQL can then count from the index without visiting the table.
    matching: Select[Any] = select(literal_column("1")).select_from(Recording).where(*conditions_for(query, dialect))
    return select(func.count()).select_from(matching.limit(limit + 1).subquery())


def page_statement(query: SearchQuery, dialect: str, cursor: Cursor | None) -> Select[Recording]:
    """One page plus one row (which tells whether there is a next page)."""
    column = _sort_column(query)
    statement = select(Recording).where(*conditions_for(query, dialect))
    if query.order == "desc":
        statement = statement.order_by(column.desc(), Recording.pk.desc())
    else:
        statement = statement.order_by(column.asc(), Recording.pk.asc())
    if cursor is not None:
        position = tuple_(column, Recording.pk)
        after = (cursor.value, cursor.pk)
        statement = statement.where(position < after if query.order == "desc" else position > after)
    else:
        statement = statement.offset(query.offset)
    return statement.limit(query.limit + 1)


def next_cursor(query: SearchQuery, last: Recording) -> str:
    value = last.started_at if query.sort == "started_at" else last.duration
    return encode_cursor(query.sort, query.order, value, last.pk)
