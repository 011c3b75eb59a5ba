"""Search filters, cursors and text handling (pure: statements are compiled, not run)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql, sqlite

from recordings.exceptions import InvalidFilter
from recordings.schemas import EditIn, SearchQuery
from recordings.search import count_statement, decode_cursor, encode_cursor, page_statement
from recordings.text import query_tokens, search_text_of, tokens_of

WHEN = datetime(2030, 1, 1, tzinfo=UTC)


def test_search_text_is_the_folded_word_tokens_of_description_and_tags() -> None:
    assert search_text_of("Refund ÄRGER, refund!", ["VIP", "Straße", "good-example"]) == (
        "refund ärger vip strasse good example"
    )


def test_chinese_runs_are_cut_into_overlapping_pairs() -> None:
    assert tokens_of("空调维修 air_conditioner 维") == ["空调", "调维", "维修", "air", "conditioner", "维"]
    assert tokens_of("予約キャンセル") == ["予約", "約キ", "キャ", "ャン", "ンセ", "セル"]


def test_query_tokens_are_folded_distinct_and_bounded() -> None:
    assert query_tokens("Refund refund VIP") == ["refund", "vip"]
    for text, message in (("%_ -- '", "must contain a letter or a digit"), (" ".join("abcdefghijklmnopq"), "at most")):
        with pytest.raises(InvalidFilter, match=message) as caught:
            query_tokens(text)
        assert list(caught.value.details["fields"]) == ["q"]


def test_cursors_round_trip_and_refuse_anything_else() -> None:
    query = SearchQuery()
    cursor = decode_cursor(encode_cursor("started_at", "desc", WHEN, 42), query)
    assert (cursor.value, cursor.pk) == (WHEN, 42)
    duration = SearchQuery(sort="duration")
    assert decode_cursor(encode_cursor("duration", "desc", 12.5, 7), duration).value == 12.5
    for bad, against in [
        ("!!!", query),
        (encode_cursor("duration", "desc", 1.0, 1), query),  # another sort
        (encode_cursor("started_at", "asc", WHEN, 1), query),  # another order
        (encode_cursor("started_at", "desc", "yesterday", 1), query),
        (encode_cursor("started_at", "desc", "2030-01-01T00:00:00", 1), query),  # no zone
        (encode_cursor("started_at", "desc", WHEN, "1"), query),
        (encode_cursor("duration", "desc", "long", 1), duration),
        (encode_cursor("duration", "desc", True, 1), duration),
    ]:
        with pytest.raises(InvalidFilter, match="cursor"):
            decode_cursor(bad, against)


def _sql(statement: object, dialect: object) -> str:
    return str(statement.compile(dialect=dialect))  # type: ignore[attr-defined]


def test_text_and_numbers_use_fts5_on_sqlite_and_like_on_postgresql() -> None:
    query = SearchQuery(q='refund "vip', number="12345", number_match="partial")
    on_sqlite = _sql(page_statement(query, "sqlite", None), sqlite.dialect())
    assert "fts_recordings MATCH" in on_sqlite
    assert "fts_recording_numbers MATCH" in on_sqlite
    on_postgresql = _sql(page_statement(query, "postgresql", None), postgresql.dialect())
    assert "fts_recordings.document @@ to_tsquery('simple'," in on_postgresql
    assert "LIKE" in on_postgresql
    # Caller text is a bound parameter, never part of the SQL.
    for text in (on_sqlite, on_postgresql):
        assert "refund" not in text
        assert "12345" not in text


def test_postgresql_answers_word_searches_from_the_word_table() -> None:
    words = SearchQuery(q="refund", since=WHEN, agent="PJSIP/1001", sort="duration")
    count = _sql(count_statement(words, "postgresql", 100), postgresql.dialect())
    assert "FROM fts_recordings" in count
    assert "recordings." not in count.replace("fts_recordings.", "")
    page = _sql(page_statement(words, "postgresql", None), postgresql.dialect())
    assert "fts_recordings.agent_interface =" in page
    # A few matches are fetched behind a fence (OFFSET 0) and sorted; many walk the word table's sort order.
    assert "OFFSET 0) AS anon_1 ORDER BY anon_1.duration DESC" in " ".join(page.split())
    walk = _sql(page_statement(words, "postgresql", None, drive=False), postgresql.dialect())
    assert "ORDER BY fts_recordings.duration DESC" in walk
    # Numbers and linkedids live in the recordings table only: those searches join it.
    with_number = SearchQuery(q="refund", number="+861")
    count = _sql(count_statement(with_number, "postgresql", 100), postgresql.dialect())
    assert "recordings.pk IN (SELECT fts_recordings.pk" in count


def test_counting_can_stop_at_a_limit() -> None:
    text = _sql(count_statement(SearchQuery(), "sqlite", 10_000), sqlite.dialect())
    assert "LIMIT" in text
    assert "LIMIT" not in _sql(count_statement(SearchQuery(), "sqlite"), sqlite.dialect())


def test_query_string_values_are_validated_and_naive_times_are_utc() -> None:
    query = SearchQuery.model_validate({"since": "2030-01-01T00:00:00", "limit": "5", "min_duration": "1.5"})
    assert (query.since, query.limit, query.min_duration) == (WHEN, 5, 1.5)
    with pytest.raises(ValidationError):
        SearchQuery.model_validate({"order": "sideways"})
    with pytest.raises(InvalidFilter, match="kind"):
        SearchQuery.from_query({"kind": "full"}, {"kind"})
    with pytest.raises(InvalidFilter, match="q"):
        SearchQuery.from_query({"q": "   "})


def test_edits_are_cleaned_and_bounded() -> None:
    assert EditIn.model_validate({"tags": [" a ", "A", "b"]}).tags == ["a", "b"]
    assert EditIn.model_validate({"description": "line one\nline two"}).description == "line one\nline two"
    for bad in ({"description": "x\u202ey"}, {"tags": ["a" * 51]}, {"tags": ["x"] * 21}, {"tags": ["\u0000"]}):
        with pytest.raises(ValidationError):
            EditIn.model_validate(bad)
