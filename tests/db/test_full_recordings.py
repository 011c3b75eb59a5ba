"""The full recordings the dialplan makes, indexed by the engine on SQLite and PostgreSQL: from the live UserEvent,
from a call's record once it is written (files nobody heard of included), and by the sweep of the day directories.

The files are real WAVs at the names the dialplan gives them (asterisk-conf/extensions.conf, cc-record).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from callcenter.auth.services import AuthService
from callcenter.config import RecordingsConfig
from callcenter.db import Database
from callcenter.model import Call, Channel, LiveModel
from calls.ports import CallFigures, FinishedCall
from recordings.full import FullRecordings, call_prefix, full_id, interface_of
from recordings.models import Status
from recordings.schemas import SearchQuery
from recordings.services import RecordingService
from recordings.storage import RecordingStore
from tests.db.test_recordings_service import Clock, write_wav

LINKEDID = "1796644601.0"
CALLER_LEG = "1796644601.0"
AGENT_LEG = "1796644601.3"
EXPERT_LEG = "1796644601.9"


class Seats:
    async def seated(self) -> Sequence[object]:
        return []

    async def user_at(self, interface: str) -> int | None:
        return {"PJSIP/1001": 7, "PJSIP/2001": 9}.get(interface)

    async def seat_of(self, user_id: int) -> str | None:
        return None

    async def person_at(self, interface: str) -> int | None:
        return await self.user_at(interface)

    async def phone_of(self, user_id: int) -> str | None:
        return None


class Records:
    def __init__(self) -> None:
        self.calls: dict[str, FinishedCall] = {}

    async def record(self, linkedid: str) -> FinishedCall | None:
        return self.calls.get(linkedid)

    async def started_between(
        self, start: datetime, end: datetime | None = None, *, direction: str | None = None
    ) -> Sequence[CallFigures]:
        return [
            CallFigures(call.linkedid, call.started_at, call.direction, call.outcome, call.segments)
            for call in self.calls.values()
            if call.started_at >= start and (end is None or call.started_at < end)
        ]


def finished(linkedid: str, started: datetime, *, expert_at: datetime | None = None) -> FinishedCall:
    stays = [
        {"queue": "general", "agent": "PJSIP/1001", "answered_at": (started + timedelta(seconds=5)).isoformat()},
    ]
    if expert_at is not None:
        stays.append({"queue": "expert", "agent": "PJSIP/2001", "answered_at": expert_at.isoformat()})
    return FinishedCall(
        linkedid=linkedid,
        direction="inbound",
        caller_number="+8613800138000",
        caller_name="",
        did="4000",
        started_at=started,
        ended_at=started + timedelta(seconds=60),
        outcome="answered",
        ivr_choice=None,
        wait_time=5.0,
        talk_time=50.0,
        agent="PJSIP/1001",
        expert="PJSIP/2001" if expert_at else None,
        handoff_notes=None,
        segments=json.dumps(stays),
    )


def _half(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()[:16]


def dialplan_file(root: Path, linkedid: str, uniqueid: str, day: datetime, *, modified: datetime) -> Path:
    """What cc-record makes: full/<UTC date>/rec-<MD5(linkedid)[:16]><MD5(uniqueid)[:16]>.wav."""
    name = (
        hashlib.md5(linkedid.encode(), usedforsecurity=False).hexdigest()[:16]
        + hashlib.md5(uniqueid.encode(), usedforsecurity=False).hexdigest()[:16]
    )
    path = write_wav(root / "full" / day.strftime("%Y/%m/%d") / f"rec-{name}.wav", [0.5] * 8)
    os.utime(path, (modified.timestamp(), modified.timestamp()))
    return path


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def recs(database: Database, service: AuthService, tmp_path: Path, clock: Clock) -> RecordingService:
    root = tmp_path / "recordings"
    root.mkdir()
    config = RecordingsConfig()
    return RecordingService(
        database, config, RecordingStore(root), transcode_dir=tmp_path / "transcode", auditor=service, clock=clock
    )


@pytest.fixture
def records() -> Records:
    return Records()


@pytest.fixture
def model() -> dict[str, LiveModel]:
    return {"now": LiveModel()}


@pytest.fixture
def full(recs: RecordingService, records: Records, model: dict[str, LiveModel], clock: Clock) -> FullRecordings:
    return FullRecordings(recs, Seats(), records, lambda: model["now"], clock=clock)


def live_call(linkedid: str, legs: dict[str, str]) -> LiveModel:
    channels = {uid: Channel(uniqueid=uid, name=name, linkedid=linkedid) for uid, name in legs.items()}
    call = Call(linkedid=linkedid, started=0.0, caller_number="5550100", did="4000", legs=tuple(legs), queue="general")
    return LiveModel(channels=channels, calls={linkedid: call})


def test_the_ids_are_the_dialplans_md5_halves() -> None:
    md5 = hashlib.md5
    expected = md5(b"1.0", usedforsecurity=False).hexdigest()[:16] + md5(b"1.5", usedforsecurity=False).hexdigest()[:16]
    assert full_id("1.0", "1.5") == f"rec-{expected}"
    assert full_id("1.0", "1.5").startswith(call_prefix("1.0"))
    assert full_id("1.0", "1.5") != full_id("1.0", "1.6")
    assert interface_of("PJSIP/1001-0000002a") == "PJSIP/1001"
    assert interface_of("PJSIP/pstn-trunk-00000001") == "PJSIP/pstn-trunk"
    assert interface_of("odd") == "odd"


async def test_the_live_event_writes_a_row_once_and_refuses_what_does_not_add_up(
    full: FullRecordings, recs: RecordingService, model: dict[str, LiveModel], clock: Clock
) -> None:
    model["now"] = live_call(LINKEDID, {CALLER_LEG: "PJSIP/pstn-00000001", AGENT_LEG: "PJSIP/1001-00000002"})
    recording_id = full_id(LINKEDID, AGENT_LEG)
    file = recs.store.root / "full" / clock.now.strftime("%Y/%m/%d") / f"{recording_id}.wav"
    headers = {
        "Id": recording_id,
        "Linkedid": LINKEDID,
        "Uniqueid": AGENT_LEG,
        "Channel": "PJSIP/1001-00000002",
        "Queue": "general",
        "File": str(file),
    }
    for bad in (
        {"Id": full_id(LINKEDID, EXPERT_LEG)},  # not the id of this channel
        {"File": str(recs.store.root / "on_demand" / clock.now.strftime("%Y/%m/%d") / f"{recording_id}.wav")},
        {"File": str(recs.store.root.parent / f"{recording_id}.wav")},
        {"Id": "rec-../../etc/passwd"},
        {"Linkedid": ""},
    ):
        assert await full.on_started({**headers, **bad}) is None
    adopted = await full.on_started(headers)
    assert adopted is not None
    assert (adopted.id, adopted.linkedid, adopted.channel) == (recording_id, LINKEDID, "PJSIP/1001-00000002")
    assert await full.on_started(headers) is not None  # the same event again: the same row
    (row,) = (await recs.index.search(SearchQuery(linkedid=LINKEDID))).items
    assert row.id == recording_id
    assert row.status == Status.RECORDING
    assert (row.agent_interface, row.agent_user_id, row.queue) == ("PJSIP/1001", 7, "general")
    assert (row.caller_number, row.did) == ("5550100", "4000")


async def test_a_finished_calls_files_are_indexed_with_the_stay_each_belongs_to(
    full: FullRecordings, recs: RecordingService, records: Records, clock: Clock
) -> None:
    started = clock.now - timedelta(minutes=2)
    expert_at = started + timedelta(seconds=30)
    records.calls[LINKEDID] = finished(LINKEDID, started, expert_at=expert_at)
    root = recs.store.root
    agent_file = dialplan_file(root, LINKEDID, AGENT_LEG, started, modified=started + timedelta(seconds=25))
    expert_file = dialplan_file(root, LINKEDID, EXPERT_LEG, started, modified=started + timedelta(seconds=60))
    other = dialplan_file(root, "1796644999.0", "1796644999.2", started, modified=started + timedelta(seconds=60))
    assert await full.index_call(LINKEDID) == 2
    rows = {row.id: row for row in (await recs.index.search(SearchQuery(linkedid=LINKEDID))).items}
    agent = rows[agent_file.stem]
    expert = rows[expert_file.stem]
    assert (agent.agent_interface, agent.agent_user_id, agent.queue) == ("PJSIP/1001", 7, "general")
    assert (expert.agent_interface, expert.agent_user_id, expert.queue) == ("PJSIP/2001", 9, "expert")
    for row in (agent, expert):
        assert row.status == Status.COMPLETE
        assert row.caller_number == "+8613800138000"
        assert row.did == "4000"
        assert row.duration == pytest.approx(4.0)
        assert len(row.sha256 or "") == 64
    # Another call's file is not this call's; a second pass writes nothing.
    assert other.stem not in rows
    assert await full.index_call(LINKEDID) == 0


async def test_a_row_left_recording_is_finished_when_the_calls_record_comes(
    full: FullRecordings, recs: RecordingService, records: Records, model: dict[str, LiveModel], clock: Clock
) -> None:
    model["now"] = live_call(LINKEDID, {CALLER_LEG: "PJSIP/pstn-00000001", AGENT_LEG: "PJSIP/1001-00000002"})
    file = dialplan_file(recs.store.root, LINKEDID, AGENT_LEG, clock.now, modified=clock.now)
    headers = {"Id": file.stem, "Linkedid": LINKEDID, "Uniqueid": AGENT_LEG, "Channel": "PJSIP/1001-00000002"}
    assert await full.on_started({**headers, "Queue": "general", "File": str(file)}) is not None
    records.calls[LINKEDID] = finished(LINKEDID, clock.now - timedelta(seconds=10))
    assert await full.index_call(LINKEDID) == 1
    row = await recs.index.info(file.stem)
    assert row.status == Status.COMPLETE
    assert row.size == file.stat().st_size


async def test_the_sweep_adopts_live_calls_files_indexes_recorded_ones_and_waits_an_hour_for_the_unclaimed(
    full: FullRecordings, recs: RecordingService, records: Records, model: dict[str, LiveModel], clock: Clock
) -> None:
    root = recs.store.root
    running = "1796644700.0"
    model["now"] = live_call(running, {running: "PJSIP/pstn-00000005", "1796644700.2": "PJSIP/1001-00000006"})
    live_file = dialplan_file(root, running, "1796644700.2", clock.now, modified=clock.now)
    records.calls[LINKEDID] = finished(LINKEDID, clock.now - timedelta(minutes=5))
    recorded_file = dialplan_file(root, LINKEDID, AGENT_LEG, clock.now, modified=clock.now - timedelta(minutes=4))
    young = dialplan_file(root, "1796644800.0", "1796644800.1", clock.now, modified=clock.now - timedelta(minutes=5))
    yesterday = clock.now - timedelta(days=1)
    old = dialplan_file(root, "1796600000.0", "1796600000.1", yesterday, modified=yesterday)

    adopted = await full.sweep()
    assert [(item.id, item.channel) for item in adopted] == [(live_file.stem, "PJSIP/1001-00000006")]
    statuses = await recs.index.statuses([live_file.stem, recorded_file.stem, young.stem, old.stem])
    assert statuses == {
        live_file.stem: Status.RECORDING,
        recorded_file.stem: Status.COMPLETE,
        old.stem: Status.COMPLETE,
    }
    assert (await recs.index.info(recorded_file.stem)).linkedid == LINKEDID
    orphan = await recs.index.info(old.stem)
    assert orphan.linkedid is None
    assert orphan.duration == pytest.approx(4.0)
    # Nothing new: a second sweep finds nothing to do; an hour later the young file is taken on its own.
    assert await full.sweep() == []
    clock.now += timedelta(hours=1)
    await full.sweep(days=2)
    assert (await recs.index.statuses([young.stem])) == {young.stem: Status.COMPLETE}


async def test_a_call_seen_whole_is_looked_for_by_its_legs_names_alone(
    full: FullRecordings, recs: RecordingService, records: Records, clock: Clock
) -> None:
    started = clock.now - timedelta(minutes=2)
    records.calls[LINKEDID] = finished(LINKEDID, started, expert_at=started + timedelta(seconds=30))
    root = recs.store.root
    agent_file = dialplan_file(root, LINKEDID, AGENT_LEG, started, modified=started + timedelta(seconds=25))
    expert_file = dialplan_file(root, LINKEDID, EXPERT_LEG, started, modified=started + timedelta(seconds=60))
    # Only the legs given are looked for: the caller's leg has no file, the expert's is not named.
    assert await full.index_call(LINKEDID, legs=(CALLER_LEG, AGENT_LEG)) == 1
    assert await recs.index.statuses([agent_file.stem, expert_file.stem]) == {agent_file.stem: Status.COMPLETE}
    # Listing the day directory finds the rest.
    assert await full.index_call(LINKEDID) == 1
    assert (await recs.index.info(expert_file.stem)).agent_interface == "PJSIP/2001"


async def test_before_the_calls_record_is_written_a_file_waits_and_a_row_left_recording_is_finished(
    full: FullRecordings, recs: RecordingService, records: Records, model: dict[str, LiveModel], clock: Clock
) -> None:
    model["now"] = live_call(LINKEDID, {CALLER_LEG: "PJSIP/pstn-00000001", AGENT_LEG: "PJSIP/1001-00000002"})
    started = dialplan_file(recs.store.root, LINKEDID, AGENT_LEG, clock.now, modified=clock.now)
    headers = {"Id": started.stem, "Linkedid": LINKEDID, "Uniqueid": AGENT_LEG, "Channel": "PJSIP/1001-00000002"}
    assert await full.on_started({**headers, "File": str(started)}) is not None
    unseen = dialplan_file(recs.store.root, LINKEDID, EXPERT_LEG, clock.now, modified=clock.now)
    # The record is still in the journal (the database was down): the row is finished, the unseen file waits.
    assert await full.index_call(LINKEDID) == 1
    assert await recs.index.statuses([started.stem, unseen.stem]) == {started.stem: Status.COMPLETE}
    records.calls[LINKEDID] = finished(LINKEDID, clock.now - timedelta(seconds=30), expert_at=clock.now)
    assert await full.index_call(LINKEDID) == 1
    assert (await recs.index.info(unseen.stem)).agent_interface == "PJSIP/2001"
