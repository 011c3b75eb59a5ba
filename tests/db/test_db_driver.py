"""Database.driver(): the raw driver connection of one pooled connection, held once per task."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event

from callcenter.db import Database, DatabaseError


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
