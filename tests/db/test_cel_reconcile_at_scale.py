"""Reconciling a CEL log of 50,000 finished calls on SQLite and PostgreSQL: every call gets exactly one record
(chunked queries: PostgreSQL refuses more than 32,767 arguments in one), the reader keeps only a chunk's worth of
open calls, and the position stored with the records lets a restarted recorder resume where the writes ended.
Timings are in bench/cel_reconcile.py, not here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from callcenter.bus import Bus
from callcenter.db import Database, DatabaseError
from callcenter.model import LiveModel
from calls.cel import CelReader
from calls.events import CallRecorded
from calls.models import CallRecord, CelPosition
from calls.service import CallRecorder

CALLS = 50_000
START = 1_796_000_000.0
SEATS = 40

# One line as asterisk-conf/cel_custom.conf makes Asterisk write it (see the sandbox's log, tests/unit/test_cel_reader).
_LINE = (
    '{{"eventtype":"{0}","eventtime":{1:.6f},"uniqueid":"{2}","linkedid":"{3}","appname":"{4}","appdata":"{5}",'
    '"num":"{6}","exten":"{7}","context":"{8}","channame":"{9}"}}\n'
)


def linkedid_of(n: int) -> str:
    return f"{int(START) + n}.{n}"


def call_lines(n: int, *, ended: bool = True) -> Iterator[str]:
    """The 17 lines of caller ``n`` going through the IVR into ``support``, answered by a seat, 12 s of talk."""
    caller = linkedid_of(n)
    seat_id = f"{int(START) + n}.{n}9"
    seat = f"PJSIP/{1001 + n % SEATS}"
    at = START + 2 * n
    number = f"13800{n:06d}"
    agi = f"agi://127.0.0.1:4573/ivr?linkedid={caller}&did=4000"
    pstn = f"PJSIP/pstn-{n:08x}"
    agent = f"{seat}-{n:08x}"
    them = (caller, caller)
    lines = [
        ("CHAN_START", at, *them, "", "", number, "4000", "from-pstn", pstn),
        ("APP_START", at + 0.001, *them, "AGI", agi, number, "s", "cc-inbound", pstn),
        ("ANSWER", at + 0.002, *them, "AGI", agi, number, "s", "cc-inbound", pstn),
        ("APP_END", at + 0.5, *them, "AGI", agi, number, "s", "cc-inbound", pstn),
        ("APP_START", at + 0.501, *them, "Queue", "support", number, "s", "cc-inbound", pstn),
        ("CHAN_START", at + 0.502, seat_id, caller, "", "", "1001", "s", "from-phones", agent),
        ("ANSWER", at + 1.0, seat_id, caller, "AppQueue", "(Outgoing Line)", "1001", "s", "from-phones", agent),
        ("BRIDGE_ENTER", at + 1.01, seat_id, caller, "AppQueue", "(Outgoing Line)", "1001", "s", "from-phones", agent),
        ("BRIDGE_ENTER", at + 1.011, *them, "Queue", "support", number, "s", "cc-inbound", pstn),
        ("BRIDGE_EXIT", at + 13.0, *them, "Queue", "support", number, "s", "cc-inbound", pstn),
        ("BRIDGE_EXIT", at + 13.001, seat_id, caller, "AppQueue", "(Outgoing Line)", "1001", "s", "from-phones", agent),
        ("APP_END", at + 13.002, *them, "Queue", "support", number, "s", "cc-inbound", pstn),
        ("HANGUP", at + 13.002, *them, "", "", number, "s", "cc-inbound", pstn),
        ("CHAN_END", at + 13.002, *them, "", "", number, "s", "cc-inbound", pstn),
        ("HANGUP", at + 13.003, seat_id, caller, "AppQueue", "(Outgoing Line)", "1001", "s", "from-phones", agent),
        ("CHAN_END", at + 13.003, seat_id, caller, "AppQueue", "(Outgoing Line)", "1001", "s", "from-phones", agent),
        (
            "LINKEDID_END",
            at + 13.004,
            seat_id,
            caller,
            "AppQueue",
            "(Outgoing Line)",
            "1001",
            "s",
            "from-phones",
            agent,
        ),
    ]
    for fields in lines if ended else lines[:9]:
        yield _LINE.format(*fields)


def write_cel_log(path: Path, calls: range, *, ended: bool = True) -> int:
    """Appends the lines of ``calls`` to ``path``; returns the offset where they start."""
    offset = path.stat().st_size if path.exists() else 0
    with path.open("a", encoding="ascii") as handle:
        for n in calls:
            handle.writelines(call_lines(n, ended=ended))
    return offset


def end_of_call(n: int) -> float:
    return START + 2 * n + 13.004


class Counting(CelReader):
    """The recorder's reader, noting the most calls it held after any chunk: the memory bound."""

    most = 0

    def read_chunk(self) -> Any:
        chunk = super().read_chunk()
        self.most = max(self.most, len(self.calls))
        return chunk


def recorder_on(database: Database, bus: Bus, log: Path, now: float) -> CallRecorder:
    recorder = CallRecorder(
        database,
        bus,
        LiveModel,
        cel_log=log,
        expert_queue="expert",
        reconcile_interval=3600,
        snapshot_interval=3600,
        clock=lambda: now,
    )
    recorder.cel = Counting(log)
    return recorder


async def _counts(database: Database) -> tuple[int, int]:
    async with database.session() as session:
        rows = await session.scalar(select(func.count()).select_from(CallRecord))
        distinct = await session.scalar(select(func.count(func.distinct(CallRecord.linkedid))))
    return int(rows or 0), int(distinct or 0)


async def _position(database: Database, log: Path) -> tuple[int | None, int]:
    async with database.session() as session:
        row = await session.get(CelPosition, str(log))
    assert row is not None
    return row.inode, row.byte_offset


async def test_fifty_thousand_calls_get_one_record_each_and_a_restart_resumes_where_the_writes_ended(
    database: Database, tmp_path: Path
) -> None:
    log = tmp_path / "cel.jsonl"
    write_cel_log(log, range(CALLS))
    bus = Bus()
    recorded: list[CallRecorded] = []
    bus.subscribe(CallRecorded, recorded.append)
    now = end_of_call(CALLS - 1) + 600

    recorder = recorder_on(database, bus, log, now)
    assert await recorder.reconcile() == CALLS
    await bus.drain()
    assert await _counts(database) == (CALLS, CALLS)
    assert len(recorded) == CALLS
    async with database.session() as session:
        sample = await session.scalar(select(CallRecord).where(CallRecord.linkedid == linkedid_of(12_345)))
    assert sample is not None
    assert (sample.source, sample.outcome, sample.agent) == ("cel", "answered", f"PJSIP/{1001 + 12_345 % SEATS}")
    assert (sample.caller_number, sample.did) == ("13800012345", "4000")
    assert sample.ended_at.timestamp() == end_of_call(12_345)
    # Memory: a chunk's worth of calls at most, and nothing once they are recorded.
    assert isinstance(recorder.cel, Counting)
    assert 0 < recorder.cel.most < 2_000
    assert recorder.cel.calls == {}
    size = log.stat().st_size
    assert await _position(database, log) == (log.stat().st_ino, size)

    # A second pass writes nothing and reads nothing old.
    read = recorder.cel.bytes_read
    assert await recorder.reconcile() == 0
    assert recorder.cel.bytes_read == read == size

    # More calls, and one still running when the engine stops.
    write_cel_log(log, range(CALLS, CALLS + 100))
    running = write_cel_log(log, range(CALLS + 100, CALLS + 101), ended=False)
    grown = log.stat().st_size
    now = end_of_call(CALLS + 100) + 600

    again = recorder_on(database, bus, log, now)
    assert await again.reconcile() == 100
    # Only what was appended was read; the running call holds the position at its first line.
    assert again.cel.bytes_read == grown - size
    assert set(again.cel.calls) == {linkedid_of(CALLS + 100)}
    assert await _position(database, log) == (log.stat().st_ino, running)

    # It ends while the engine is down; the next engine reads again from that call's first line, no earlier.
    with log.open("a", encoding="ascii") as handle:
        handle.writelines(list(call_lines(CALLS + 100))[9:])
    third = recorder_on(database, bus, log, now + 60)
    assert await third.reconcile() == 1
    assert third.cel.bytes_read == log.stat().st_size - running
    assert await _counts(database) == (CALLS + 101, CALLS + 101)
    await bus.drain()


async def test_a_pass_that_fails_midway_leaves_the_position_before_the_first_call_it_did_not_record(
    database: Database, tmp_path: Path
) -> None:
    log = tmp_path / "cel.jsonl"
    write_cel_log(log, range(1_200))
    now = end_of_call(1_199) + 600
    recorder = recorder_on(database, Bus(), log, now)
    statements = 0
    insert_new = recorder._insert_new

    def second_insert_fails() -> Any:
        nonlocal statements
        statements += 1
        if statements == 2:
            raise DatabaseError("the database refused the operation")
        return insert_new()

    recorder._insert_new = second_insert_fails  # type: ignore[method-assign]
    with pytest.raises(DatabaseError):
        await recorder.reconcile()
    written, _ = await _counts(database)
    assert 0 < written < 1_200
    # Everything up to the first call without a record is settled, nothing after it.
    first_missing = sum(len(line) for n in range(written) for line in call_lines(n))
    assert await _position(database, log) == (log.stat().st_ino, first_missing)

    restarted = recorder_on(database, Bus(), log, now)
    assert await restarted.reconcile() == 1_200 - written
    assert restarted.cel.bytes_read == log.stat().st_size - first_missing
    assert await _counts(database) == (1_200, 1_200)
