"""Database.driver(): the raw driver connection of one pooled connection, held once per task."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, event, text

from callcenter.db import Database, DatabaseError, DatabaseUnavailable
from tests.db.conftest import DbTarget


def _checkouts(database: Database) -> list[int]:
    counted: list[int] = []
    event.listen(database.engine.sync_engine.pool, "checkout", lambda *_args: counted.append(1))
    return counted


async def _scalar(database: Database, connection: Any, query: str) -> Any:
    if database.dialect == "sqlite":
        async with connection.execute(query) as cursor:
            return (await cursor.fetchone())[0]
    return await connection.fetchval(query)


async def test_a_block_inside_a_block_of_the_same_task_gets_the_same_connection(database: Database) -> None:
    checkouts = _checkouts(database)
    async with database.driver() as outer:
        async with database.driver() as inner:
            assert inner is outer
            assert await _scalar(database, inner, "SELECT 6 * 7") == 42
        # The inner block's end gives nothing back: the outer block still reads on it.
        assert await _scalar(database, outer, "SELECT 1") == 1
    assert len(checkouts) == 1


async def test_a_task_started_inside_a_block_gets_a_connection_of_its_own(database: Database) -> None:
    async with database.driver() as outer:

        async def other() -> Any:
            async with database.driver() as connection:
                await _scalar(database, connection, "SELECT 1")
                return connection

        assert await asyncio.create_task(other()) is not outer
    # After the block the task holds nothing: the next block checks a connection out again.
    checkouts = _checkouts(database)
    async with database.driver():
        pass
    assert len(checkouts) == 1


async def test_a_driver_error_in_the_inner_block_is_ours_and_the_connection_is_not_reused(database: Database) -> None:
    with pytest.raises(DatabaseError):
        async with database.driver() as outer, database.driver() as inner:
            await _scalar(database, inner, "SELECT * FROM no_such_table")
    # The failed connection was invalidated by the outer block; the pool gives a working one.
    async with database.driver() as again:
        assert await _scalar(database, again, "SELECT 2") == 2
    assert outer is not None


# -- which driver errors are an outage ------------------------------------------------------------------------


def _no_outage_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if "no outage" in record.getMessage()]


async def test_a_query_the_driver_refuses_is_a_database_error_not_an_outage(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # asyncpg refuses more than 32,767 arguments with an InterfaceError; SQLite's "no such table" is an
    # OperationalError. Both are bugs in the statement: reporting them as "database unavailable" hid one.
    if database.dialect == "postgresql":
        query, ids = text("SELECT 1 FROM call_records WHERE id IN :ids"), list(range(40_000))
    else:
        query, ids = text("SELECT 1 FROM no_such_table WHERE id IN :ids"), [1]
    query = query.bindparams(bindparam("ids", expanding=True))
    with caplog.at_level(logging.WARNING, "callcenter.db"), pytest.raises(DatabaseError) as raised:
        async with database.session() as session:
            await session.execute(query, {"ids": ids})
    assert not isinstance(raised.value, DatabaseUnavailable)
    (logged,) = _no_outage_logged(caplog)
    # Logged once, with where it came from, and without the statement's parameters.
    assert "test_db_driver.py" in logged.getMessage()
    assert "39999" not in logged.getMessage()
    assert not [record for record in caplog.records if record.getMessage().startswith("database error:")]
    # The connection is fine: the next unit of work works.
    async with database.session() as session:
        assert await session.scalar(text("SELECT 7")) == 7


async def test_a_driver_error_that_is_a_bug_is_a_database_error_on_the_driver_connection_too(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    async def wrong() -> None:
        async with database.driver() as connection:
            if database.dialect == "postgresql":
                await connection.fetch("SELECT 1", *range(40_000))  # asyncpg.InterfaceError
            else:
                await _scalar(database, connection, "SELECT * FROM no_such_table")

    with caplog.at_level(logging.WARNING, "callcenter.db"), pytest.raises(DatabaseError) as raised:
        await wrong()
    assert not isinstance(raised.value, DatabaseUnavailable)
    assert len(_no_outage_logged(caplog)) == 1


async def test_a_refused_connection_and_a_timeout_are_still_an_outage(db_target: DbTarget, tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    if db_target.kind == "postgresql":
        url = "postgresql+asyncpg://postgres@127.0.0.1:9/nothing"  # nothing listens on the discard port
    else:
        url = f"sqlite+aiosqlite:///{gone / 'callcenter.sqlite3'}"
    database = Database(url)
    await database.open()
    if db_target.kind == "sqlite":
        # Where the database's directory was is now a plain file: SQLite cannot open the database.
        (gone / "callcenter.sqlite3").unlink(missing_ok=True)  # made (empty, 0600) by open()
        gone.rmdir()
        gone.write_text("not a directory")
    try:
        with pytest.raises(DatabaseUnavailable):
            async with database.session() as session:
                await session.execute(text("SELECT 1"))
        with pytest.raises(DatabaseUnavailable):
            async with database.driver():
                pass
    finally:
        await database.close()

    live = Database(db_target.url, schema=db_target.schema)

    async def session_times_out() -> None:
        async with live.session() as session:
            await session.execute(text("SELECT 1"))
            raise TimeoutError

    async def driver_times_out() -> None:
        async with live.driver():
            raise TimeoutError

    await live.open()
    try:
        with pytest.raises(DatabaseUnavailable):
            await session_times_out()
        with pytest.raises(DatabaseUnavailable):
            await driver_times_out()
    finally:
        await live.close()
