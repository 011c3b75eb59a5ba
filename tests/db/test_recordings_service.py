"""The recordings index on SQLite and PostgreSQL: lifecycle, search, playback checks, retention, erasure, check.

Every file is a real WAV written by the test with the ``wave`` module.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import struct
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from blockbuster import blockbuster_ctx
from sqlalchemy import Connection, inspect, select, text

from callcenter.auth.permissions import Role, permissions_for
from callcenter.auth.services import AuthService, Principal
from callcenter.config import RecordingsConfig
from callcenter.db import Base, Database, include_name
from recordings import search as search_module
from recordings.access import may_access
from recordings.exceptions import (
    InvalidFilter,
    RecordingErased,
    RecordingFileMissing,
    RecordingForbidden,
    RecordingNotReady,
    RecordingStateConflict,
    RecordingTampered,
    UnsafePath,
)
from recordings.infos import CallFacts
from recordings.models import RecordingErasure
from recordings.schemas import SearchQuery
from recordings.services import RecordingService
from recordings.storage import RecordingStore

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
RATE = 8000
TABLES = {"recordings", "recording_erasures"}
HOSTILE = "'; DROP TABLE recordings; -- %_\\ \u202e\u0000".replace("\u0000", "")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def write_wav(path: Path, levels: list[float], seconds_each: float = 0.5) -> Path:
    """A mono 16-bit 8 kHz WAV of 440 Hz segments, one per level (0 = silence)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = bytearray()
    for level in levels:
        for n in range(int(seconds_each * RATE)):
            frames += struct.pack("<h", int(level * 32767 * math.sin(2 * math.pi * 440 * n / RATE)))
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(RATE)
        writer.writeframes(bytes(frames))
    return path


def who(role: Role, user_id: int = 1, username: str = "someone", extension: str | None = None) -> Principal:
    return Principal(
        user_id=user_id,
        username=username,
        display_name=username,
        roles=frozenset({role}),
        permissions=permissions_for([role]),
        teams=(),
        extension=extension,
        expires_at=T0 + timedelta(days=1),
    )


QA = who(Role.QA, 50, "quinn")
AGENT_1001 = who(Role.AGENT, 11, "alice", "1001")
AGENT_1002 = who(Role.AGENT, 12, "bob", "1002")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def recordings_config() -> RecordingsConfig:
    return RecordingsConfig(retention_full_days=30, retention_on_demand_days=0, retention_voicemail_days=10)


@pytest.fixture
async def recs(
    database: Database, service: AuthService, tmp_path: Path, clock: Clock, recordings_config: RecordingsConfig
) -> RecordingService:
    root = tmp_path / "recordings"
    root.mkdir()
    return RecordingService(
        database,
        recordings_config,
        RecordingStore(root),
        transcode_dir=tmp_path / "data" / "transcode",
        auditor=service,
        clock=clock,
    )


async def actions(service: AuthService, **filters: Any) -> list[tuple[str, str | None, str | None]]:
    items, _ = await service.list_audit(limit=500, **filters)
    return [(item.action, item.actor, item.target) for item in reversed(items)]


async def recorded(
    recs: RecordingService,
    clock: Clock,
    *,
    kind: str = "full",
    levels: list[float] | None = None,
    at: datetime | None = None,
    **facts: Any,
) -> str:
    """A finished recording with a real file: start, write the WAV where Asterisk would, finish."""
    clock.now = at or clock.now
    defaults: dict[str, Any] = {"agent_interface": "PJSIP/1001", "agent_user_id": 11, "queue": "support"}
    info, allocation = await recs.lifecycle.start(kind, CallFacts(**{**defaults, **facts}))
    write_wav(allocation.path, levels or [0.5, 0.5, 0.5, 0.5])
    clock.now += timedelta(seconds=2)
    finished = await recs.lifecycle.finish(info.id)
    assert finished.status == "complete"
    return info.id


# -- schema --------------------------------------------------------------------------------------------


def _table_of(diff: Any) -> str | None:
    """The table an Alembic autogenerate difference is about."""
    if isinstance(diff, list):
        return str(diff[0][2])
    subject = diff[1]
    if diff[0] in ("add_column", "remove_column"):
        return str(diff[2])
    table = getattr(subject, "table", subject)
    return getattr(table, "name", None)


async def test_migration_creates_the_tables_of_the_models_and_the_search_structures(database: Database) -> None:
    def check(connection: Connection) -> tuple[set[str], list[Any], set[str]]:
        inspector = inspect(connection)
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_name": include_name})
        ours = [d for d in compare_metadata(context, Base.metadata) if _table_of(d) in TABLES]
        indexes = {index["name"] or "" for index in inspector.get_indexes("recordings")}
        return set(inspector.get_table_names()), ours, indexes

    async with database.engine.connect() as connection:
        names, differences, indexes = await connection.run_sync(check)
    assert names >= TABLES
    assert differences == []
    if database.dialect == "sqlite":
        assert {"fts_recordings", "fts_recording_numbers"} <= names
    else:
        assert {"ix_recordings_caller_trgm", "ix_recordings_called_trgm"} <= indexes
        assert "fts_recordings" in names
        async with database.engine.connect() as connection:
            word_indexes = await connection.run_sync(lambda c: inspect(c).get_indexes("fts_recordings"))
        assert {"ix_fts_recordings_started", "ix_fts_recordings_duration"} <= {i["name"] for i in word_indexes}


# -- lifecycle ------------------------------------------------------------------------------------------


async def test_a_recording_is_started_paused_resumed_and_finished_with_size_duration_and_checksum(
    recs: RecordingService, clock: Clock, service: AuthService, tmp_path: Path
) -> None:
    info, allocation = await recs.lifecycle.start(
        "on_demand",
        CallFacts(
            linkedid="1700000000.1",
            uniqueid="1700000000.2",
            agent_interface="PJSIP/1001",
            agent_user_id=11,
            queue="support",
            caller_number="+8613800000001",
            called_number="4000",
            did="4000",
            service_record_id=77,
            service_record_type="complaint",
        ),
        actor="alice",
    )
    assert info.status == "recording"
    assert allocation.path == tmp_path / "recordings" / "on_demand" / "2030" / "01" / "01" / f"{info.id}.wav"
    clock.now = T0 + timedelta(seconds=3)
    await recs.lifecycle.pause(info.id, actor="alice")
    with pytest.raises(RecordingStateConflict, match="already paused"):
        await recs.lifecycle.pause(info.id)
    clock.now = T0 + timedelta(seconds=5.5)
    await recs.lifecycle.resume(info.id, actor="alice")
    with pytest.raises(RecordingStateConflict, match="not paused"):
        await recs.lifecycle.resume(info.id)
    clock.now = T0 + timedelta(seconds=8)
    await recs.lifecycle.pause(info.id)
    write_wav(allocation.path, [0.5] * 4)  # 2 s
    clock.now = T0 + timedelta(seconds=9)
    done = await recs.lifecycle.finish(info.id)

    assert done.status == "complete"
    assert done.size == allocation.path.stat().st_size
    assert done.sha256 == hashlib.sha256(allocation.path.read_bytes()).hexdigest()
    assert done.duration == pytest.approx(2.0)
    assert done.ended_at == T0 + timedelta(seconds=9)
    # The pause still open at the end is closed there.
    assert done.paused_intervals == [[3.0, 5.5], [8.0, 9.0]]
    assert done.service_record_id == 77
    assert (await recs.lifecycle.finish(info.id)) == done, "finishing again changes nothing"
    with pytest.raises(RecordingStateConflict, match="ended"):
        await recs.lifecycle.pause(info.id)
    assert [a for a in await actions(service) if a[2] == info.id] == [
        ("recording_started", "alice", info.id),
        ("recording_paused", "alice", info.id),
        ("recording_resumed", "alice", info.id),
        ("recording_paused", None, info.id),
    ]


async def test_a_recording_whose_file_never_appeared_is_marked_missing(recs: RecordingService) -> None:
    info, _ = await recs.lifecycle.start("full", CallFacts())
    assert (await recs.lifecycle.finish(info.id)).status == "missing"


async def test_hostile_caller_text_is_stored_verbatim_and_found_again(recs: RecordingService, clock: Clock) -> None:
    recording_id = await recorded(recs, clock, caller_number=HOSTILE[:60], description=HOSTILE, tags=("x'y", "%_"))
    row = await recs.index.get(recording_id)
    assert row.caller_number == HOSTILE[:60]
    assert row.description == HOSTILE
    assert row.tags == ["x'y", "%_"]
    page = await recs.index.search(SearchQuery(number=HOSTILE[:60]))
    assert [item.id for item in page.items] == [recording_id]
    page = await recs.index.search(SearchQuery(number="DROP TABLE", number_match="partial"))
    assert [item.id for item in page.items] == [recording_id]
    assert [i.id for i in (await recs.index.search(SearchQuery(q="drop TABLE"))).items] == [recording_id]
    # Punctuation is not searchable: a query of it alone names the field rather than matching everything.
    with pytest.raises(InvalidFilter) as caught:
        await recs.index.search(SearchQuery(q="%_"))
    assert list(caught.value.details["fields"]) == ["q"]
    page = await recs.index.search(SearchQuery(number="%", number_match="partial"))
    assert [i.id for i in page.items] == [recording_id], "LIKE wildcards in a number are plain characters"


async def test_register_file_indexes_a_closed_voicemail(recs: RecordingService, clock: Clock) -> None:
    allocation = recs.store.allocate("voicemail", T0)
    write_wav(allocation.path, [0.4] * 6)
    info = await recs.lifecycle.register_file(
        allocation.path,
        CallFacts(caller_number="+8613800000002", intent="complaint", linkedid="1.1"),
        started_at=T0,
        ended_at=T0 + timedelta(seconds=3),
    )
    assert info.id == allocation.id
    assert (info.kind, info.status, info.intent) == ("voicemail", "complete", "complaint")
    assert info.duration == pytest.approx(3.0)
    assert info.sha256 == hashlib.sha256(allocation.path.read_bytes()).hexdigest()


async def test_register_file_refuses_paths_outside_the_root_and_touches_nothing(
    recs: RecordingService, tmp_path: Path
) -> None:
    outside = write_wav(tmp_path / "outside.wav", [0.5])
    before = outside.read_bytes()
    link = recs.store.root / "voicemail" / "escape.wav"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    for path in (
        outside,
        f"{recs.store.root}/../outside.wav",
        "../outside.wav",
        "%2e%2e/outside.wav",
        "voicemail/escape.wav",
        link,
    ):
        with pytest.raises(UnsafePath):
            await recs.lifecycle.register_file(path, CallFacts())
    assert outside.read_bytes() == before
    assert (await recs.index.search(SearchQuery())).total == 0


# -- search ---------------------------------------------------------------------------------------------


@pytest.fixture
async def corpus(recs: RecordingService, clock: Clock) -> dict[str, str]:
    """Six recordings that differ in every searchable way."""
    ids = {}
    ids["a"] = await recorded(
        recs,
        clock,
        at=T0,
        levels=[0.5] * 2,
        caller_number="+8613800001111",
        called_number="4000",
        description="Customer asked for a REFUND of the washer",
        tags=("vip",),
        service_record_type="complaint",
    )
    ids["b"] = await recorded(
        recs,
        clock,
        at=T0 + timedelta(hours=1),
        levels=[0.5] * 8,
        agent_interface="PJSIP/1002",
        agent_user_id=12,
        caller_number="+8613800002222",
        called_number="4001",
        description="installation booked",
        tags=("callback", "refund-denied"),
        service_record_type="installation",
    )
    ids["c"] = await recorded(
        recs,
        clock,
        kind="on_demand",
        at=T0 + timedelta(days=1),
        levels=[0.5] * 4,
        queue="expert",
        caller_number="1001",
        called_number="+8613800001111",
        direction="outbound",
        description="callback about the refund",
    )
    ids["d"] = await recorded(
        recs,
        clock,
        kind="voicemail",
        at=T0 + timedelta(days=2),
        levels=[0.5] * 12,
        agent_interface=None,
        agent_user_id=None,
        queue=None,
        caller_number="+8613900003333",
        called_number="4000",
        intent="complaint",
    )
    ids["e"] = await recorded(
        recs,
        clock,
        at=T0 + timedelta(days=3),
        levels=[0.5] * 6,
        caller_number="+8613800004444",
        called_number="4000",
        description="空调维修 air conditioner repair",
        tags=("Escalated",),
        service_record_type="repair",
    )
    ids["f"] = await recorded(
        recs,
        clock,
        at=T0 + timedelta(days=4),
        levels=[0.5] * 10,
        queue="sales",
        caller_number="+8613800005555",
        called_number="4001",
    )
    return ids


async def found(recs: RecordingService, corpus: dict[str, str], **params: Any) -> list[str]:
    page = await recs.index.search(SearchQuery(**params))
    names = {value: key for key, value in corpus.items()}
    assert page.total >= len(page.items)
    return [names[item.id] for item in page.items]


async def test_every_criterion_filters(recs: RecordingService, corpus: dict[str, str]) -> None:
    assert await found(recs, corpus) == ["f", "e", "d", "c", "b", "a"]
    assert await found(recs, corpus, kind="on_demand") == ["c"]
    assert await found(recs, corpus, kind="voicemail") == ["d"]
    assert await found(recs, corpus, agent="PJSIP/1002") == ["b"]
    assert await found(recs, corpus, agent_user_id=12) == ["b"]
    assert await found(recs, corpus, queue="expert") == ["c"]
    assert await found(recs, corpus, since=T0 + timedelta(days=1), until=T0 + timedelta(days=3)) == ["d", "c"]
    assert await found(recs, corpus, number="+8613800001111") == ["c", "a"]
    assert await found(recs, corpus, number="3800001111") == []
    assert await found(recs, corpus, number="3800001111", number_match="partial") == ["c", "a"]
    assert await found(recs, corpus, number="4001", number_match="partial") == ["f", "b"]
    assert await found(recs, corpus, number="33", number_match="partial") == ["d"]
    assert await found(recs, corpus, direction="outbound") == ["c"]
    assert await found(recs, corpus, service_record_type="complaint") == ["a"]
    assert await found(recs, corpus, status="complete") == ["f", "e", "d", "c", "b", "a"]


async def test_duration_range_and_sort(recs: RecordingService, corpus: dict[str, str]) -> None:
    # Durations: a 1 s, b 4 s, c 2 s, d 6 s, e 3 s, f 5 s.
    assert await found(recs, corpus, min_duration=2, max_duration=4) == ["e", "c", "b"]
    assert await found(recs, corpus, sort="duration") == ["d", "f", "b", "e", "c", "a"]
    assert await found(recs, corpus, sort="duration", order="asc", max_duration=3) == ["a", "c", "e"]
    assert await found(recs, corpus, order="asc", limit=2) == ["a", "b"]


async def test_text_search_finds_every_word_in_description_or_tags_whatever_the_case(
    recs: RecordingService, corpus: dict[str, str]
) -> None:
    assert await found(recs, corpus, q="refund") == ["c", "b", "a"]
    assert await found(recs, corpus, q="Refund VIP") == ["a"]
    assert await found(recs, corpus, q="refund callback") == ["c", "b"]
    assert await found(recs, corpus, q="escalated") == ["e"]
    assert await found(recs, corpus, q="condition") == ["e"], "a word is found by its beginning"
    assert await found(recs, corpus, q="ditio") == [], "not by its middle"
    assert await found(recs, corpus, q="空调") == ["e"]
    assert await found(recs, corpus, q="维修") == ["e"], "a word inside a run of Chinese characters"
    assert await found(recs, corpus, q="维") == ["e"]
    assert await found(recs, corpus, q="空调维修") == ["e"]
    assert await found(recs, corpus, q="空调坏了") == []
    assert await found(recs, corpus, q="nothing-like-this") == []


async def test_many_or_few_fts_matches_give_the_same_answers(
    recs: RecordingService, corpus: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    searches: list[dict[str, Any]] = [
        {"q": "refund"},
        {"q": "refund", "kind": "full"},
        {"q": "refund", "sort": "duration", "order": "asc"},
        {"number": "1111", "number_match": "partial"},
        {"number": "1111", "number_match": "partial", "q": "washer"},
        {"q": "refund", "limit": 1, "offset": 1},
        {"q": "refund", "since": T0 + timedelta(minutes=30), "order": "asc"},
        {"q": "refund", "until": T0 + timedelta(days=1)},
        {"q": "refund", "offset": 5},
    ]
    few = [await found(recs, corpus, **params) for params in searches]
    # Both engines walk the sort order once the matches are "many" (PostgreSQL for a search on words alone).
    monkeypatch.setattr(search_module, "FTS_DRIVE_LIMIT", 0)
    monkeypatch.setattr(search_module, "PAGE_DRIVE_LIMIT", 0)
    monkeypatch.setattr(search_module, "WORDS_WALK_LIMIT", 0)
    assert [await found(recs, corpus, **params) for params in searches] == few
    assert few[0] == ["c", "b", "a"]
    totals = [(await recs.index.search(SearchQuery(**params))).total for params in searches]
    assert totals == [3, 2, 3, 2, 1, 3, 2, 2, 3]
    assert few[-3:] == [["b", "c"], ["b", "a"], []]


async def test_criteria_combine(recs: RecordingService, corpus: dict[str, str]) -> None:
    assert await found(recs, corpus, q="refund", agent="PJSIP/1001", kind="full") == ["a"]
    assert await found(
        recs, corpus, number="1111", number_match="partial", direction="inbound", q="washer", min_duration=0.5
    ) == ["a"]
    assert await found(recs, corpus, queue="support", since=T0 + timedelta(days=3)) == ["e"]


async def test_pages_by_offset_and_by_cursor_agree_and_carry_the_total(
    recs: RecordingService, corpus: dict[str, str]
) -> None:
    for sort in ("started_at", "duration"):
        for order in ("desc", "asc"):
            everything = [i.id for i in (await recs.index.search(SearchQuery(sort=sort, order=order))).items]
            by_offset: list[str] = []
            for offset in range(0, 6, 4):
                page = await recs.index.search(SearchQuery(sort=sort, order=order, limit=4, offset=offset))
                assert page.total == 6
                by_offset += [i.id for i in page.items]
            by_cursor: list[str] = []
            cursor = None
            while True:
                page = await recs.index.search(SearchQuery(sort=sort, order=order, limit=4, cursor=cursor))
                assert page.total == 6
                by_cursor += [i.id for i in page.items]
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert by_offset == by_cursor == everything


async def test_counting_stops_at_the_configured_limit(
    recs: RecordingService, corpus: dict[str, str], database: Database, tmp_path: Path
) -> None:
    capped = RecordingService(
        database, RecordingsConfig(search_count_limit=4), recs.store, transcode_dir=tmp_path / "transcode"
    )
    page = await capped.index.search(SearchQuery(limit=2))
    assert (page.total, page.total_exact, len(page.items)) == (4, False, 2)
    page = await capped.index.search(SearchQuery(kind="full"))
    assert (page.total, page.total_exact) == (4, True)
    assert (await recs.index.search(SearchQuery())).total_exact


async def test_bad_cursors_and_contradictions_name_the_field(recs: RecordingService, corpus: dict[str, str]) -> None:
    page = await recs.index.search(SearchQuery(limit=2))
    assert page.next_cursor is not None
    cases: list[tuple[dict[str, Any], str]] = [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": page.next_cursor, "sort": "duration"}, "cursor"),
        ({"cursor": page.next_cursor, "offset": 2}, "cursor"),
        ({"since": T0, "until": T0}, "until"),
        ({"min_duration": 5, "max_duration": 1}, "max_duration"),
        ({"q": " ".join("abcdefghijklmnopq")}, "q"),
        ({"q": "?!"}, "q"),
    ]
    for params, field in cases:
        with pytest.raises(InvalidFilter) as caught:
            await recs.index.search(SearchQuery(**params))
        assert list(caught.value.details["fields"]) == [field]


# -- access, editing ------------------------------------------------------------------------------------


async def test_agents_see_the_recordings_of_their_own_calls_by_user_id_never_by_extension(
    recs: RecordingService, clock: Clock
) -> None:
    by_user = await recs.index.get(await recorded(recs, clock, agent_interface="PJSIP/1002", agent_user_id=11))
    nobody_known = await recs.index.get(await recorded(recs, clock, agent_interface="PJSIP/1001", agent_user_id=None))
    other = await recs.index.get(await recorded(recs, clock, agent_interface="PJSIP/1002", agent_user_id=12))
    assert may_access(AGENT_1001, by_user)
    # Whoever was on 1001 then, the extension may be someone else's now: only QA and supervisors hear it.
    assert not may_access(AGENT_1001, nobody_known)
    assert may_access(QA, nobody_known)
    assert not may_access(AGENT_1001, other)
    assert may_access(AGENT_1002, other)
    # A known user id wins over the extension in the interface.
    assert not may_access(AGENT_1002, by_user)
    assert may_access(QA, other)
    assert may_access(who(Role.SUPERVISOR), other)
    assert not may_access(who(Role.ADMIN), other)


async def test_editing_changes_what_text_search_finds_and_is_audited(
    recs: RecordingService, clock: Clock, service: AuthService
) -> None:
    recording_id = await recorded(recs, clock, description="old words")
    with pytest.raises(RecordingForbidden):
        await recs.index.edit(recording_id, AGENT_1002, description="not mine")
    edited = await recs.index.edit(
        recording_id, AGENT_1001, description="Card payment taken", tags=["PCI", "pci", " vip "]
    )
    assert edited.description == "Card payment taken"
    assert edited.tags == ["PCI", "vip"]
    assert (await recs.index.search(SearchQuery(q="old"))).total == 0
    assert [i.id for i in (await recs.index.search(SearchQuery(q="payment pci"))).items] == [recording_id]
    again = await recs.index.edit(recording_id, QA, tags=[])
    assert (again.tags, again.description) == ([], "Card payment taken")
    assert [a for a in await actions(service) if a[2] == recording_id] == [
        ("recording_refused", "bob", recording_id),
        ("recording_edited", "alice", recording_id),
        ("recording_edited", "quinn", recording_id),
    ]


# -- playback checks ------------------------------------------------------------------------------------


async def test_playback_serves_the_verified_file_and_audits_it(
    recs: RecordingService, clock: Clock, service: AuthService
) -> None:
    recording_id = await recorded(recs, clock)
    playable = await recs.playback.open_audio(recording_id, QA, remote="10.0.0.9")
    try:
        assert playable.content_type == "audio/wav"
        content = os.pread(playable.fd, playable.size, 0)
        assert hashlib.sha256(content).hexdigest() == (await recs.index.get(recording_id)).sha256
    finally:
        playable.close()
    items, _ = await service.list_audit(action="recording_played")
    assert [(i.actor, i.target, i.remote_addr, i.details["format"]) for i in items] == [
        ("quinn", recording_id, "10.0.0.9", "wav")
    ]


async def test_a_tampered_file_is_refused_marked_and_audited(
    recs: RecordingService, clock: Clock, service: AuthService
) -> None:
    recording_id = await recorded(recs, clock)
    row = await recs.index.get(recording_id)
    path = recs.store.resolve(row.file_path)
    (await recs.playback.open_audio(recording_id, QA)).close()  # verified once, remembered
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    stat = path.stat()
    path.write_bytes(bytes(raw))
    # Even with the old modification time put back, the change is seen (ctime moves, and the hash differs).
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(RecordingTampered):
        await recs.playback.open_audio(recording_id, QA)
    assert (await recs.index.get(recording_id)).status == "tampered"
    with pytest.raises(RecordingTampered):
        await recs.playback.waveform(recording_id, QA, 10)
    items, _ = await service.list_audit(action="recording_tampered")
    assert [(i.actor, i.target, i.outcome) for i in items] == [("quinn", recording_id, "refused")]
    assert items[0].details["expected_sha256"] == row.sha256


async def test_missing_erased_and_unfinished_recordings_are_not_played(recs: RecordingService, clock: Clock) -> None:
    recording_id = await recorded(recs, clock)
    path = recs.store.resolve((await recs.index.get(recording_id)).file_path)
    moved = path.with_name("elsewhere.bin")
    path.rename(moved)
    with pytest.raises(RecordingFileMissing):
        await recs.playback.open_audio(recording_id, QA)
    assert (await recs.index.get(recording_id)).status == "missing"
    moved.rename(path)
    (await recs.playback.open_audio(recording_id, QA)).close()
    assert (await recs.index.get(recording_id)).status == "complete", "the same file came back"

    unfinished, _ = await recs.lifecycle.start("full", CallFacts(agent_user_id=11))
    with pytest.raises(RecordingNotReady):
        await recs.playback.open_audio(unfinished.id, QA)
    with pytest.raises(RecordingForbidden):
        await recs.playback.open_audio(recording_id, AGENT_1002)


async def test_transcoded_playback_is_made_once_and_reused(
    recs: RecordingService, clock: Clock, tmp_path: Path
) -> None:
    recording_id = await recorded(recs, clock)
    first = await recs.playback.open_audio(recording_id, QA, "mp3")
    first.close()
    assert first.content_type == "audio/mpeg"
    (cached,) = (tmp_path / "data" / "transcode").glob(f"{recording_id}-*.mp3")
    made = cached.stat().st_mtime_ns
    second = await recs.playback.open_audio(recording_id, AGENT_1001, "mp3")
    second.close()
    assert cached.stat().st_mtime_ns == made
    both = await asyncio.gather(*(recs.playback.open_audio(recording_id, QA, "ogg") for _ in range(3)))
    for playable in both:
        playable.close()
    assert len(list((tmp_path / "data" / "transcode").glob(f"{recording_id}-*.ogg"))) == 1


async def test_waveform_peaks_come_from_the_samples(recs: RecordingService, clock: Clock) -> None:
    recording_id = await recorded(recs, clock, levels=[0.0, 0.0, 0.8, 0.8])
    shape = await recs.playback.waveform(recording_id, AGENT_1001, 4)
    assert shape["duration"] == pytest.approx(2.0)
    assert shape["peaks"][:2] == [0.0, 0.0]
    assert shape["peaks"][2] == pytest.approx(0.8, abs=0.01)


# -- retention, erasure, check --------------------------------------------------------------------------


async def test_retention_erases_expired_files_per_kind_and_keeps_the_rows(
    recs: RecordingService, clock: Clock, service: AuthService
) -> None:
    old_full = await recorded(recs, clock, at=T0)
    old_on_demand = await recorded(recs, clock, kind="on_demand", at=T0)  # kept forever (0 days)
    old_voicemail = await recorded(recs, clock, kind="voicemail", at=T0 + timedelta(days=1))
    new_full = await recorded(recs, clock, at=T0 + timedelta(days=25))
    files = {
        rid: recs.store.resolve((await recs.index.get(rid)).file_path) for rid in (old_full, old_on_demand, new_full)
    }
    files[old_voicemail] = recs.store.resolve((await recs.index.get(old_voicemail)).file_path)

    now = T0 + timedelta(days=31)
    assert await recs.retention.apply(now) == {"full": 1, "voicemail": 1}
    assert {rid: path.exists() for rid, path in files.items()} == {
        old_full: False,
        old_on_demand: True,
        old_voicemail: False,
        new_full: True,
    }
    erased = await recs.index.get(old_full)
    assert (erased.status, erased.erased_at) == ("erased", now)
    with pytest.raises(RecordingErased):
        await recs.playback.open_audio(old_full, QA)
    assert await recs.retention.apply(now) == {}, "nothing twice"
    assert [(a, t) for a, _, t in await actions(service, action="recordings_expired")] == [
        ("recordings_expired", "kind:full"),
        ("recordings_expired", "kind:voicemail"),
    ]


async def test_erasing_a_customer_deletes_files_scrubs_rows_and_leaves_a_tombstone(
    recs: RecordingService, clock: Clock, service: AuthService, database: Database
) -> None:
    number = "+8613800009999"
    theirs = [
        await recorded(recs, clock, caller_number=number, description="their complaint"),
        await recorded(recs, clock, called_number=number, direction="outbound"),
    ]
    others = await recorded(recs, clock, caller_number="+8613800000000")
    paths = [recs.store.resolve((await recs.index.get(rid)).file_path) for rid in [*theirs, others]]
    (await recs.playback.open_audio(theirs[0], QA, "mp3")).close()

    erasure = await recs.retention.erase_by_number(number, "GDPR request #12", actor="root", remote="127.0.0.1")
    assert (erasure.count, erasure.actor, erasure.reason) == (2, "root", "GDPR request #12")
    assert sorted(erasure.recording_ids) == sorted(theirs)
    assert [path.exists() for path in paths] == [False, False, True]
    assert not list(recs.playback.transcode_dir.glob(f"{theirs[0]}-*"))
    for rid in theirs:
        row = await recs.index.get(rid)
        assert (row.status, row.caller_number, row.called_number, row.description) == ("erased", None, None, "")
    assert (await recs.index.search(SearchQuery(number=number))).total == 0
    assert (await recs.index.search(SearchQuery(q="complaint"))).total == 0
    async with database.session() as session:
        tombstone = (await session.scalars(select(RecordingErasure))).one()
        stored = json.dumps([tombstone.actor, tombstone.reason, tombstone.recording_ids])
    assert number not in stored, "the tombstone does not keep the number it erased"
    assert [(a, actor, target) for a, actor, target in await actions(service, action="recordings_erased")] == [
        ("recordings_erased", "root", f"erasure:{erasure.id}")
    ]
    again = await recs.retention.erase_by_number(number, "second request", actor="root")
    assert again.count == 0


async def test_check_reports_files_without_rows_and_rows_without_files(
    recs: RecordingService, clock: Clock, database: Database
) -> None:
    kept = await recorded(recs, clock)
    lost = await recorded(recs, clock)
    recs.store.resolve((await recs.index.get(lost)).file_path).unlink()
    stray = write_wav(recs.store.root / "full" / "2030" / "01" / "01" / "stray.wav", [0.1])
    report = await recs.retention.check()
    assert report.files_without_rows == ["full/2030/01/01/stray.wav"]
    assert report.rows_without_files == [(lost, (await recs.index.get(lost)).file_path)]
    assert not report.clean
    stray.unlink()
    async with database.session() as session:
        await session.execute(text("DELETE FROM recordings WHERE id = :id"), {"id": lost})
    assert (await recs.retention.check()).clean
    assert (await recs.index.get(kept)).status == "complete"


async def test_housekeeping_prepares_directories_and_drops_old_conversions(
    recs: RecordingService, clock: Clock, tmp_path: Path
) -> None:
    recording_id = await recorded(recs, clock)
    (await recs.playback.open_audio(recording_id, QA, "ogg")).close()
    (cached,) = (tmp_path / "data" / "transcode").glob("*.ogg")
    old = (T0 - timedelta(days=30)).timestamp()
    os.utime(cached, (old, old))
    clock.now = T0 + timedelta(hours=1)
    await recs.retention.maintain()
    assert not cached.exists()
    for kind in ("full", "on_demand", "voicemail"):
        assert (recs.store.root / kind / "2030" / "01" / "02").is_dir()


async def test_recording_work_never_blocks_the_event_loop(recs: RecordingService, database: Database) -> None:
    if database.dialect != "sqlite":
        pytest.skip("asyncpg itself stats ~/.pgpass and certificate files while connecting")
    info, allocation = await recs.lifecycle.start("full", CallFacts(agent_user_id=11, description="blocking check"))
    write_wav(allocation.path, [0.5] * 4)
    await database.ping()  # the pool's connection exists before the check starts
    with blockbuster_ctx():
        await recs.lifecycle.pause(info.id)
        await recs.lifecycle.resume(info.id)
        await recs.lifecycle.finish(info.id)
        (await recs.playback.open_audio(info.id, QA)).close()
        (await recs.playback.open_audio(info.id, QA, "mp3")).close()
        await recs.playback.waveform(info.id, QA, 50)
        assert (await recs.index.search(SearchQuery(q="blocking"))).total == 1
        await recs.index.edit(info.id, QA, description="still not blocking")
        await recs.retention.check()
        await recs.retention.maintain()
        await recs.retention.erase_by_number("nobody", "test", actor="root")


async def test_postgresql_plans_each_statement_for_its_values(database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("a PostgreSQL setting")
    async with database.session() as session:
        # Generic plans of prepared statements made some searches 25-100 times slower (docs/decisions.md).
        assert await session.scalar(text("SELECT current_setting('plan_cache_mode')")) == "force_custom_plan"
