"""Database fixtures: every DB-backed test runs on SQLite in tmp_path and on the local PostgreSQL.

PostgreSQL tests each get a schema of their own (dropped afterwards), so they can run beside other test runs
on the same server. When the server is unreachable the PostgreSQL half is skipped, except under CI=true, where
a missing database is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from argon2 import PasswordHasher

from callcenter.auth.services import AuthService
from callcenter.config import AuthConfig
from callcenter.db import Database

PG_URL = os.environ.get("CC_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class DbTarget:
    url: str
    schema: str | None = None

    @property
    def kind(self) -> str:
        return "postgresql" if self.url.startswith("postgresql") else "sqlite"


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _admin_connection() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(_asyncpg_dsn(PG_URL), timeout=3)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: the PostgreSQL run is required)")
        pytest.skip(reason)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DbTarget]:
    if request.param == "sqlite":
        # A subdirectory that does not exist yet: Database.open must create it.
        yield DbTarget(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'callcenter.sqlite3'}")
        return
    connection = await _admin_connection()
    schema = f"test_auth_{secrets.token_hex(6)}"
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
        yield DbTarget(PG_URL, schema)
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()


@pytest.fixture
async def database(db_target: DbTarget) -> AsyncIterator[Database]:
    database = Database(db_target.url, schema=db_target.schema)
    await database.open()
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


class FakeClock:
    """A clock the test moves by hand, so throttling and expiry are tested without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def auth_config() -> AuthConfig:
    # A generous address allowance: tests that are not about it log in many times from one (or no) address.
    return AuthConfig(
        token_ttl_hours=1.0,
        free_failures=2,
        lockout_after=5,
        lockout_minutes=10.0,
        max_delay_seconds=4.0,
        address_burst=1000,
        address_per_minute=1000.0,
    )


# Cheap argon2 parameters: the tests exercise the logic, not the cost.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def service(database: Database, auth_config: AuthConfig, clock: FakeClock) -> AuthService:
    return AuthService(database, auth_config, clock=clock, password_hasher=FAST_HASHER)
