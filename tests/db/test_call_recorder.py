"""CallRecorder on SQLite and PostgreSQL: one record per call, snapshots of running calls, reconciliation from CEL."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from callcenter.bus import Bus
from callcenter.db import Database
from callcenter.events import CallEnded
from callcenter.model import Call, CallOutcome, LiveModel, QueueSegment
from calls.events import CallRecorded, ExpertOutcome, ExpertRequested
from calls.models import CallProgress, CallRecord
from calls.service import BACKFILL_GRACE_SECONDS, PROGRESS_GRACE_SECONDS, CallRecorder
from ivr_flows.events import IvrEnded
from recordings.events import RecordingStarted

QUEUE = "support"
EXPERT = "expert"
NOW = time.time()


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Live:
    model: LiveModel = field(default_factory=LiveModel)


@dataclass
class World:
    database: Database
    bus: Bus
    live: Live
    clock: Clock
    cel_log: Path
    recorders: list[CallRecorder] = field(default_factory=list)
    recorded: list[CallRecorded] = field(default_factory=list)

    async def recorder(self) -> CallRecorder:
        """A started recorder; a second one is what a restarted engine has: the database and nothing in memory."""
        recorder = CallRecorder(
            self.database,
            self.bus,
            lambda: self.live.model,
            cel_log=self.cel_log,
            expert_queue=EXPERT,
            reconcile_interval=3600,
            snapshot_interval=3600,
            clock=self.clock,
        )
        await recorder.start()
        self.recorders.append(recorder)
        return recorder

    async def stop(self, recorder: CallRecorder) -> None:
        self.recorders.remove(recorder)
        await recorder.close()

    async def records(self) -> list[CallRecord]:
        async with self.database.session() as session:
            return list((await session.scalars(select(CallRecord).order_by(CallRecord.id))).all())

    async def progress(self) -> dict[str, dict[str, Any]]:
        async with self.database.session() as session:
            rows = (await session.scalars(select(CallProgress))).all()
            return {row.linkedid: json.loads(row.snapshot) for row in rows}

    async def count(self) -> int:
        async with self.database.session() as session:
            return int(await session.scalar(select(func.count()).select_from(CallRecord)) or 0)

    def cel(self, *events: dict[str, Any], raw: bytes = b"") -> None:
        with self.cel_log.open("ab") as handle:
            for item in events:
                handle.write(json.dumps(item).encode() + b"\n")
            handle.write(raw)


@pytest.fixture
async def world(database: Database, tmp_path: Path) -> AsyncIterator[World]:
    bus = Bus()
    state = World(database, bus, Live(), Clock(), tmp_path / "cel.jsonl")
    bus.subscribe(CallRecorded, state.recorded.append)
    try:
        yield state
    finally:
        for recorder in list(state.recorders):
            await recorder.close()
        await bus.drain()


def a_call(linkedid: str = "1700000000.1", *, started: float = NOW - 120, **changes: Any) -> Call:
    values: dict[str, Any] = {
        "linkedid": linkedid,
        "started": started,
        "caller_number": "+8613800000000",
        "caller_name": "Wang Fang",
        "did": "4000",
        "legs": (linkedid,),
    }
    values.update(changes)
    return Call(**values)


def answered(call: Call, agent: str = "PJSIP/1001", *, ended: float | None = None) -> Call:
    segment = QueueSegment(QUEUE, call.started + 5, agent, answered_at=call.started + 9, wait_time=4.0, talk_time=50.0)
    return replace(
        call,
        queue=QUEUE,
        queued_at=call.started + 5,
        agent=agent,
        answered_at=call.started + 9,
        wait_time=4.0,
        talk_time=50.0,
        outcome=CallOutcome.ANSWERED,
        bridges=("b-1",),
        segments=(segment,),
        ended=ended,
    )


def ivr_ended(linkedid: str, *, choice: str | None, path: list[dict[str, Any]] | None = None) -> IvrEnded:
    """A caller who left the main flow for the support queue, as the flow engine publishes it."""
    return IvrEnded(
        uniqueid=linkedid,
        linkedid=linkedid,
        caller_number="+8613800000000",
        flow="main",
        outcome="queued",
        path=path or [],
        language="en",
        queue=QUEUE,
        priority=5,
        choice=choice,
        voicemails=[],
        started_at=NOW - 118,
        ended_at=NOW - 116,
        duration=2.0,
        error=None,
    )


def expert_requested(linkedid: str, notes: str, handoff_id: str = "ho-1") -> ExpertRequested:
    return ExpertRequested(
        linkedid=linkedid,
        handoff_id=handoff_id,
        from_user="agent1",
        from_interface="PJSIP/1001",
        notes=notes,
        requested_at=datetime.fromtimestamp(NOW - 30, UTC).isoformat(),
        voicemail_recording_id=None,
    )


def cel_event(kind: str, at: float, linkedid: str, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"EventType": kind, "EventTime": at, "UniqueID": linkedid, "LinkedID": linkedid}
    values.update(extra)
    return values


def cel_answered_call(linkedid: str, start: float, end: float, *, seat: str = "PJSIP/1001") -> list[dict[str, Any]]:
    """What cel_custom.conf writes for a caller queued in ``support`` and answered by ``seat``."""
    agent = linkedid + "9"
    return [
        cel_event("CHAN_START", start, linkedid, Num="555 <b>", Exten="4000", ChanName="PJSIP/pstn-00000001"),
        cel_event("APP_START", start + 2, linkedid, AppName="Queue", AppData=f"{QUEUE},tT,,,300"),
        cel_event("CHAN_START", start + 3, linkedid, UniqueID=agent, ChanName=f"{seat}-00000002"),
        cel_event("BRIDGE_ENTER", start + 6, linkedid, ChanName="PJSIP/pstn-00000001"),
        cel_event("BRIDGE_ENTER", start + 6, linkedid, UniqueID=agent, ChanName=f"{seat}-00000002"),
        cel_event("HANGUP", end - 0.5, linkedid),
        cel_event("LINKEDID_END", end, linkedid),
    ]


# -- the live path --------------------------------------------------------------------------------------------


async def test_call_ended_twice_writes_one_record_and_counts_the_duplicate(world: World) -> None:
    recorder = await world.recorder()
    ended = answered(a_call(), ended=NOW - 10)
    call = asdict(ended)
    world.bus.publish(CallEnded(call=ended))
    world.bus.publish(CallEnded(call=ended))  # both in flight at once
    await world.bus.drain()
    world.bus.publish(CallEnded(call=ended))  # and once more after the first was stored
    await world.bus.drain()
    (record,) = await world.records()
    assert (recorder.written, recorder.duplicates) == (1, 2)
    assert record.linkedid == "1700000000.1"
    assert (record.outcome, record.agent, record.source) == ("answered", "PJSIP/1001", "live")
    assert record.ended_at == datetime.fromtimestamp(NOW - 10, UTC)
    assert [(e.linkedid, e.source) for e in world.recorded] == [("1700000000.1", "live")]

    # A restarted engine (nothing in memory) does not write it again either.
    again = await world.recorder()
    assert await again.write(call, source="live") is False
    assert again.duplicates == 1
    assert await world.count() == 1


async def test_what_the_ivr_the_handoff_and_recordings_add_ends_up_in_the_record(world: World) -> None:
    recorder = await world.recorder()
    linkedid = "1700000000.7"
    hostile = "<script>x</script>'; DROP TABLE call_records; --\r\n"
    world.bus.publish(
        ivr_ended(linkedid, choice="3", path=[{"flow": "main", "node": "start", "step": "menu", "digits": "3"}])
    )
    world.bus.publish(expert_requested(linkedid, hostile))
    # The outcome says nothing of the notes (None): what the request said stays.
    world.bus.publish(ExpertOutcome(linkedid=linkedid, handoff_id="ho-1", outcome="answered"))
    world.bus.publish(RecordingStarted(id="rec-1", linkedid=linkedid, kind="full"))
    world.bus.publish(RecordingStarted(id="rec-1", linkedid=linkedid, kind="full"))
    world.bus.publish(RecordingStarted(id="rec-2", linkedid=linkedid, kind="on_demand"))
    await world.bus.drain()
    assert recorder.held() == 1
    world.bus.publish(CallEnded(call=answered(a_call(linkedid, caller_name=hostile), ended=NOW)))
    await world.bus.drain()
    # Written: nothing of the call stays in memory (a soak's memory stays flat).
    assert recorder.held() == 0
    (record,) = await world.records()
    assert (record.ivr_flow, record.ivr_outcome, record.ivr_choice) == ("main", "queued", "3")
    assert json.loads(record.ivr_path)[0]["digits"] == "3"
    assert record.handoff_notes == hostile
    assert record.caller_name == hostile
    assert json.loads(record.recording_ids) == ["rec-1", "rec-2"]
    assert record.direction == "inbound"


async def test_a_call_ended_that_is_no_call_of_the_center_is_ignored(world: World) -> None:
    # A CallEnded always carries a Call now (the type says so); what the recorder still leaves out is a
    # supervisor's listen/whisper/barge leg, which the spy audit keeps.
    recorder = await world.recorder()
    world.bus.publish(CallEnded(call=answered(a_call("ccspy-0123456789abcdef"), ended=NOW)))
    await world.bus.drain()
    assert await world.count() == 0
    assert recorder.written == 0


# -- snapshots ------------------------------------------------------------------------------------------------


async def test_snapshot_writes_running_calls_and_then_only_the_changed_ones(world: World) -> None:
    recorder = await world.recorder()
    first, second = a_call("1.1"), a_call("2.1", caller_number="777")
    world.live.model = LiveModel(calls={"1.1": first, "2.1": second})
    assert await recorder.snapshot() == 2
    saved = await world.progress()
    assert set(saved) == {"1.1", "2.1"}
    assert saved["2.1"]["call"]["caller_number"] == "777"
    assert saved["1.1"]["ivr"] is None

    assert await recorder.snapshot() == 0

    world.live.model = LiveModel(calls={"1.1": answered(first), "2.1": second})
    assert await recorder.snapshot() == 1
    saved = await world.progress()
    assert saved["1.1"]["call"]["agent"] == "PJSIP/1001"
    assert saved["1.1"]["call"]["segments"][0]["queue"] == QUEUE

    # What the IVR adds changes the snapshot too.
    world.bus.publish(ivr_ended("2.1", choice="1"))
    assert await recorder.snapshot() == 1
    assert (await world.progress())["2.1"]["ivr"]["choice"] == "1"


async def test_a_recorded_call_is_not_snapshotted_and_its_progress_row_goes(world: World) -> None:
    recorder = await world.recorder()
    call = answered(a_call("1.1"))
    world.live.model = LiveModel(calls={"1.1": call})
    await recorder.snapshot()
    assert set(await world.progress()) == {"1.1"}
    world.bus.publish(CallEnded(call=replace(call, ended=NOW)))
    await world.bus.drain()
    assert await world.progress() == {}
    # The live model may still list it for a moment: no snapshot comes back.
    assert await recorder.snapshot() == 0
    assert await world.progress() == {}


# -- reconciliation -------------------------------------------------------------------------------------------


async def test_reconcile_closes_a_snapshot_whose_call_is_gone_with_the_cel_end(world: World) -> None:
    before = await world.recorder()
    call = answered(a_call("5.1"))
    world.live.model = LiveModel(calls={"5.1": call})
    world.bus.publish(ivr_ended("5.1", choice="2"))
    world.bus.publish(expert_requested("5.1", "see ticket 42"))
    assert await before.snapshot() == 1
    await world.stop(before)

    # The engine restarts; meanwhile the call ended and Asterisk logged it.
    end = NOW - 3
    world.cel(*cel_answered_call("5.1", call.started, end))
    world.live.model = LiveModel()
    after = await world.recorder()

    # Too fresh a snapshot is left alone: the live model may not have seen the call yet.
    world.clock.now = NOW + 1
    assert await after.reconcile() == 0
    assert set(await world.progress()) == {"5.1"}

    world.clock.now = NOW + PROGRESS_GRACE_SECONDS + 1
    assert await after.reconcile() == 1
    (record,) = await world.records()
    assert record.source == "reconciled"
    assert record.ended_at == datetime.fromtimestamp(end, UTC)
    assert (record.outcome, record.agent) == ("answered", "PJSIP/1001")
    # What the IVR and the handoff had added came back from the snapshot.
    assert (record.ivr_choice, record.handoff_notes) == ("2", "see ticket 42")
    assert await world.progress() == {}
    assert [(e.linkedid, e.source) for e in world.recorded] == [("5.1", "reconciled")]
    # Nothing more to do, and the CEL lines of that call make no second record.
    world.clock.now += BACKFILL_GRACE_SECONDS * 2
    assert await after.reconcile() == 0
    assert await world.count() == 1


async def test_reconcile_leaves_a_snapshot_whose_call_is_still_live(world: World) -> None:
    recorder = await world.recorder()
    world.live.model = LiveModel(calls={"6.1": a_call("6.1")})
    await recorder.snapshot()
    world.clock.now = time.time() + 3600
    assert await recorder.reconcile() == 0
    assert set(await world.progress()) == {"6.1"}
    assert await world.count() == 0


async def test_a_snapshot_asterisk_has_no_end_for_is_closed_at_the_last_sight(world: World) -> None:
    before = await world.recorder()
    world.live.model = LiveModel(calls={"7.1": a_call("7.1")})
    await before.snapshot()
    await world.stop(before)
    world.live.model = LiveModel()
    after = await world.recorder()
    world.clock.now = time.time() + 60
    assert await after.reconcile() == 1
    (record,) = await world.records()
    assert record.source == "reconciled"
    # No CEL at all: the call ended some time after the last snapshot was written, never before it.
    assert NOW - 1 <= record.ended_at.timestamp() <= time.time() + 1
    assert record.started_at == datetime.fromtimestamp(NOW - 120, UTC)


async def test_a_caller_snapshotted_in_the_queue_and_answered_unobserved_is_answered(world: World) -> None:
    before = await world.recorder()
    waiting = replace(a_call("8.1"), queue=QUEUE, queued_at=NOW - 115, segments=(QueueSegment(QUEUE, NOW - 115),))
    world.live.model = LiveModel(calls={"8.1": waiting})
    await before.snapshot()
    await world.stop(before)
    world.cel(*cel_answered_call("8.1", waiting.started, NOW - 2, seat="PJSIP/1002"))
    world.live.model = LiveModel()
    after = await world.recorder()
    world.clock.now = time.time() + 60
    assert await after.reconcile() == 1
    (record,) = await world.records()
    assert record.agent == "PJSIP/1002"
    assert record.outcome == "answered"


async def test_a_call_only_cel_knows_gets_a_cel_record_after_the_grace(world: World) -> None:
    recorder = await world.recorder()
    end = NOW - 1
    world.cel(*cel_answered_call("9.1", NOW - 60, end, seat="PJSIP/1003"))
    world.cel(
        cel_event("CHAN_START", NOW - 50, "9.2", Num="666", Exten="s", ChanName="PJSIP/pstn-00000003"),
        cel_event("APP_START", NOW - 49, "9.2", AppName="Queue", AppData=f"{QUEUE},t"),
        cel_event("HANGUP", end, "9.2"),
        cel_event("LINKEDID_END", end, "9.2"),
    )
    world.clock.now = end + BACKFILL_GRACE_SECONDS - 5
    assert await recorder.reconcile() == 0  # the live path may still write them
    world.clock.now = end + BACKFILL_GRACE_SECONDS + 1
    assert await recorder.reconcile() == 2
    answered_record, abandoned_record = sorted(await world.records(), key=lambda row: row.linkedid)
    assert answered_record.linkedid == "9.1"
    assert answered_record.source == "cel"
    assert answered_record.caller_number == "555 <b>"
    assert answered_record.did == "4000"
    assert json.loads(answered_record.queues) == [QUEUE]
    assert (answered_record.agent, answered_record.outcome) == ("PJSIP/1003", "answered")
    assert answered_record.started_at == datetime.fromtimestamp(NOW - 60, UTC)
    assert answered_record.ended_at == datetime.fromtimestamp(end, UTC)
    assert (abandoned_record.caller_number, abandoned_record.did) == ("666", "")
    assert (abandoned_record.agent, abandoned_record.outcome) == (None, "abandoned")
    assert await recorder.reconcile() == 0
    assert await world.count() == 2


async def test_a_call_cel_shows_still_running_or_live_is_not_backfilled(world: World) -> None:
    recorder = await world.recorder()
    # No LINKEDID_END yet.
    world.cel(cel_event("CHAN_START", NOW - 500, "10.1", Num="1"), cel_event("HANGUP", NOW - 400, "10.1"))
    # Ended per CEL, but the live model still has it (its last event has not reached us).
    world.cel(*cel_answered_call("10.2", NOW - 500, NOW - 400))
    world.live.model = LiveModel(calls={"10.2": a_call("10.2")})
    world.clock.now = NOW + 3600
    assert await recorder.reconcile() == 0
    assert await world.count() == 0


async def test_junk_in_the_cel_log_is_skipped(world: World) -> None:
    recorder = await world.recorder()
    world.cel(raw=b"{not json\n\x00\xff garbage\n")
    world.cel(*cel_answered_call("11.1", NOW - 90, NOW - 60))
    world.cel(raw=b'{"EventType": "HANG')  # a line Asterisk is still writing
    world.clock.now = NOW + 60
    assert await recorder.reconcile() == 1
    assert recorder.cel.skipped == 2
    (record,) = await world.records()
    assert (record.linkedid, record.source) == ("11.1", "cel")


async def test_cel_lines_of_a_call_recorded_live_make_no_second_record(world: World) -> None:
    recorder = await world.recorder()
    world.bus.publish(CallEnded(call=answered(a_call("12.1", started=NOW - 90), ended=NOW - 60)))
    await world.bus.drain()
    world.cel(*cel_answered_call("12.1", NOW - 90, NOW - 60))
    world.clock.now = NOW + 600
    assert await recorder.reconcile() == 0
    # A restarted engine, reading the whole log again, finds the record in the database.
    again = await world.recorder()
    assert await again.reconcile() == 0
    assert await world.count() == 1
    assert "12.1" not in again.cel.calls


async def test_the_cel_events_of_a_call_recorded_live_are_not_kept_forever(world: World) -> None:
    recorder = await world.recorder()
    world.bus.publish(CallEnded(call=answered(a_call("13.1", started=NOW - 90), ended=NOW - 60)))
    await world.bus.drain()
    world.cel(*cel_answered_call("13.1", NOW - 90, NOW - 60))
    world.clock.now = NOW + 600
    await recorder.reconcile()
    await recorder.reconcile()
    assert "13.1" not in recorder.cel.calls


async def test_close_snapshots_what_is_running_for_the_next_start(world: World) -> None:
    recorder = await world.recorder()
    world.live.model = LiveModel(calls={"14.1": a_call("14.1")})
    await world.stop(recorder)
    assert set(await world.progress()) == {"14.1"}


async def test_a_record_the_database_refuses_is_reported_and_stops_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = await world.recorder()
    build = recorder._values

    def without_direction(call: Any, **options: Any) -> dict[str, Any]:
        # A value the table refuses (NOT NULL): a bug, not a second record of the call.
        return {**build(call, **options), "direction": None}

    monkeypatch.setattr(recorder, "_values", without_direction)
    assert await recorder.write(asdict(answered(a_call(), ended=NOW)), source="live") is False
    assert "the database refused its record" in caplog.text
    assert (recorder.written, recorder.duplicates) == (0, 0)
    monkeypatch.setattr(recorder, "_values", build)
    # The next call is written as usual.
    assert await recorder.write(asdict(answered(a_call("1700000000.9"), ended=NOW)), source="live") is True
    assert await world.count() == 1
