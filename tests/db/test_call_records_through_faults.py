"""Call records right after a fault (issue 15, items 2 and 3), on SQLite and PostgreSQL: an engine killed mid-call
and restarted follows its running calls to their real end with the history its last snapshot kept; a database that
is down keeps records and snapshots in the journal, written once, in order, when it is back; no callback task is
filed for a caller who was served."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from callcenter.bus import Bus
from callcenter.db import Database
from callcenter.events import CallEnded
from callcenter.model import Call, CallOutcome, LiveModel, QueueSegment
from calls.events import CallRecorded
from calls.models import CallProgress, CallRecord
from calls.service import JOURNAL_NAME, CallRecorder
from crm_bridge.models import RecordType
from tests.db import test_crm_outbox
from tests.db.test_call_recorder import NOW, QUEUE, Clock, Live, a_call, answered, cel_answered_call, ivr_ended
from tests.db.test_call_service_records import Records, add_call, make_records

switchable = test_crm_outbox.switchable
SEAT = "PJSIP/1001"


def kill(recorder: CallRecorder) -> None:
    """What ``kill -9`` leaves of a recorder: nothing more is written (no final snapshot, no close)."""
    for unsubscribe in recorder._unsubscribe:
        unsubscribe()
    for task in recorder._tasks:
        task.cancel()


def adopted(call: Call, *, ended: float) -> Call:
    """The call as a restarted engine's live model ends it: adopted from CoreShowChannels (the seat on it, no queue,
    no DID, started when the listing says), then the hangups."""
    return Call(
        call.linkedid,
        call.started + 1,
        caller_number=call.caller_number,
        legs=call.legs,
        bridges=("b-1",),
        agent=SEAT,
        outcome=CallOutcome.ANSWERED,
        ended=ended,
    )


class Rig:
    def __init__(self, database: Database, tmp_path: Path) -> None:
        self.database = database
        self.bus = Bus()
        self.live = Live()
        self.clock = Clock()
        self.cel_log = tmp_path / "cel.jsonl"
        self.data = tmp_path / "data"
        self.recorded: list[CallRecorded] = []
        self.bus.subscribe(CallRecorded, self.recorded.append)
        self.recorders: list[CallRecorder] = []

    async def recorder(self, *, start: bool = True) -> CallRecorder:
        recorder = CallRecorder(
            self.database,
            self.bus,
            lambda: self.live.model,
            cel_log=self.cel_log,
            expert_queue="expert",
            journal_dir=self.data,
            reconcile_interval=3600,
            snapshot_interval=3600,
            clock=self.clock,
        )
        if start:
            await recorder.start()
        self.recorders.append(recorder)
        return recorder

    async def ended(self, call: Call) -> None:
        self.bus.publish(CallEnded(call))
        await self.bus.drain()

    async def records(self) -> list[CallRecord]:
        async with self.database.session() as session:
            return list((await session.scalars(select(CallRecord).order_by(CallRecord.id))).all())

    def cel(self, events: list[dict[str, object]]) -> None:
        with self.cel_log.open("a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(item) + "\n" for item in events)

    async def close(self) -> None:
        for recorder in self.recorders:
            with contextlib.suppress(Exception):
                await recorder.close()
        await self.bus.drain()


@pytest.fixture
async def rig(database: Database, tmp_path: Path) -> AsyncIterator[Rig]:
    made = Rig(database, tmp_path)
    yield made
    await made.close()


# -- an engine killed mid-call ----------------------------------------------------------------------------------


async def test_a_call_answered_before_a_kill_and_ended_after_the_restart_is_one_answered_record(rig: Rig) -> None:
    call = answered(a_call(started=NOW - 60))
    call = replace(call, talk_time=None, segments=(replace(call.segments[0], talk_time=None),))
    rig.live.model = LiveModel(calls={call.linkedid: call})
    first = await rig.recorder()
    rig.bus.publish(ivr_ended(call.linkedid, choice="repair"))
    assert await first.snapshot() == 1
    kill(first)
    # The restarted engine adopts the call from Asterisk's listings and sees only its end.
    second = await rig.recorder()
    ending = adopted(call, ended=NOW)
    rig.live.model = LiveModel(calls={call.linkedid: replace(ending, ended=None)})
    assert await second.snapshot() == 1
    await rig.ended(ending)
    (record,) = await rig.records()
    assert record.outcome == "answered"
    assert record.agent == SEAT
    assert record.did == "4000"
    assert record.ivr_choice == "repair"
    assert record.started_at.timestamp() == pytest.approx(call.started)
    assert record.wait_time == 4.0
    # Answered at started + 9, ended at NOW = started + 60.
    assert record.talk_time == pytest.approx(51.0)
    assert json.loads(record.queues) == [QUEUE]
    async with rig.database.session() as session:
        assert await session.scalar(select(func.count()).select_from(CallProgress)) == 0
    assert [event.outcome for event in rig.recorded] == ["answered"]


async def test_a_restart_keeps_the_saved_history_in_the_new_snapshots_for_a_second_crash(rig: Rig) -> None:
    call = answered(a_call(started=NOW - 60))
    rig.live.model = LiveModel(calls={call.linkedid: call})
    first = await rig.recorder()
    await first.snapshot()
    kill(first)
    second = await rig.recorder()
    rig.live.model = LiveModel(calls={call.linkedid: replace(adopted(call, ended=NOW), ended=None)})
    await second.snapshot()
    kill(second)
    async with rig.database.session() as session:
        (row,) = (await session.scalars(select(CallProgress))).all()
    saved = json.loads(row.snapshot)["call"]
    assert (saved["did"], saved["queue"], saved["answered_at"]) == ("4000", QUEUE, call.answered_at)
    third = await rig.recorder()
    await rig.ended(adopted(call, ended=NOW))
    (record,) = await rig.records()
    assert (record.outcome, record.agent, record.wait_time) == ("answered", SEAT, 4.0)
    assert third.written == 1


async def test_a_caller_answered_while_the_engine_was_down_takes_the_answer_from_cel(rig: Rig) -> None:
    waiting = a_call(started=NOW - 60, queue=QUEUE, queued_at=NOW - 58, segments=(QueueSegment(QUEUE, NOW - 58),))
    rig.live.model = LiveModel(calls={waiting.linkedid: waiting})
    first = await rig.recorder()
    await first.snapshot()
    kill(first)
    # Answered at start + 6 (BRIDGE_ENTER) while nobody watched; the restarted model has no segment for it.
    rig.cel(cel_answered_call(waiting.linkedid, NOW - 60, NOW))
    await rig.recorder()
    await rig.ended(adopted(waiting, ended=NOW))
    (record,) = await rig.records()
    assert (record.outcome, record.agent) == ("answered", SEAT)
    assert record.wait_time == pytest.approx(4.0)
    assert record.talk_time == pytest.approx(54.0)


async def test_a_call_the_dead_engine_never_snapshotted_is_answered_from_cel(rig: Rig) -> None:
    call = a_call(started=NOW - 60)
    rig.cel(cel_answered_call(call.linkedid, NOW - 60, NOW))
    await rig.recorder()
    await rig.ended(adopted(call, ended=NOW))
    (record,) = await rig.records()
    assert (record.outcome, record.agent) == ("answered", SEAT)
    assert json.loads(record.queues) == [QUEUE]
    assert record.talk_time == pytest.approx(54.0)


async def test_a_served_caller_whose_record_says_abandoned_gets_no_callback_task(
    database: Database, tmp_path: Path
) -> None:
    records: Records = make_records(database, tmp_path / "outbox")
    try:
        await add_call(database, "served.1", "13800138000", outcome="answered")
        async with database.session() as session:
            row = await session.scalar(select(CallRecord).where(CallRecord.linkedid == "served.1"))
            assert row is not None
            row.outcome = "abandoned"  # what the engine wrote before issue 15: agent and talk time, "abandoned"
        await records.recorded("served.1")
        assert await records.of_call("served.1") == []
        await add_call(database, "gone.1", "13800138001")
        await records.recorded("gone.1")
        [task] = await records.of_call("gone.1")
        assert task.type == RecordType.CALLBACK_VISIT
    finally:
        records.service.close()
        await records.outbox.close()


# -- the database down ------------------------------------------------------------------------------------------


async def _recorder_on(
    switched: test_crm_outbox.Switchable, tmp_path: Path, live: Live, bus: Bus, clock: Clock
) -> CallRecorder:
    recorder = CallRecorder(
        switched.database,
        bus,
        lambda: live.model,
        cel_log=tmp_path / "cel.jsonl",
        expert_queue="expert",
        journal_dir=tmp_path / "data",
        reconcile_interval=3600,
        snapshot_interval=3600,
        clock=clock,
    )
    await recorder.start()
    return recorder


async def _count(database: Database) -> list[CallRecord]:
    async with database.session() as session:
        return list((await session.scalars(select(CallRecord))).all())


async def test_a_call_ending_while_the_database_is_down_is_journaled_and_written_once_when_it_is_back(
    switchable: test_crm_outbox.Switchable, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bus, live, clock = Bus(), Live(), Clock()
    recorded: list[CallRecorded] = []
    bus.subscribe(CallRecorded, recorded.append)
    # The caller is in the IVR when the last snapshot before the outage is taken.
    in_ivr = a_call(started=NOW - 60)
    live.model = LiveModel(calls={in_ivr.linkedid: in_ivr})
    recorder = await _recorder_on(switchable, tmp_path, live, bus, clock)
    try:
        await recorder.snapshot()
        await switchable.down()
        caplog.set_level(logging.INFO)
        # Queued, answered and over during the outage; a second call too, and the snapshots go on.
        call = answered(in_ivr, ended=NOW)
        other = answered(a_call("1700000000.7", started=NOW - 50), "PJSIP/1002", ended=NOW)
        live.model = LiveModel(calls={call.linkedid: replace(call, ended=None)})
        assert await recorder.snapshot() == 1
        for ended in (call, other):
            bus.publish(CallEnded(ended))
        await bus.drain()
        assert recorded == []
        assert recorder.journal is not None
        assert recorder.journal.pending == 2
        lines = (tmp_path / "data" / JOURNAL_NAME).read_text().splitlines()
        keys = [json.loads(line)["key"] for line in lines if json.loads(line)["op"] == "put"]
        # The snapshot first; the two records in the order their writes met the outage (they run side by side).
        assert keys[0] == f"progress:{call.linkedid}"
        assert sorted(keys[1:]) == sorted([f"record:{call.linkedid}", "record:1700000000.7"])
        live.model = LiveModel()
        assert await recorder.reconcile() == 0  # still down: nothing, and no traceback
        await switchable.up()
        clock.now = NOW + 60
        await recorder.reconcile()
        await bus.drain()
        rows = {row.linkedid: row for row in await _count(switchable.database)}
        assert set(rows) == {call.linkedid, other.linkedid}
        assert (rows[call.linkedid].outcome, rows[call.linkedid].agent) == ("answered", SEAT)
        assert (rows[other.linkedid].outcome, rows[other.linkedid].agent) == ("answered", "PJSIP/1002")
        assert sorted(event.linkedid for event in recorded) == sorted([call.linkedid, other.linkedid])
        assert recorder.journal.pending == 0
        assert await recorder.replay() is True
        await recorder.reconcile()
        assert len(await _count(switchable.database)) == 2
        async with switchable.database.session() as session:
            assert await session.scalar(select(func.count()).select_from(CallProgress)) == 0
        assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
        assert len([r for r in caplog.records if "database unavailable" in r.getMessage()]) == 1
        assert len([r for r in caplog.records if "database back" in r.getMessage()]) == 1
    finally:
        await recorder.close()
        await bus.drain()


async def test_records_journaled_by_an_engine_that_died_are_written_by_the_next_one(
    switchable: test_crm_outbox.Switchable, tmp_path: Path
) -> None:
    bus, live, clock = Bus(), Live(), Clock()
    first = await _recorder_on(switchable, tmp_path, live, bus, clock)
    await switchable.down()
    call = answered(a_call(started=NOW - 60), ended=NOW)
    bus.publish(CallEnded(call))
    await bus.drain()
    kill(first)
    # Started while the database is still down: it starts, and writes the journal once the database is back.
    second = await _recorder_on(switchable, tmp_path, live, bus, clock)
    try:
        assert second.journal is not None
        assert second.journal.pending == 1
        await switchable.up()
        for _ in range(100):
            if await _count(switchable.database):
                break
            await asyncio.sleep(0.1)
        (row,) = await _count(switchable.database)
        assert (row.outcome, row.agent) == ("answered", SEAT)
        assert await second.replay() is True
        assert len(await _count(switchable.database)) == 1
    finally:
        await second.close()
        await bus.drain()


async def test_a_snapshot_taken_in_the_ivr_is_closed_with_the_queue_and_seat_cel_shows(rig: Rig) -> None:
    # The record the live path made was lost (before issue 15 the database was down when the call ended, or the
    # engine died): the last snapshot is from the IVR, with no queue. That once made a "failed" record, no agent.
    answered_call = a_call("9.1", started=NOW - 120)
    abandoned_call = a_call("9.2", started=NOW - 120)
    rig.live.model = LiveModel(calls={"9.1": answered_call, "9.2": abandoned_call})
    first = await rig.recorder()
    rig.bus.publish(ivr_ended("9.1", choice="repair"))
    rig.bus.publish(ivr_ended("9.2", choice="repair"))
    await first.snapshot()
    kill(first)
    rig.cel(cel_answered_call("9.1", NOW - 120, NOW - 60))
    gone = [item for item in cel_answered_call("9.2", NOW - 120, NOW - 60) if item["EventType"] != "BRIDGE_ENTER"]
    rig.cel(gone)
    rig.live.model = LiveModel()
    second = await rig.recorder()
    rig.clock.now = NOW + 60
    assert await second.reconcile() == 2
    records = {record.linkedid: record for record in await rig.records()}
    assert (records["9.1"].outcome, records["9.1"].agent, records["9.1"].source) == ("answered", SEAT, "reconciled")
    assert records["9.1"].wait_time == pytest.approx(4.0)
    assert records["9.1"].talk_time == pytest.approx(54.0)
    assert (records["9.2"].outcome, records["9.2"].agent) == ("abandoned", None)
    assert records["9.2"].wait_time == pytest.approx(58.0)


async def test_a_call_only_cel_knows_gets_its_wait_and_talk_from_the_log(rig: Rig) -> None:
    rig.cel(cel_answered_call("9.3", NOW - 120, NOW - 60))
    recorder = await rig.recorder()
    rig.clock.now = NOW + 60
    assert await recorder.reconcile() == 1
    (record,) = await rig.records()
    assert (record.outcome, record.agent, record.source) == ("answered", SEAT, "cel")
    assert record.wait_time == pytest.approx(4.0)
    assert record.talk_time == pytest.approx(54.0)


async def test_an_expert_handoff_and_its_voicemail_while_the_database_is_down_are_kept_and_written_later(
    switchable: test_crm_outbox.Switchable, tmp_path: Path
) -> None:
    from argon2 import PasswordHasher

    from callcenter.auth.permissions import Role
    from callcenter.auth.services import AuthService
    from callcenter.config import AuthConfig, Config, PathsConfig
    from callcenter.events import AsteriskUserEvent
    from calls.events import ExpertOutcome, ExpertRequested
    from calls.handoff import USER_EVENT, HandoffService
    from calls.models import ExpertHandoff
    from seats.reads import SeatReads
    from tests.db.test_handoff import LINKEDID, FakeAmi, model_with_a_call

    database = switchable.database
    auth = AuthService(
        database, AuthConfig(), password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    await auth.create_user("ann", "correct horse battery", roles=[Role.AGENT], extension="1001")
    _, ann = await auth.login("ann", "correct horse battery")
    config = Config(paths=PathsConfig(data_dir=tmp_path, recordings_dir=tmp_path / "recordings"))
    bus, live, clock = Bus(), Live(model_with_a_call(config)), Clock()
    published: list[object] = []
    bus.subscribe_all(published.append)
    recorder = await _recorder_on(switchable, tmp_path, live, bus, clock)
    # Who sits where was read before the outage (the seats' notices read it at every change of a seat's state).
    seats = SeatReads(database)
    assert await seats.phone_of(ann.user_id) == "PJSIP/1001"
    handoffs = HandoffService(
        database,
        bus,
        auth,
        config,
        lambda: FakeAmi(),  # type: ignore[arg-type, return-value]
        lambda: live.model,
        seats=seats,
        keep=recorder.keep,
    )
    handoffs.start()
    try:
        await switchable.down()
        made = await handoffs.transfer_to_expert(ann, LINKEDID, "needs the firmware expert", remote=None)
        handoff_id = made["handoff_id"]
        bus.publish(AsteriskUserEvent(USER_EVENT, {"Handoff": handoff_id, "Outcome": "voicemail", "Callerid": "555"}))
        await bus.drain()
        requested = [event for event in published if isinstance(event, ExpertRequested)]
        outcomes = [event for event in published if isinstance(event, ExpertOutcome)]
        assert [event.handoff_id for event in requested] == [handoff_id]
        assert [(event.outcome, event.notes, event.from_user) for event in outcomes] == [
            ("voicemail", "needs the firmware expert", "ann")
        ]
        await switchable.up()
        assert await recorder.replay() is True
        async with database.session() as session:
            row = await session.get(ExpertHandoff, handoff_id)
        assert row is not None
        assert (row.linkedid, row.outcome, row.notes) == (LINKEDID, "voicemail", "needs the firmware expert")
    finally:
        handoffs.close()
        await recorder.close()
        await bus.drain()


async def test_a_call_answered_before_a_kill_and_over_before_the_restart_talks_until_cels_end(rig: Rig) -> None:
    call = answered(a_call("9.4", started=NOW - 120))
    call = replace(call, talk_time=None, segments=(replace(call.segments[0], talk_time=None),))
    rig.live.model = LiveModel(calls={"9.4": call})
    first = await rig.recorder()
    await first.snapshot()
    kill(first)
    rig.cel(cel_answered_call("9.4", NOW - 120, NOW - 60))
    rig.live.model = LiveModel()
    second = await rig.recorder()
    rig.clock.now = NOW + 60
    assert await second.reconcile() == 1
    (record,) = await rig.records()
    assert (record.outcome, record.agent, record.source) == ("answered", SEAT, "reconciled")
    # Answered at started + 9 (the snapshot), over at started + 60 (LINKEDID_END).
    assert record.talk_time == pytest.approx(51.0)
    assert record.wait_time == 4.0


# -- calls that ended while the AMI was cut -------------------------------------------------------------------


async def test_a_call_that_ended_during_an_ami_cut_ends_when_asterisk_logged_it_not_when_the_engine_found_out(
    rig: Rig,
) -> None:
    # Answered at start + 9 (the engine saw it), over at NOW - 30 during the cut; the resync at NOW finds it gone.
    call = answered(a_call(started=NOW - 60))
    call = replace(call, talk_time=None, segments=(replace(call.segments[0], talk_time=None),))
    rig.cel(cel_answered_call(call.linkedid, NOW - 60, NOW - 30))
    await rig.recorder()
    rig.bus.publish(CallEnded(replace(call, ended=NOW), unobserved=True))
    await rig.bus.drain()
    (record,) = await rig.records()
    assert (record.outcome, record.agent, record.source) == ("answered", SEAT, "reconciled")
    assert record.ended_at.timestamp() == pytest.approx(NOW - 30)
    assert record.talk_time == pytest.approx(21.0)


async def test_a_caller_queued_before_an_ami_cut_and_answered_during_it_is_answered_and_gets_no_callback(
    rig: Rig,
) -> None:
    waiting = a_call(started=NOW - 60, queue=QUEUE, queued_at=NOW - 58, segments=(QueueSegment(QUEUE, NOW - 58),))
    rig.cel(cel_answered_call(waiting.linkedid, NOW - 60, NOW - 20))
    await rig.recorder()
    rig.bus.publish(CallEnded(replace(waiting, ended=NOW), unobserved=True))
    await rig.bus.drain()
    (record,) = await rig.records()
    assert (record.outcome, record.agent) == ("answered", SEAT)
    assert record.wait_time == pytest.approx(4.0)  # queued at start + 2 (CEL's Queue), answered at start + 6
    assert record.talk_time == pytest.approx(34.0)
    assert record.ended_at.timestamp() == pytest.approx(NOW - 20)


async def test_a_call_gone_at_a_resync_with_no_end_in_the_log_yet_is_closed_by_the_reconciler_once_it_is(
    rig: Rig,
) -> None:
    call = answered(a_call(started=NOW - 60))
    call = replace(call, talk_time=None, segments=(replace(call.segments[0], talk_time=None),))
    recorder = await rig.recorder()
    rig.bus.publish(CallEnded(replace(call, ended=NOW), unobserved=True))
    await rig.bus.drain()
    assert await rig.records() == []
    async with rig.database.session() as session:
        assert await session.scalar(select(func.count()).select_from(CallProgress)) == 1
    # Asterisk's log catches up; the next pass closes the call with the end it logged.
    rig.cel(cel_answered_call(call.linkedid, NOW - 60, NOW - 10))
    rig.clock.now = NOW + 30
    assert await recorder.reconcile() == 1
    (record,) = await rig.records()
    assert (record.outcome, record.agent, record.source) == ("answered", SEAT, "reconciled")
    assert record.ended_at.timestamp() == pytest.approx(NOW - 10)
    assert record.talk_time == pytest.approx(41.0)
