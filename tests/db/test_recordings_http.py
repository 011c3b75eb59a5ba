"""The recordings HTTP API on SQLite and PostgreSQL: search, playback with Range, tampering, traversal attempts,
waveform, editing and erasure, each with the permission it needs and the audit it leaves."""

from __future__ import annotations

import hashlib
import math
import struct
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from callcenter.auth.middleware import auth_middleware
from callcenter.auth.services import AuthService
from callcenter.config import RecordingsConfig
from callcenter.db import Database
from callcenter.keys import AUTH
from callcenter.web.errors import error_middleware
from recordings.http import recordings_routes
from recordings.infos import CallFacts
from recordings.keys import RECORDINGS
from recordings.services import RecordingService
from recordings.storage import RecordingStore

PASSWORD = "correct horse battery"
RATE = 8000
Client = TestClient[web.Request, web.Application]


def write_wav(path: Path, levels: list[float], seconds_each: float = 0.5) -> Path:
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


@dataclass
class World:
    client: Client
    recs: RecordingService
    auth: AuthService
    tokens: dict[str, str]
    ids: dict[str, str]
    outside: Path

    def as_(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def file_of(self, name: str) -> Path:
        return self.recs.store.root / self.relative[name]

    relative: dict[str, str]


@pytest.fixture
async def world(database: Database, service: AuthService, tmp_path: Path) -> AsyncIterator[World]:
    root = tmp_path / "recordings"
    root.mkdir()
    outside = tmp_path / "secret.wav"
    write_wav(outside, [0.9])
    recs = RecordingService(
        database,
        RecordingsConfig(),
        RecordingStore(root),
        transcode_dir=tmp_path / "data" / "transcode",
        auditor=service,
    )
    users = {
        "quinn": (["qa"], None),
        "sam": (["supervisor"], None),
        "alice": (["agent"], "1001"),
        "bob": (["agent"], "1002"),
        "root": (["admin"], None),
    }
    user_ids = {}
    for name, (roles, extension) in users.items():
        created = await service.create_user(name, PASSWORD, roles=roles, extension=extension)
        user_ids[name] = created.id
    tokens = {name: (await service.login(name, PASSWORD))[0] for name in users}

    ids: dict[str, str] = {}
    relative: dict[str, str] = {}
    started = datetime.now(UTC) - timedelta(hours=1)
    for name, facts in {
        "alices": CallFacts(agent_interface="PJSIP/1001", agent_user_id=user_ids["alice"], caller_number="+861390001"),
        "bobs": CallFacts(agent_interface="PJSIP/1002", caller_number="+861390002", description="refund asked"),
    }.items():
        info, allocation = await recs.lifecycle.start("full", facts, started_at=started)
        write_wav(allocation.path, [0.2, 0.6, 0.0, 0.9])
        await recs.lifecycle.finish(info.id)
        ids[name] = info.id
        relative[name] = allocation.relative
        started += timedelta(minutes=5)

    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[AUTH] = service
    app[RECORDINGS] = recs
    app.add_routes(recordings_routes)
    async with TestClient(TestServer(app)) as client:
        yield World(client, recs, service, tokens, ids, outside, relative)


async def played(world: World) -> list[tuple[str | None, str | None]]:
    items, _ = await world.auth.list_audit(action="recording_played", limit=500)
    return [(item.actor, item.target) for item in reversed(items)]


async def error_of(response: Any) -> tuple[int, str, dict[str, Any]]:
    body = await response.json()
    return response.status, body["error"]["id"], body["error"]["details"]


# -- search ---------------------------------------------------------------------------------------------


async def test_qa_searches_with_filters_and_gets_the_total(world: World) -> None:
    response = await world.client.get("/api/v1/recordings", headers=world.as_("quinn"))
    assert response.status == 200
    body = await response.json()
    assert body["total"] == 2
    assert [item["id"] for item in body["items"]] == [world.ids["bobs"], world.ids["alices"]]
    assert body["items"][0]["agent"] == {"interface": "PJSIP/1002", "user_id": None}

    response = await world.client.get(
        "/api/v1/recordings",
        params={"q": "REFUND", "agent": "PJSIP/1002", "kind": "full", "min_duration": "1.5", "limit": "1"},
        headers=world.as_("sam"),
    )
    body = await response.json()
    assert (body["total"], [item["id"] for item in body["items"]]) == (1, [world.ids["bobs"]])

    response = await world.client.get(
        "/api/v1/recordings", params={"number": "9000", "number_match": "partial"}, headers=world.as_("quinn")
    )
    assert (await response.json())["total"] == 2


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("min_duration=abc", "min_duration"),
        ("kind=podcast", "kind"),
        ("direction=sideways", "direction"),
        ("limit=0", "limit"),
        ("limit=1000", "limit"),
        ("since=yesterday", "since"),
        ("since=2030-01-02T00:00:00Z&until=2030-01-01T00:00:00Z", "until"),
        ("min_duration=10&max_duration=5", "max_duration"),
        ("sort=caller", "sort"),
        ("cursor=%21%21%21", "cursor"),
        ("password=x", "password"),
        ("kind=full&kind=voicemail", "kind"),
        ("number=%00", "number"),
        ("min_duration=nan", "min_duration"),
    ],
)
async def test_an_invalid_filter_is_400_naming_the_field(world: World, query: str, field: str) -> None:
    response = await world.client.get(f"/api/v1/recordings?{query}", headers=world.as_("quinn"))
    status, error_id, details = await error_of(response)
    assert (status, error_id) == (400, "invalid_input")
    assert field in details["fields"]


async def test_searching_needs_the_search_permission(world: World) -> None:
    assert (await world.client.get("/api/v1/recordings")).status == 401
    for user in ("alice", "root"):
        response = await world.client.get("/api/v1/recordings", headers=world.as_(user))
        assert (await error_of(response))[:2] == (403, "forbidden")


# -- one recording --------------------------------------------------------------------------------------


async def test_who_may_read_a_recording(world: World) -> None:
    alices, bobs = world.ids["alices"], world.ids["bobs"]
    for user, recording_id, status in [
        ("quinn", alices, 200),
        ("sam", bobs, 200),
        ("alice", alices, 200),  # hers by user id
        ("bob", bobs, 403),  # on his phone PJSIP/1002, but the row names no user: QA's and supervisors' only
        ("alice", bobs, 403),
        ("bob", alices, 403),
        ("root", alices, 403),  # admins manage; listening stays with QA and supervisors
    ]:
        response = await world.client.get(f"/api/v1/recordings/{recording_id}", headers=world.as_(user))
        assert response.status == status, (user, recording_id)
        if status == 200:
            assert (await response.json())["id"] == recording_id
        else:
            assert (await error_of(response))[1] == "recording_forbidden"
    refused, _ = await world.auth.list_audit(action="recording_refused")
    assert sorted(item.actor or "" for item in refused) == ["alice", "bob", "bob", "root"]


async def test_a_bare_dot_dot_segment_never_reaches_a_recording(world: World) -> None:
    # The client (and any proxy) folds /recordings/%2e%2e/audio into /api/v1/audio: no route, nothing opened.
    response = await world.client.get("/api/v1/recordings/%2e%2e/audio", headers=world.as_("quinn"))
    assert response.status == 404
    assert await played(world) == []


async def test_an_unknown_recording_is_404(world: World) -> None:
    response = await world.client.get(f"/api/v1/recordings/rec-{'0' * 32}", headers=world.as_("quinn"))
    assert (await error_of(response))[:2] == (404, "recording_not_found")


@pytest.mark.parametrize(
    "raw_path",
    [
        "/api/v1/recordings/..%2F..%2Fsecret.wav/audio",
        "/api/v1/recordings/%2e%2e%2fsecret.wav/audio",
        "/api/v1/recordings/%252e%252e%252fsecret.wav/audio",
        "/api/v1/recordings/%2Fetc%2Fpasswd/audio",
        "/api/v1/recordings/rec-..%2Fsecret/waveform",
        "/api/v1/recordings/REC-0123456789ABCDEF0123456789ABCDEF",
        "/api/v1/recordings/rec-0123456789abcdef0123456789abcdef%00/audio",
    ],
)
async def test_traversal_attempts_are_refused_and_touch_no_file(world: World, raw_path: str) -> None:
    before = world.outside.read_bytes()
    mtime = world.outside.stat().st_mtime_ns
    response = await world.client.get(raw_path, headers=world.as_("quinn"))
    assert (await error_of(response))[:2] == (400, "unsafe_path")
    assert world.outside.read_bytes() == before
    assert world.outside.stat().st_mtime_ns == mtime
    assert await played(world) == []


# -- playback -------------------------------------------------------------------------------------------


async def test_the_whole_file_is_served_with_range_support_and_each_playback_audited(world: World) -> None:
    recording_id = world.ids["alices"]
    content = world.file_of("alices").read_bytes()
    response = await world.client.get(f"/api/v1/recordings/{recording_id}/audio", headers=world.as_("alice"))
    assert response.status == 200
    assert await response.read() == content
    assert response.headers["Content-Type"] == "audio/wav"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Content-Length"] == str(len(content))
    assert response.headers["ETag"] == f'"{hashlib.sha256(content).hexdigest()}"'
    assert "no-store" in response.headers["Cache-Control"]
    await world.client.get(f"/api/v1/recordings/{recording_id}/audio", headers=world.as_("quinn"))
    assert await played(world) == [("alice", recording_id), ("quinn", recording_id)]


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=100-", 100, None), ("bytes=-44", None, None), ("bytes=10-10", 10, 10)],
)
async def test_a_range_is_served_as_206_with_its_content_range(
    world: World, header: str, start: int | None, end: int | None
) -> None:
    content = world.file_of("bobs").read_bytes()
    size = len(content)
    if header == "bytes=-44":
        start, end = size - 44, size - 1
    end = size - 1 if end is None else end
    assert start is not None
    response = await world.client.get(
        f"/api/v1/recordings/{world.ids['bobs']}/audio", headers={**world.as_("sam"), "Range": header}
    )
    assert response.status == 206
    assert await response.read() == content[start : end + 1]
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
    assert response.headers["Content-Length"] == str(end - start + 1)


@pytest.mark.parametrize("header", ["bytes=999999999-", "bytes=50-10", "bytes=abc", "bytes=-0", "bytes="])
async def test_a_bad_range_is_416_with_the_size_and_is_not_audited_as_a_playback(world: World, header: str) -> None:
    size = world.file_of("bobs").stat().st_size
    response = await world.client.get(
        f"/api/v1/recordings/{world.ids['bobs']}/audio", headers={**world.as_("sam"), "Range": header}
    )
    status, error_id, _ = await error_of(response)
    assert (status, error_id) == (416, "range_not_satisfiable")
    assert response.headers["Content-Range"] == f"bytes */{size}"
    assert await played(world) == []


async def test_several_ranges_or_a_stale_if_range_get_the_whole_file(world: World) -> None:
    content = world.file_of("bobs").read_bytes()
    url = f"/api/v1/recordings/{world.ids['bobs']}/audio"
    for extra in ({"Range": "bytes=0-1,5-6"}, {"Range": "bytes=0-9", "If-Range": '"stale"'}):
        response = await world.client.get(url, headers={**world.as_("sam"), **extra})
        assert response.status == 200
        assert await response.read() == content
    etag = response.headers["ETag"]
    response = await world.client.get(url, headers={**world.as_("sam"), "Range": "bytes=0-9", "If-Range": etag})
    assert response.status == 206


async def test_head_answers_headers_without_the_body(world: World) -> None:
    size = world.file_of("bobs").stat().st_size
    response = await world.client.head(f"/api/v1/recordings/{world.ids['bobs']}/audio", headers=world.as_("sam"))
    assert response.status == 200
    assert response.headers["Content-Length"] == str(size)
    assert await response.read() == b""


async def test_agents_cannot_play_other_agents_calls(world: World) -> None:
    response = await world.client.get(f"/api/v1/recordings/{world.ids['bobs']}/audio", headers=world.as_("alice"))
    assert (await error_of(response))[:2] == (403, "recording_forbidden")
    assert await played(world) == []


async def test_a_tampered_recording_is_409_marked_and_audited(world: World) -> None:
    path = world.file_of("alices")
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))
    url = f"/api/v1/recordings/{world.ids['alices']}/audio"
    for _ in range(2):
        response = await world.client.get(url, headers=world.as_("quinn"))
        assert (await error_of(response))[:2] == (409, "recording_tampered")
    row = await (await world.client.get(f"/api/v1/recordings/{world.ids['alices']}", headers=world.as_("quinn"))).json()
    assert row["status"] == "tampered"
    tampered, _ = await world.auth.list_audit(action="recording_tampered")
    assert [(item.actor, item.target) for item in tampered] == [("quinn", world.ids["alices"])]
    assert await played(world) == []


@pytest.mark.parametrize(
    ("fmt", "content_type", "magic"), [("mp3", "audio/mpeg", (b"ID3", b"\xff")), ("ogg", "audio/ogg", (b"OggS",))]
)
async def test_transcoded_formats_are_served_with_ranges(
    world: World, fmt: str, content_type: str, magic: tuple[bytes, ...]
) -> None:
    url = f"/api/v1/recordings/{world.ids['alices']}/audio?format={fmt}"
    response = await world.client.get(url, headers=world.as_("alice"))
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    body = await response.read()
    assert body.startswith(magic)
    response = await world.client.get(url, headers={**world.as_("alice"), "Range": "bytes=4-13"})
    assert response.status == 206
    assert await response.read() == body[4:14]
    items, _ = await world.auth.list_audit(action="recording_played")
    assert {item.details["format"] for item in items} == {fmt}


async def test_an_unknown_format_is_400(world: World) -> None:
    response = await world.client.get(
        f"/api/v1/recordings/{world.ids['alices']}/audio?format=flac", headers=world.as_("quinn")
    )
    status, _, details = await error_of(response)
    assert status == 400
    assert "format" in details["fields"]


async def test_waveform_returns_bounded_peaks(world: World) -> None:
    url = f"/api/v1/recordings/{world.ids['alices']}/waveform"
    response = await world.client.get(url, params={"points": "4"}, headers=world.as_("alice"))
    body = await response.json()
    assert response.status == 200
    assert (body["points"], body["sample_rate"]) == (4, RATE)
    assert body["duration"] == pytest.approx(2.0)
    assert body["peaks"][2] == 0.0
    assert body["peaks"][3] == pytest.approx(0.9, abs=0.01)
    assert len((await (await world.client.get(url, headers=world.as_("alice"))).json())["peaks"]) == 200
    for points in ("0", "2001", "many"):
        response = await world.client.get(url, params={"points": points}, headers=world.as_("alice"))
        assert (await error_of(response))[0] == 400


# -- editing and erasure --------------------------------------------------------------------------------


async def test_the_agent_and_qa_edit_description_and_tags(world: World) -> None:
    url = f"/api/v1/recordings/{world.ids['alices']}"
    response = await world.client.patch(
        url, json={"description": "Refund promised", "tags": ["vip"]}, headers=world.as_("alice")
    )
    assert response.status == 200
    assert (await response.json())["tags"] == ["vip"]
    response = await world.client.patch(url, json={"tags": ["vip", "reviewed"]}, headers=world.as_("quinn"))
    body = await response.json()
    assert (body["description"], body["tags"]) == ("Refund promised", ["vip", "reviewed"])
    response = await world.client.patch(url, json={"description": "mine now"}, headers=world.as_("bob"))
    assert response.status == 403
    for bad in ({"description": "x" * 2001}, {"tags": ["a\nb"]}, {"owner": "bob"}, {"tags": [""]}, {}):
        response = await world.client.patch(url, json=bad, headers=world.as_("quinn"))
        assert (await error_of(response))[0] == 400, bad
    search = await world.client.get("/api/v1/recordings", params={"q": "promised reviewed"}, headers=world.as_("quinn"))
    assert [item["id"] for item in (await search.json())["items"]] == [world.ids["alices"]]
    edited, _ = await world.auth.list_audit(action="recording_edited")
    assert sorted(item.actor or "" for item in edited) == ["alice", "quinn"]


async def test_only_admins_erase_and_the_tombstone_comes_back(world: World) -> None:
    body = {"number": "+861390002", "reason": "customer asked, ticket 4711"}
    response = await world.client.post("/api/v1/recordings/erase", json=body, headers=world.as_("quinn"))
    assert response.status == 403
    for bad in ({"number": "+861390002"}, {"number": "", "reason": "because"}, {**body, "extra": 1}):
        response = await world.client.post("/api/v1/recordings/erase", json=bad, headers=world.as_("root"))
        assert (await error_of(response))[0] == 400
    response = await world.client.post("/api/v1/recordings/erase", json=body, headers=world.as_("root"))
    assert response.status == 201
    tombstone = await response.json()
    assert (tombstone["count"], tombstone["actor"], tombstone["recording_ids"]) == (1, "root", [world.ids["bobs"]])
    assert not world.file_of("bobs").exists()
    response = await world.client.get(f"/api/v1/recordings/{world.ids['bobs']}/audio", headers=world.as_("quinn"))
    assert (await error_of(response))[:2] == (410, "recording_erased")
    erased, _ = await world.auth.list_audit(action="recordings_erased")
    assert [(item.actor, item.details["count"]) for item in erased] == [("root", 1)]
