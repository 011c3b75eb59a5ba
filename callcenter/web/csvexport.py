"""CSV for the lists that are reports (statistics, work orders, fee settlements, outlets, visits): RFC 4180 text
with a header row, served as an attachment.

Cells hold caller and outlet text, which is data: a cell that a spreadsheet would run as a formula (CSV injection:
it starts with = + - @, a tab or a CR) is written with a leading apostrophe, which makes it text there.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """One cell: None empty, booleans as true/false, a list's items joined by spaces, a formula defused."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        value = " ".join(str(item) for item in value)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """The header row, then a line per row with its ``columns`` (a missing one empty)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([csv_cell(name) for name in columns])
    for row in rows:
        writer.writerow([csv_cell(row.get(name)) for name in columns])
    return buffer.getvalue()


def csv_response(name: str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> web.Response:
    """The rows as a download named ``<name>.csv``."""
    return web.Response(
        text=to_csv(columns, rows),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )
