"""What an unauthenticated client can make the server spend: attempts per address, argon2 runs, audit and
throttle rows. Against SQLite and PostgreSQL, over HTTP where HTTP is involved; the clock is moved by hand."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher
from sqlalchemy import func, select

from callcenter.auth import services as services_module
from callcenter.auth.exceptions import InvalidCredentials, LoginThrottled
from callcenter.auth.http import auth_routes
from callcenter.auth.limits import AddressLimiter, RefusalAudits, address_key
from callcenter.auth.middleware import auth_middleware
from callcenter.auth.models import AuditEntry, LoginThrottle
from callcenter.auth.services import AuthService
from callcenter.auth.services import throttle_keys as keys_for_attempt
from callcenter.config import AuthConfig
from callcenter.db import Database
from callcenter.keys import AUTH
from callcenter.metrics import Metrics
from callcenter.web.errors import error_middleware

PASSWORD = "correct horse battery"
# Generous per-username throttling, so that only the limit under test refuses anything.
LENIENT = {"free_failures": 50, "lockout_after": 100, "lockout_minutes": 10.0}


class CountingHasher(PasswordHasher):
    """Cheap argon2 that counts the verifies it is asked for."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verifies = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verifies += 1
        return bool(super().verify(hash, password))


class GatedHasher(CountingHasher):
    """Each verify reports that it started, then waits in its worker thread until the test lets one through."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.started: asyncio.Queue[None] = asyncio.Queue()
        self._gate = threading.Semaphore(0)
        self._mutex = threading.Lock()
        self.running = 0
        self.most_running = 0

    def let_one_finish(self) -> None:
        self._gate.release()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        with self._mutex:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        self.loop.call_soon_threadsafe(self.started.put_nowait, None)
        try:
            if not self._gate.acquire(timeout=10):
                raise RuntimeError("the test never let this verify finish")
            return super().verify(hash, password)
        finally:
            with self._mutex:
                self.running -= 1


def make_app(service: AuthService) -> web.Application:
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[AUTH] = service
    app.add_routes(auth_routes)
    return app


@pytest.fixture
async def limited(database: Database, clock: Any) -> AuthService:
    config = AuthConfig(**LENIENT, address_burst=3, address_per_minute=6.0)
    return AuthService(database, config, clock=clock, password_hasher=CountingHasher())


@pytest.fixture
async def limited_client(limited: AuthService) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(make_app(limited))) as client:
        yield client


async def row_counts(database: Database) -> tuple[int, int]:
    async with database.session() as session:
        throttles = await session.scalar(select(func.count()).select_from(LoginThrottle))
        audits = await session.scalar(select(func.count()).select_from(AuditEntry))
    return int(throttles or 0), int(audits or 0)


async def throttle_keys(database: Database) -> set[str]:
    async with database.session() as session:
        return set(await session.scalars(select(LoginThrottle.username_key)))


def key_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def keys_of(*names: str) -> set[str]:
    """Both throttle rows of each username failing from no address: from that address, and from every one."""
    keys = set()
    for name in names:
        found = keys_for_attempt(name, address_key(None))
        keys |= {found.pair, found.username}
    return keys


async def post_login(client: TestClient[web.Request, web.Application], username: str, password: str) -> Any:
    return await client.post("/api/v1/login", json={"username": username, "password": password})


# the per-address bucket


async def test_an_address_past_its_burst_gets_429_before_any_database_or_argon2_work(
    limited: AuthService, limited_client: Any, database: Database, clock: Any
) -> None:
    hasher = limited._hasher
    assert isinstance(hasher, CountingHasher)
    for number in range(3):  # address_burst, each a new username (loopback is not exempt)
        assert (await post_login(limited_client, f"nobody-{number}", "wrong")).status == 401
    rows_before = await row_counts(database)
    assert rows_before == (6, 3)  # two throttle rows each: the username from this address, and the username
    verifies_before = hasher.verifies

    # With the database closed, any query would turn the answer into a 503: the refusal needs none.
    await database.close()
    refused = await post_login(limited_client, "nobody-3", "wrong")
    await database.open()
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "10"  # 6 per minute: one attempt every 10 s
    error = (await refused.json())["error"]
    assert error["id"] == "too_many_attempts"
    assert "address" in error["message"]
    assert error["details"] == {"retry_after": 10}
    assert await row_counts(database) == rows_before
    assert hasher.verifies == verifies_before

    clock.advance(10)
    assert (await post_login(limited_client, "nobody-4", "wrong")).status == 401
    assert (await post_login(limited_client, "nobody-5", "wrong")).status == 429
    assert await row_counts(database) == (8, 4)


async def test_successful_logins_do_not_use_up_an_address(limited: AuthService, limited_client: Any) -> None:
    await limited.create_user("amy", PASSWORD)
    for _ in range(10):
        assert (await post_login(limited_client, "amy", PASSWORD)).status == 200
    for _ in range(3):
        assert (await post_login(limited_client, "amy", "wrong")).status == 401
    assert (await post_login(limited_client, "amy", PASSWORD)).status == 429


async def test_each_address_and_each_ipv6_slash_64_has_its_own_bucket(database: Database, clock: Any) -> None:
    config = AuthConfig(**LENIENT, address_burst=1, address_per_minute=1.0)
    service = AuthService(database, config, clock=clock, password_hasher=CountingHasher())
    for remote in ("10.0.0.1", "10.0.0.2", "2001:db8::1", "2001:db8:0:1::1"):
        with pytest.raises(InvalidCredentials):
            await service.login("ben", "wrong", remote=remote)
    for remote in ("10.0.0.1", "::ffff:10.0.0.2", "2001:db8::ffff"):
        with pytest.raises(LoginThrottled) as refused:
            await service.login("ben", "wrong", remote=remote)
        assert refused.value.retry_after == 60
    # No address at all is one more bucket, not a way around them.
    with pytest.raises(InvalidCredentials):
        await service.login("ben", "wrong", remote=None)
    with pytest.raises(LoginThrottled):
        await service.login("ben", "wrong", remote="")


def test_address_keys_group_ipv6_by_slash_64_and_unwrap_mapped_ipv4() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert address_key(None) == address_key("") == "-"
    assert address_key("/run/callcenter.sock" + "x" * 100) == ("/run/callcenter.sock" + "x" * 100)[:64]


class ManualClock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_the_address_bucket_refills_at_its_rate_and_caps_at_its_burst() -> None:
    clock = ManualClock()
    limiter = AddressLimiter(burst=2, per_minute=30.0, clock=clock)  # one every 2 s
    assert limiter.acquire("a") is None
    assert limiter.acquire("a") is None
    assert limiter.acquire("a") == pytest.approx(2.0)
    clock.now += timedelta(seconds=1)
    assert limiter.acquire("a") == pytest.approx(1.0)
    clock.now += timedelta(seconds=1)
    assert limiter.acquire("a") is None
    clock.now += timedelta(hours=1)
    assert [limiter.acquire("a") for _ in range(2)] == [None, None]  # a long rest refills only up to the burst
    assert limiter.acquire("a") is not None
    limiter.refund("a")
    assert limiter.acquire("a") is None


def test_the_address_table_forgets_idle_addresses_and_never_outgrows_its_cap() -> None:
    clock = ManualClock()
    limiter = AddressLimiter(burst=2, per_minute=60.0, clock=clock, max_entries=100)
    for number in range(1000):
        limiter.acquire(f"10.0.{number // 256}.{number % 256}")
    assert len(limiter) == 100
    clock.now += timedelta(seconds=2)  # every bucket is full again: as good as never seen
    limiter.acquire("192.0.2.1")
    assert len(limiter) == 1


# concurrent argon2 work


async def test_no_more_than_max_concurrent_hashes_verifies_run_at_once(database: Database, clock: Any) -> None:
    hasher = GatedHasher(asyncio.get_running_loop())
    config = AuthConfig(**LENIENT, max_concurrent_hashes=2)
    service = AuthService(database, config, clock=clock, password_hasher=hasher)
    names = [f"user{number}" for number in range(6)]
    for name in names:
        await service.create_user(name, PASSWORD)
    logins = [asyncio.create_task(service.login(name, PASSWORD, remote=f"10.0.0.{i}")) for i, name in enumerate(names)]

    for _ in range(2):
        await asyncio.wait_for(hasher.started.get(), 10)
    for remaining in range(len(names), 0, -1):
        hasher.let_one_finish()
        if remaining > 2:
            # The finished verify frees a slot, and only then does a waiting one start.
            await asyncio.wait_for(hasher.started.get(), 10)
    results = await asyncio.wait_for(asyncio.gather(*logins), 10)

    assert [who.username for _, who in results] == names
    assert hasher.most_running == 2
    assert hasher.verifies == 6


# coalesced audit of refused attempts


async def test_refused_attempts_write_one_audit_row_per_username_per_minute(service: AuthService, clock: Any) -> None:
    metrics = Metrics()
    service._metrics = metrics
    await service.create_user("rex", PASSWORD)
    for _ in range(5):  # lockout_after
        with pytest.raises(InvalidCredentials):
            await service.login("rex", "wrong")
        clock.advance(4)

    async def refuse(name: str, times: int) -> None:
        for _ in range(times):
            with pytest.raises(LoginThrottled):
                await service.login(name, PASSWORD)

    await refuse("rex", 5)
    clock.advance(30)
    await refuse("rex", 3)
    refused, total = await service.list_audit(action="login_failed", target="rex")
    assert [item.outcome for item in refused].count("refused") == 1
    assert total == 6  # five wrong passwords and one refusal

    # Another username is audited on its own.
    for _ in range(2):  # free_failures
        with pytest.raises(InvalidCredentials):
            await service.login("sue", "wrong")
    await refuse("sue", 4)
    sue, _ = await service.list_audit(action="login_failed", target="sue")
    assert [item.outcome for item in sue] == ["refused", "failure", "failure"]

    clock.advance(30)  # a minute after rex's first refusal row
    await refuse("rex", 1)
    rows, _ = await service.list_audit(action="login_failed", target="rex")
    refusals = [item for item in rows if item.outcome == "refused"]
    assert len(refusals) == 2
    assert refusals[0].details["unaudited_refusals"] == 7
    assert "unaudited_refusals" not in refusals[1].details
    assert metrics.registry.get_sample_value("callcenter_logins_total", {"result": "locked"}) == 1 + 9
    assert metrics.registry.get_sample_value("callcenter_logins_total", {"result": "throttled"}) == 4


def test_the_refusal_audit_gate_stays_bounded() -> None:
    clock = ManualClock()
    gate = RefusalAudits(timedelta(minutes=1), clock, max_entries=50)
    assert [gate.admit(f"user{number}") for number in range(500)] == [0] * 500
    assert len(gate) == 50
    assert gate.admit("user499") is None
    clock.now += timedelta(minutes=1)
    assert gate.admit("user499") == 1
    assert gate.admit("someone-new") == 0
    assert len(gate) == 2  # the other rows' minutes are over and nothing went unwritten: forgotten


# pruning of login_throttle


async def test_expired_throttle_rows_are_pruned_at_most_once_a_minute(
    service: AuthService, database: Database, clock: Any
) -> None:
    async def fail(name: str) -> None:
        with pytest.raises(InvalidCredentials):
            await service.login(name, "wrong")

    await fail("old")  # t = 0; the lockout window is 10 minutes
    clock.advance(5 * 60)
    await fail("mid")  # t = 5:00, prunes: "old" is only 5 minutes quiet
    assert await throttle_keys(database) == keys_of("old", "mid")
    clock.advance(5 * 60 + 1)
    await fail("new")  # t = 10:01, prunes "old"
    assert await throttle_keys(database) == keys_of("mid", "new")

    clock.advance(4 * 60 + 29)
    await fail("x1")  # t = 14:30, prunes: "mid" has 30 s to go
    clock.advance(40)
    await fail("x2")  # t = 15:10: "mid" has expired, but the last pass was 40 s ago
    assert keys_of("mid") <= await throttle_keys(database)
    clock.advance(21)
    await fail("x3")  # t = 15:31: a minute since the last pass
    assert await throttle_keys(database) == keys_of("new", "x1", "x2", "x3")

    # A pruned username starts afresh, exactly as its expired row would have.
    await fail("old")
    await fail("old")
    with pytest.raises(LoginThrottled):
        await service.login("old", "wrong")


async def test_a_pruning_pass_is_bounded_and_the_next_failure_continues_it(
    service: AuthService, database: Database, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services_module, "PRUNE_BATCH", 2)
    stale_at = clock.now - timedelta(minutes=11)
    async with database.session() as session:
        session.add_all(
            LoginThrottle(username_key=key_of(f"stale{number}"), failures=1, last_failure_at=stale_at)
            for number in range(5)
        )

    remaining = []
    for attempt in range(4):
        with pytest.raises(InvalidCredentials):
            await service.login(f"fresh{attempt}", "wrong")
        remaining.append(len(await throttle_keys(database)) - 2 * (attempt + 1))
    # 2 deleted, a full batch so the next failure goes on: 2 more, then the last one, then nothing to do.
    assert remaining == [3, 1, 0, 0]
