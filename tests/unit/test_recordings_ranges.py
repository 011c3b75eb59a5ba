"""HTTP Range parsing for playback (pure): what is served as 206, as 200 and refused as 416."""

from __future__ import annotations

import pytest

from recordings.exceptions import RangeNotSatisfiable
from recordings.streaming import ByteRange, parse_range

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=999-999", ByteRange(999, 999)),
        ("bytes=500-", ByteRange(500, 999)),
        ("bytes=-100", ByteRange(900, 999)),
        ("bytes=-5000", ByteRange(0, 999)),
        ("bytes=900-5000", ByteRange(900, 999)),
        ("BYTES = 10-19", ByteRange(10, 19)),
        ("bytes=0-1, 5-6", None),  # several ranges: the whole file, as RFC 9110 allows
        ("bytes=2000-3000, 0-9", ByteRange(0, 9)),  # the one satisfiable range of several
        ("items=0-10", None),  # a unit we do not know is ignored
    ],
)
def test_ranges_that_are_served(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    [
        "bytes=1000-",  # starts at the end
        "bytes=1000-2000",
        "bytes=-0",  # an empty suffix
        "bytes=500-400",  # ends before it starts
        "bytes=abc",
        "bytes=",
        "bytes=--5",
        "bytes=1-2-3",
        "bytes=0x10-20",
        "bytes= -",
        "bytes",
        "bytes=" + ",".join(["0-1"] * 17),
        "bytes=" + "9" * 30 + "-",
    ],
)
def test_bad_or_unsatisfiable_ranges_are_416_with_the_size(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, SIZE)
    assert caught.value.status == 416
    assert caught.value.error_id == "range_not_satisfiable"
    assert caught.value.headers == {"Content-Range": f"bytes */{SIZE}"}


def test_an_empty_file_satisfies_no_range() -> None:
    assert parse_range(None, 0) is None
    for header in ("bytes=0-", "bytes=-1", "bytes=0-0"):
        with pytest.raises(RangeNotSatisfiable):
            parse_range(header, 0)


def test_range_length_counts_both_ends() -> None:
    assert ByteRange(10, 19).length == 10
