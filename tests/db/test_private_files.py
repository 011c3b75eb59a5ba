"""The data directory and the files that hold password hashes, customer files and the audit log are their owner's
alone (issue 16, item 5): the directory 0700, the SQLite database with its -wal and -shm files and the journals
0600, whatever the umask, and an older database made 0644 is taken back to 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from callcenter.db import Database, Journal, private_directory


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


async def test_a_new_sqlite_database_its_wal_and_its_directory_are_private(tmp_path: Path, usual_umask: None) -> None:
    file = tmp_path / "data" / "callcenter.db"
    database = Database(f"sqlite+aiosqlite:///{file}")
    await database.open()
    try:
        async with database.session() as session:
            await session.execute(text("CREATE TABLE t (x INTEGER)"))
            await session.execute(text("INSERT INTO t VALUES (1)"))
        assert (file.parent / "callcenter.db-wal").exists()
        for each in ("callcenter.db", "callcenter.db-wal", "callcenter.db-shm"):
            assert mode(file.parent / each) == 0o600, each
    finally:
        await database.close()
    assert mode(file.parent) == 0o700


async def test_an_older_world_readable_database_is_made_private(tmp_path: Path, usual_umask: None) -> None:
    file = tmp_path / "callcenter.db"
    file.touch(mode=0o644)
    file.chmod(0o644)
    database = Database(f"sqlite+aiosqlite:///{file}")
    await database.open()
    await database.close()
    assert mode(file) == 0o600


def test_the_data_directory_is_made_private_even_when_it_exists(tmp_path: Path, usual_umask: None) -> None:
    data = tmp_path / "var"
    data.mkdir(mode=0o755)
    private_directory(data)
    assert mode(data) == 0o700
    fresh = tmp_path / "new" / "data"
    private_directory(fresh)
    assert mode(fresh) == 0o700


async def test_journals_are_private(tmp_path: Path, usual_umask: None) -> None:
    journal = Journal(tmp_path / "journal" / "calls.jsonl", compact_after=1)
    await journal.load()
    await journal.put([("record:1", {"kind": "record"})])
    assert mode(journal.path) == 0o600
    assert mode(journal.path.parent) == 0o700
    await journal.finish(["record:1"])  # compaction rewrites the file through a temporary one
    assert mode(journal.path) == 0o600
