"""The service-record outbox against SQLite and PostgreSQL: records wait while the database is unreachable and
are written exactly once when it is back, across restarts and crashes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from callcenter.db import Database, DatabaseUnavailable
from crm_bridge.exceptions import InvalidCrmInput
from crm_bridge.models import ServiceRecord, ServiceRecordHistory
from crm_bridge.outbox import JOURNAL_NAME, ServiceRecordOutbox
from crm_bridge.schemas import CustomerIn, ServiceRecordIn, ServiceRecordQuery
from crm_bridge.services import CrmService


class _Relay:
    """A TCP relay to PostgreSQL that can be cut: down refuses connections and drops the open ones."""

    def __init__(self, target_port: int = 5432) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        self._writers |= {client_writer, server_writer}

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))


class Switchable:
    """A database that the test takes away and gives back, the way an outage does."""

    def __init__(self, database: Database, down: Any, up: Any) -> None:
        self.database = database
        self._down = down
        self._up = up

    async def down(self) -> None:
        # Connections already in the pool would otherwise outlive the outage.
        await self.database.engine.dispose()
        await self._down()

    async def up(self) -> None:
        await self._up()


@pytest.fixture
async def switchable(db_target: Any, tmp_path: Path) -> AsyncIterator[Switchable]:
    if db_target.kind == "sqlite":
        live = tmp_path / "live"
        parked = tmp_path / "parked"
        database = Database(f"sqlite+aiosqlite:///{live / 'crm.sqlite3'}")
        await database.open()
        await database.migrate()

        async def down() -> None:
            # Where the database file was, its directory is now a plain file: SQLite cannot open it.
            live.rename(parked)
            live.write_text("not a directory")

        async def up() -> None:
            live.unlink()
            parked.rename(live)

        yield Switchable(database, down, up)
        await database.close()
        return
    relay = _Relay()
    await relay.up()
    url = db_target.url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
    database = Database(url, schema=db_target.schema)
    await database.open()
    await database.migrate()
    yield Switchable(database, relay.down, relay.up)
    await database.close()
    await relay.down()


def voicemail(key: str | None = None, **extra: Any) -> ServiceRecordIn:
    return ServiceRecordIn.model_validate(
        {"type": "voicemail", "content": "<b>call me</b>\r\n'; DROP TABLE x;--", "idempotency_key": key, **extra}
    )


async def count_records(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(ServiceRecord)) or 0)


def journal_lines(directory: Path) -> list[dict[str, Any]]:
    path = directory / JOURNAL_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


async def test_records_wait_while_the_database_is_down_and_are_written_once_when_it_is_back(
    switchable: Switchable, tmp_path: Path
) -> None:
    crm = CrmService(switchable.database)
    outbox = ServiceRecordOutbox(crm.records, tmp_path / "outbox")
    written = await outbox.submit(voicemail("before"), actor="voicemail")
    assert (written.queued, written.created) == (False, True)

    await switchable.down()
    with pytest.raises(DatabaseUnavailable):
        await crm.records.find(ServiceRecordQuery())
    waiting = [await outbox.submit(voicemail(f"down-{n}"), actor="voicemail") for n in range(3)]
    anonymous = await outbox.submit(voicemail(None, caller_name="Ann"), actor="voicemail")
    assert all(item.queued and item.record is None for item in [*waiting, anonymous])
    assert anonymous.key.startswith("outbox-")
    assert outbox.pending == 4
    assert await outbox.drain() is False
    assert outbox.pending == 4
    assert {line["key"] for line in journal_lines(tmp_path / "outbox") if line["op"] == "put"} >= {
        "down-0",
        "down-1",
        "down-2",
        anonymous.key,
    }

    await switchable.up()
    assert await outbox.drain() is True
    assert outbox.pending == 0
    assert await outbox.drain() is True
    assert await count_records(switchable.database) == 5
    assert (await crm.records.by_key(anonymous.key)) is not None
    stored = await crm.records.by_key("down-1")
    assert stored is not None
    assert stored.content == "<b>call me</b>\r\n'; DROP TABLE x;--"
    # Everything is written: the journal is empty again.
    assert journal_lines(tmp_path / "outbox") == []
    async with switchable.database.session() as session:
        creations = await session.scalar(select(func.count()).select_from(ServiceRecordHistory))
    assert creations == 5


async def test_the_background_task_writes_what_waits_as_soon_as_the_database_answers(
    switchable: Switchable, tmp_path: Path
) -> None:
    crm = CrmService(switchable.database)
    outbox = ServiceRecordOutbox(crm.records, tmp_path / "outbox", retry_initial=0.05, retry_max=0.2)
    outbox.start()
    try:
        await switchable.down()
        queued = await outbox.submit(voicemail("late"), actor="voicemail")
        assert queued.queued
        await asyncio.sleep(0.3)
        assert outbox.pending == 1
        await switchable.up()
        async with asyncio.timeout(20):
            while outbox.pending:
                await asyncio.sleep(0.05)
        assert await count_records(switchable.database) == 1
    finally:
        await outbox.close()


async def test_a_restart_replays_the_journal_and_a_replay_adds_nothing(database: Database, tmp_path: Path) -> None:
    crm = CrmService(database)
    directory = tmp_path / "outbox"
    directory.mkdir()
    # An earlier run: one record journalled but never written, one written whose "done" mark was lost in a crash,
    # and a last line torn by the crash.
    already, _ = await crm.records.create(voicemail("written-before-crash"), actor="voicemail")
    entries = [
        {"op": "put", "key": key, "actor": "voicemail", "queued_at": "2030-01-01T00:00:00+00:00", "record": record}
        for key, record in (
            ("never-written", voicemail("never-written").model_dump(mode="json")),
            ("written-before-crash", voicemail("written-before-crash").model_dump(mode="json")),
        )
    ]
    text = "".join(json.dumps(entry) + "\n" for entry in entries) + '{"op": "put", "key": "tor'
    (directory / JOURNAL_NAME).write_text(text, encoding="utf-8")

    outbox = ServiceRecordOutbox(crm.records, directory)
    await outbox.load()
    assert outbox.pending == 2
    assert await outbox.drain() is True
    assert await count_records(database) == 2
    assert (await crm.records.by_key("written-before-crash")) == already
    assert (await crm.records.by_key("never-written")) is not None

    # The same journal again (as if the truncation had not happened): still nothing twice.
    (directory / JOURNAL_NAME).write_text(text, encoding="utf-8")
    again = ServiceRecordOutbox(crm.records, directory)
    assert await again.drain() is True
    assert await count_records(database) == 2


async def test_a_record_the_database_refuses_is_kept_aside_not_retried(database: Database, tmp_path: Path) -> None:
    crm = CrmService(database)
    outbox = ServiceRecordOutbox(crm.records, tmp_path / "outbox")
    # Submitted directly, the writer hears the refusal.
    with pytest.raises(InvalidCrmInput):
        await outbox.submit(voicemail("gone", customer_id=4242), actor="agent")
    assert outbox.pending == 0
    # Queued during an outage for a customer deleted meanwhile: set aside for an operator.
    owner = await crm.customers.create(CustomerIn(name="Soon gone"))
    directory = tmp_path / "outbox"
    entry = {
        "op": "put",
        "key": "orphan",
        "actor": "voicemail",
        "queued_at": "2030-01-01T00:00:00+00:00",
        "record": voicemail("orphan", customer_id=owner.customer.id + 1000).model_dump(mode="json"),
    }
    (directory / JOURNAL_NAME).write_text(json.dumps(entry) + "\n", encoding="utf-8")
    replay = ServiceRecordOutbox(crm.records, directory)
    assert await replay.drain() is True
    assert replay.pending == 0
    rejected = [json.loads(line) for line in replay.rejected_path.read_text(encoding="utf-8").splitlines()]
    assert [item["key"] for item in rejected] == ["orphan"]
    assert await count_records(database) == 0


async def test_the_journal_is_fsynced_before_the_database_is_tried(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = CrmService(database)
    outbox = ServiceRecordOutbox(crm.records, tmp_path / "outbox")
    order: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr("crm_bridge.outbox.os.fsync", lambda fd: (order.append("fsync"), real_fsync(fd))[1])
    real_create = crm.records.create

    async def create(*args: Any, **kwargs: Any) -> Any:
        order.append("database")
        return await real_create(*args, **kwargs)

    monkeypatch.setattr(crm.records, "create", create)
    await outbox.submit(voicemail("ordered"), actor="voicemail")
    assert order.index("fsync") < order.index("database")
