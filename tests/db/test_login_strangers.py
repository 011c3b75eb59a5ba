"""A stranger who knows a username cannot lock its owner out: failures count per username and address, and the
right password from an address the user has logged in from before is never locked. The stranger is delayed, then
locked; every lock is audited and counted. SQLite and PostgreSQL; the clock is moved by hand."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from callcenter.auth.exceptions import InvalidCredentials, LoginThrottled
from callcenter.auth.models import LoginSource
from callcenter.auth.services import AuthService
from callcenter.config import AuthConfig
from callcenter.db import Database
from callcenter.metrics import Metrics
from tests.db.conftest import FAST_HASHER

PASSWORD = "owner's right password"
OFFICE = "10.20.30.40"  # where the owner has logged in before
STRANGER = "203.0.113.9"
ELSEWHERE = "198.51.100.7"  # an address the owner has never used


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def auth(database: Database, clock: Any, metrics: Metrics) -> AuthService:
    # Delays after 2 failures (1 s, 2 s, 4 s at most), a lock after 5 from one address, after 12 from all.
    config = AuthConfig(
        token_ttl_hours=1.0,
        free_failures=2,
        lockout_after=5,
        lockout_minutes=10.0,
        max_delay_seconds=4.0,
        username_lockout_after=12,
        known_addresses=3,
        address_burst=1000,
        address_per_minute=1000.0,
    )
    service = AuthService(database, config, metrics, clock=clock, password_hasher=FAST_HASHER)
    await service.create_user("admin", PASSWORD)
    await service.login("admin", PASSWORD, remote=OFFICE)
    return service


async def fail(auth: AuthService, remote: str, clock: Any, times: int) -> None:
    """Wrong passwords, each after waiting out the delay before it."""
    for _ in range(times):
        with pytest.raises(InvalidCredentials):
            await auth.login("admin", "guess", remote=remote)
        clock.advance(4)


def locks(metrics: Metrics, scope: str) -> float:
    return metrics.registry.get_sample_value("callcenter_login_locks_total", {"scope": scope}) or 0.0


async def test_a_strangers_failures_elsewhere_do_not_stop_the_owner_from_a_known_address(
    auth: AuthService, clock: Any
) -> None:
    await fail(auth, STRANGER, clock, 5)  # lockout_after: the stranger's address is locked for this username
    with pytest.raises(LoginThrottled):
        await auth.login("admin", PASSWORD, remote=STRANGER)
    _, who = await auth.login("admin", PASSWORD, remote=OFFICE)
    assert who.username == "admin"
    # An address the owner never used is not touched by the stranger's either.
    _, who = await auth.login("admin", PASSWORD, remote=ELSEWHERE)
    assert who.username == "admin"


async def test_the_stranger_is_delayed_more_and_more_then_locked(auth: AuthService, clock: Any) -> None:
    for _ in range(2):  # free_failures: heard at once
        with pytest.raises(InvalidCredentials):
            await auth.login("admin", "guess", remote=STRANGER)
    waits = []
    for _ in range(3):
        with pytest.raises(LoginThrottled) as refused:
            await auth.login("admin", "guess", remote=STRANGER)
        waits.append(refused.value.retry_after)
        clock.advance(refused.value.retry_after)
        with pytest.raises(InvalidCredentials):
            await auth.login("admin", "guess", remote=STRANGER)
    assert waits == [1, 2, 4]  # doubling up to max_delay_seconds
    # That was the fifth failure (lockout_after): locked from there, the right password too.
    clock.advance(4)
    with pytest.raises(LoginThrottled) as refused:
        await auth.login("admin", PASSWORD, remote=STRANGER)
    assert 590 <= refused.value.retry_after <= 600
    clock.advance(600)
    _, who = await auth.login("admin", PASSWORD, remote=STRANGER)
    assert who.username == "admin"


async def test_every_lock_is_audited_and_counted(auth: AuthService, clock: Any, metrics: Metrics) -> None:
    await fail(auth, STRANGER, clock, 5)
    rows, _ = await auth.list_audit(action="login_locked")
    assert [(row.target, row.remote_addr, row.details["scope"], row.details["address"]) for row in rows] == [
        ("admin", STRANGER, "address", STRANGER)
    ]
    assert locks(metrics, "address") == 1
    assert locks(metrics, "username") == 0

    # The same stranger from more addresses: past username_lockout_after failures in all, the username locks for
    # every address its owner has not used; the owner's own address still takes the right password.
    await fail(auth, "203.0.113.10", clock, 5)
    await fail(auth, "203.0.113.11", clock, 2)
    rows, _ = await auth.list_audit(action="login_locked")
    assert sorted(row.details["scope"] for row in rows) == ["address", "address", "username"]
    assert locks(metrics, "address") == 2
    assert locks(metrics, "username") == 1
    with pytest.raises(LoginThrottled):
        await auth.login("admin", PASSWORD, remote=ELSEWHERE)
    _, who = await auth.login("admin", PASSWORD, remote=OFFICE)
    assert who.username == "admin"


async def test_a_stranger_behind_the_owners_own_address_is_delayed_but_never_locks_it(
    auth: AuthService, clock: Any, metrics: Metrics
) -> None:
    # The office NAT: the stranger shares the owner's known address.
    await fail(auth, OFFICE, clock, 20)
    assert locks(metrics, "address") == 0
    with pytest.raises(InvalidCredentials):
        await auth.login("admin", "guess", remote=OFFICE)
    # Right away the delay holds the right password back too (otherwise the stranger could guess at full speed)...
    with pytest.raises(LoginThrottled) as refused:
        await auth.login("admin", PASSWORD, remote=OFFICE)
    assert refused.value.retry_after <= 4  # max_delay_seconds, not the lockout
    clock.advance(4)
    # ...and once it is over the owner is in, although the username is locked for every other address.
    _, who = await auth.login("admin", PASSWORD, remote=OFFICE)
    assert who.username == "admin"
    with pytest.raises(LoginThrottled):
        await auth.login("admin", PASSWORD, remote=ELSEWHERE)


async def test_an_address_becomes_known_only_by_a_successful_login_and_few_are_kept(
    auth: AuthService, database: Database, clock: Any
) -> None:
    await fail(auth, ELSEWHERE, clock, 1)  # a failure does not make an address known
    for number in range(1, 5):
        clock.advance(1)
        await auth.login("admin", PASSWORD, remote=f"192.0.2.{number}")
    # An IPv6 host counts by its /64: another address of the same network is the same source.
    await auth.login("admin", PASSWORD, remote="2001:db8:1:2::10")
    async with database.session() as session:
        kept = set(await session.scalars(select(LoginSource.source)))
    assert kept == {"192.0.2.3", "192.0.2.4", "2001:db8:1:2::/64"}  # known_addresses = 3, the newest

    await fail(auth, "2001:db8:1:2::99", clock, 7)  # more than lockout_after, from the known /64
    _, who = await auth.login("admin", PASSWORD, remote="2001:db8:1:2::77")
    assert who.username == "admin"
    # OFFICE fell out of the known set: from there the lock applies again.
    clock.advance(600)  # the streak over every address is over
    await fail(auth, OFFICE, clock, 5)
    with pytest.raises(LoginThrottled):
        await auth.login("admin", PASSWORD, remote=OFFICE)


async def test_unknown_usernames_get_the_same_answers_as_known_ones(auth: AuthService, clock: Any) -> None:
    outcomes: dict[str, list[str]] = {}
    for name in ("admin", "nobody-here"):
        for _ in range(7):
            try:
                await auth.login(name, "guess", remote=STRANGER)
            except (InvalidCredentials, LoginThrottled) as exc:
                outcomes.setdefault(name, []).append(f"{exc.status} {exc.message}")
            clock.advance(4)
        clock.advance(600)
    assert outcomes["admin"] == outcomes["nobody-here"]
    assert outcomes["admin"][-1].startswith("429")
