"""HTTP Range (RFC 9110) for recordings: a pure parser, and streaming from an open descriptor.

One range is served as 206 with Content-Range. A range that cannot be satisfied, or a malformed ``bytes=``
header, is answered 416 with ``Content-Range: bytes */SIZE``. Several ranges at once are allowed by the RFC to
be answered with the whole file (200), which is what happens here: no multipart/byteranges. A Range in
another unit is ignored, as the RFC requires, and so is a Range whose If-Range validator no longer matches.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass

from aiohttp import hdrs, web

from recordings.exceptions import RangeNotSatisfiable

RANGE_HEADER_MAX = 256
MAX_RANGES = 16
CHUNK = 256 * 1024
_SPEC = re.compile(r"\A(?:(\d{1,19})-(\d{0,19})|-(\d{1,19}))\Z")


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range to serve, None for the whole file, or RangeNotSatisfiable."""
    if header is None:
        return None
    unit, equals, specs = header.strip().partition("=")
    if unit.strip().lower() != "bytes":
        # RFC 9110 14.2: a range unit the server does not understand is ignored.
        return None
    if not equals or len(header) > RANGE_HEADER_MAX:
        raise RangeNotSatisfiable(size, "malformed Range header")
    parts = [part.strip() for part in specs.split(",")]
    if len(parts) > MAX_RANGES:
        raise RangeNotSatisfiable(size, "too many ranges")
    satisfiable: list[ByteRange] = []
    for part in parts:
        match = _SPEC.match(part)
        if match is None:
            raise RangeNotSatisfiable(size, f"malformed range {part[:40]!r}")
        first, last, suffix = match.groups()
        if suffix is not None:
            length = int(suffix)
            if length == 0 or size == 0:
                continue
            satisfiable.append(ByteRange(max(0, size - length), size - 1))
            continue
        start = int(first)
        end = int(last) if last else size - 1
        if last and end < start:
            raise RangeNotSatisfiable(size, f"range {part[:40]!r} ends before it starts")
        if start >= size:
            continue
        satisfiable.append(ByteRange(start, min(end, size - 1)))
    if not satisfiable:
        raise RangeNotSatisfiable(size, "no requested range overlaps the file")
    if len(satisfiable) > 1:
        return None
    return satisfiable[0]


def wanted_range(request: web.Request, size: int, etag: str) -> ByteRange | None:
    """The range a request asks for, honouring If-Range (a stale validator means the whole file)."""
    header = request.headers.get(hdrs.RANGE)
    if header is None:
        return None
    if_range = request.headers.get(hdrs.IF_RANGE)
    if if_range is not None and if_range.strip() != etag:
        return None
    return parse_range(header, size)


async def stream_fd(
    request: web.Request,
    fd: int,
    size: int,
    *,
    content_type: str,
    etag: str,
    filename: str,
) -> web.StreamResponse:
    """Sends the file behind ``fd`` (whole or the requested range), reading it in a worker thread."""
    wanted = wanted_range(request, size, etag)
    start, length = (0, size) if wanted is None else (wanted.start, wanted.length)
    response = web.StreamResponse(status=200 if wanted is None else 206)
    response.content_type = content_type
    response.content_length = length
    response.headers[hdrs.ACCEPT_RANGES] = "bytes"
    response.headers[hdrs.ETAG] = etag
    # Customers' voices: no shared cache may keep them.
    response.headers[hdrs.CACHE_CONTROL] = "private, no-store"
    response.headers[hdrs.CONTENT_DISPOSITION] = f'inline; filename="{filename}"'
    if wanted is not None:
        response.headers[hdrs.CONTENT_RANGE] = f"bytes {wanted.start}-{wanted.end}/{size}"
    await response.prepare(request)
    if request.method == hdrs.METH_HEAD:
        return response
    position, remaining = start, length
    while remaining > 0:
        chunk = await asyncio.to_thread(os.pread, fd, min(CHUNK, remaining), position)
        if not chunk:
            break
        await response.write(chunk)
        position += len(chunk)
        remaining -= len(chunk)
    await response.write_eof()
    return response
