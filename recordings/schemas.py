"""Payloads and query strings of the recordings API, validated with pydantic; errors name the field."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recordings.audio import MAX_POINTS
from recordings.exceptions import InvalidFilter
from recordings.models import (
    INTERFACE_MAX,
    NUMBER_MAX,
    QUEUE_MAX,
    REASON_MAX,
    SERVICE_TYPE_MAX,
    Direction,
    Kind,
    Status,
)
from recordings.text import query_tokens

DESCRIPTION_MAX = 2000
TAG_MAX = 50
TAGS_MAX = 20
TEXT_QUERY_MAX = 200
PAGE_MAX = 200
OFFSET_MAX = 100_000
CURSOR_MAX = 512
DURATION_MAX = 10_000_000.0

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _no_control(value: str | None) -> str | None:
    if value is not None and _CONTROL.search(value):
        raise ValueError("control characters are not accepted")
    return value


def clean_tags(tags: list[str]) -> list[str]:
    """Tags stripped, without duplicates (compared case-insensitively), in the order given."""
    seen: set[str] = set()
    cleaned: list[str] = []
    for raw in tags:
        tag = raw.strip()
        if not tag:
            raise ValueError("a tag must not be empty")
        if len(tag) > TAG_MAX:
            raise ValueError(f"a tag has at most {TAG_MAX} characters")
        if any(unicodedata.category(char)[0] == "C" for char in tag):
            raise ValueError("control characters are not accepted in tags")
        key = tag.casefold()
        if key not in seen:
            seen.add(key)
            cleaned.append(tag)
    return cleaned


def clean_description(value: str) -> str:
    if len(value) > DESCRIPTION_MAX:
        raise ValueError(f"at most {DESCRIPTION_MAX} characters")
    # Line breaks and tabs are text; other control and format characters (NUL, bidi overrides) are not.
    if any(unicodedata.category(char)[0] == "C" and char not in "\n\t" for char in value):
        raise ValueError("control characters other than line breaks are not accepted")
    return value


class SearchQuery(_Payload):
    """``GET /api/v1/recordings`` filters; every one is optional and all combine with AND."""

    kind: Kind | None = None
    agent: str | None = Field(None, min_length=1, max_length=INTERFACE_MAX)
    agent_user_id: int | None = Field(None, ge=1, le=2**31 - 1)
    queue: str | None = Field(None, min_length=1, max_length=QUEUE_MAX)
    since: datetime | None = None
    until: datetime | None = None
    number: str | None = Field(None, min_length=1, max_length=NUMBER_MAX)
    number_match: Literal["exact", "partial"] = "exact"
    direction: Direction | None = None
    q: str | None = Field(None, min_length=1, max_length=TEXT_QUERY_MAX)
    min_duration: float | None = Field(None, ge=0, le=DURATION_MAX)
    max_duration: float | None = Field(None, ge=0, le=DURATION_MAX)
    service_record_type: str | None = Field(None, min_length=1, max_length=SERVICE_TYPE_MAX)
    status: Status | None = None
    linkedid: str | None = Field(None, min_length=1, max_length=64)
    sort: Literal["started_at", "duration"] = "started_at"
    order: Literal["asc", "desc"] = "desc"
    limit: int = Field(50, ge=1, le=PAGE_MAX)
    offset: int = Field(0, ge=0, le=OFFSET_MAX)
    cursor: str | None = Field(None, min_length=1, max_length=CURSOR_MAX)

    @field_validator("agent", "queue", "number", "q", "service_record_type", "linkedid")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return _no_control(value)

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # A time without a zone means UTC, the zone the index keeps.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def check(self) -> SearchQuery:
        """Rules between fields; InvalidFilter names the field at fault."""
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise InvalidFilter("until", "must be later than since")
        if self.min_duration is not None and self.max_duration is not None and self.max_duration < self.min_duration:
            raise InvalidFilter("max_duration", "must not be less than min_duration")
        if self.cursor is not None and self.offset:
            raise InvalidFilter("cursor", "use either cursor or offset, not both")
        if self.q is not None:
            query_tokens(self.q)
        return self

    @classmethod
    def from_query(cls, query: Mapping[str, str], repeated: set[str] | None = None) -> SearchQuery:
        """From a query string; a parameter given twice is refused rather than half ignored."""
        for name in sorted(repeated or ()):
            raise InvalidFilter(name, "given more than once")
        return cls.model_validate(dict(query)).check()


class EditIn(_Payload):
    description: str | None = Field(None, max_length=DESCRIPTION_MAX * 2)
    tags: list[str] | None = Field(None, max_length=TAGS_MAX)

    @field_validator("description")
    @classmethod
    def _description(cls, value: str | None) -> str | None:
        return None if value is None else clean_description(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else clean_tags(value)

    @model_validator(mode="after")
    def _something(self) -> EditIn:
        if self.description is None and self.tags is None:
            raise ValueError("give a description, tags or both")
        return self


class EraseIn(_Payload):
    number: str = Field(min_length=1, max_length=NUMBER_MAX)
    reason: str = Field(min_length=3, max_length=REASON_MAX)

    @field_validator("number", "reason")
    @classmethod
    def _printable(cls, value: str) -> str:
        _no_control(value)
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class WaveformQuery(_Payload):
    points: int = Field(200, ge=1, le=MAX_POINTS)


class AudioQuery(_Payload):
    format: Literal["wav", "mp3", "ogg"] = "wav"


def as_json_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
