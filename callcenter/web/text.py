"""Text and times as the API takes them, for the features' pydantic schemas.

Text is kept as given (markup, quotes, CR/LF and all): it is data, bound as a parameter and escaped wherever it is
shown. Only what no database can store is refused: NUL (which PostgreSQL rejects) and unpaired surrogates (which
are not text). A key things are matched by (a region, a product category, a fault type) loses its surrounding
blanks. A time must say its zone, and is kept in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no unpaired surrogates)") from None
    return value


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def trimmed(value: str) -> str:
    return value.strip()


def aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("give a time zone (e.g. 2030-01-01T09:00:00+08:00)")
    return None if value is None else value.astimezone(UTC)


Text = Annotated[str, AfterValidator(storable)]
# Surrounding blanks dropped, blank refused.
Key = Annotated[str, AfterValidator(storable), AfterValidator(trimmed), AfterValidator(not_blank)]
AwareTime = Annotated[datetime, AfterValidator(aware)]
