"""In-memory limits on login abuse: a token bucket per client address and a gate that coalesces refusal audits.

Both are pure bookkeeping on an injected clock (no I/O), and both keep a bounded number of entries, so that a
client inventing addresses or usernames cannot grow the process's memory without limit.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

Clock = Callable[[], datetime]

# Enough for every agent of a large site at once; beyond it the least recently seen entries are forgotten.
MAX_TRACKED = 10_000
# IPv6 clients usually own a whole /64: counting its addresses one by one would give each 2**64 buckets.
IPV6_PREFIX = 64
_NO_ADDRESS = "-"


def address_key(remote: str | None) -> str:
    """The bucket an address is counted in: the IPv4 address, or the IPv6 /64 it belongs to."""
    if not remote:
        return _NO_ADDRESS
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: datetime


class AddressLimiter:
    """A token bucket per client address: ``burst`` attempts at once, refilling at ``per_minute``.

    An address whose bucket has filled up again is indistinguishable from one never seen, so it is dropped.
    """

    def __init__(self, burst: int, per_minute: float, clock: Clock, *, max_entries: int = MAX_TRACKED) -> None:
        if burst < 1 or per_minute <= 0 or max_entries < 1:
            raise ValueError("burst, per_minute and max_entries must be positive")
        self._burst = float(burst)
        self._per_second = per_minute / 60.0
        self._clock = clock
        self._max_entries = max_entries
        # Least recently touched first: idle buckets collect at the front.
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, bucket: _Bucket, now: datetime) -> float:
        elapsed = max(0.0, (now - bucket.updated).total_seconds())
        return min(self._burst, bucket.tokens + elapsed * self._per_second)

    def _store(self, key: str, bucket: _Bucket | None, tokens: float, now: datetime) -> None:
        if bucket is None:
            self._buckets[key] = _Bucket(tokens, now)
        else:
            bucket.tokens = tokens
            # A clock stepping back must not hand out the same refill twice.
            bucket.updated = max(bucket.updated, now)
            self._buckets.move_to_end(key)

    def acquire(self, remote: str | None) -> float | None:
        """Takes one attempt from the address's bucket: None when granted, else the seconds until one is."""
        now = self._clock()
        key = address_key(remote)
        bucket = self._buckets.get(key)
        tokens = self._burst if bucket is None else self._level(bucket, now)
        if tokens < 1.0:
            self._store(key, bucket, tokens, now)
            return (1.0 - tokens) / self._per_second
        self._store(key, bucket, tokens - 1.0, now)
        self._evict(now)
        return None

    def refund(self, remote: str | None) -> None:
        """Gives an attempt back (a successful login should not use up a shared address's allowance)."""
        key = address_key(remote)
        bucket = self._buckets.get(key)
        if bucket is not None:
            now = self._clock()
            self._store(key, bucket, min(self._burst, self._level(bucket, now) + 1.0), now)

    def _evict(self, now: datetime) -> None:
        while self._buckets:
            key, oldest = next(iter(self._buckets.items()))
            if len(self._buckets) <= self._max_entries and self._level(oldest, now) < self._burst:
                break
            del self._buckets[key]


class RefusalAudits:
    """Decides which refused logins get an audit row: the first per key (username and address) per ``interval``.

    The others are only counted, and the count rides along on the next row that is written.
    """

    def __init__(self, interval: timedelta, clock: Clock, *, max_entries: int = MAX_TRACKED) -> None:
        self._interval = interval
        self._clock = clock
        self._max_entries = max_entries
        # key -> (when the last row was written, refusals since then); oldest row first.
        self._seen: OrderedDict[str, tuple[datetime, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, key: str) -> int | None:
        """None when this refusal is only counted; otherwise how many went unwritten since the last row."""
        now = self._clock()
        entry = self._seen.get(key)
        if entry is not None:
            written_at, unwritten = entry
            if written_at <= now < written_at + self._interval:
                self._seen[key] = (written_at, unwritten + 1)
                return None
        self._seen[key] = (now, 0)
        self._seen.move_to_end(key)
        while self._seen:
            oldest_key, (written_at, unwritten) = next(iter(self._seen.items()))
            expired = unwritten == 0 and not written_at <= now < written_at + self._interval
            if len(self._seen) <= self._max_entries and not expired:
                break
            del self._seen[oldest_key]
        return 0 if entry is None else entry[1]
