"""Recordings through the real Asterisk: a full recording of every answered queue call, an on-demand recording
started and paused through the API (silent exactly while paused), QA search finding both, and a recording rule
that records a VIP customer's call from the moment it is queued."""

from __future__ import annotations

import array
import asyncio
import math
import secrets
import time
import wave
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callcenter import dialplan
from callcenter.auth.permissions import Role
from callcenter.bus import Bus
from callcenter.config import Config
from callcenter.events import CallAnswered
from callcenter.keys import AUTH, LIVE
from callcenter.model import AgentStatus
from callcenter_devtools.sandbox import Sandbox
from callcenter_devtools.sipp import CallerScript, Phones
from calls import service as calls_service
from calls.events import CallRecorded
from calls.keys import CALLS
from crm_bridge.keys import CRM
from crm_bridge.schemas import CustomerIn, PhoneIn
from recordings.events import RecordingFinished, RecordingStarted
from recordings.full import call_prefix
from recordings.keys import RECORDING_CONTROL, RECORDINGS
from recordings.schemas import SearchQuery
from tests.integration.conftest import AGENT_PORTS, PHONE_IP, PSTN, TEST_PORTS, running_engine, wait_for
from tests.integration.test_seats_and_handoff import PASSWORD, Api, queue_route, user_api


def _rms(samples: array.array[int]) -> float:
    return math.sqrt(sum(sample * sample for sample in samples) / len(samples)) if samples else 0.0


def _read(path: Path) -> tuple[int, array.array[int]]:
    with wave.open(str(path)) as audio:
        assert audio.getsampwidth() == 2
        return audio.getframerate(), array.array("h", audio.readframes(audio.getnframes()))


def _file(root: Path, recording_id: str) -> Path:
    (found,) = root.rglob(f"{recording_id}.wav")
    return found


async def _qa_api(app: Any, http: aiohttp.ClientSession) -> Api:
    username = f"qa-{secrets.token_hex(3)}"
    await app[AUTH].create_user(username, PASSWORD, roles=[Role.QA])
    base = f"http://127.0.0.1:{TEST_PORTS['web']}"
    async with http.post(base + "/api/v1/login", json={"username": username, "password": PASSWORD}) as response:
        return Api(http, (await response.json())["token"])


async def test_an_answered_call_is_recorded_in_full_and_an_on_demand_recording_is_silent_while_paused(
    config: Config, sandbox: Sandbox, phones: Phones
) -> None:
    bus = Bus()
    finished: list[RecordingFinished] = []
    bus.subscribe(RecordingFinished, finished.append)
    general = config.queues.general
    async with running_engine(config, bus, {dialplan.ROUTE_IVR: queue_route(general)}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        async with user_api(app, Role.AGENT, "1001") as agent_api:
            assert (await agent_api.call("POST", "/api/v1/agents/me/login", {"queues": [{"queue": general}]}))[0] == 200
            # The agent's phone echoes what it hears: both directions carry the caller's speech.
            phone = phones.desk_phone("agent-1001", local_ip=PHONE_IP, local_port=AGENT_PORTS["1001"])
            # The caller speaks from 1.5 s for 7 s and hangs up at 11.5 s.
            caller = phones.call(
                "caller",
                config.sip.dids[0],
                CallerScript(caller_number="5550501", wait_before_digits_ms=1500, talk_ms=10000, speech=True),
                local_ip=PSTN,
                local_port=5283,
            )
            agent = "PJSIP/1001"
            assert await wait_for(
                lambda: agent in live.model.agents and live.model.agents[agent].status is AgentStatus.ON_CALL,
                timeout=30,
            )
            linkedid = live.model.agents[agent].linkedid
            path = f"/api/v1/calls/{linkedid}/recording"
            status, started = await agent_api.call("POST", path, {"action": "start", "description": "card payment"})
            assert status == 200, started
            await asyncio.sleep(2.0)
            status, paused = await agent_api.call("POST", path, {"action": "pause"})
            assert status == 200, paused
            # Paused twice is a conflict, and the recording stays paused.
            assert (await agent_api.call("POST", path, {"action": "pause"}))[0] == 409
            await asyncio.sleep(2.0)
            assert (await agent_api.call("POST", path, {"action": "resume"}))[0] == 200
            await asyncio.sleep(2.0)
            status, stopped = await agent_api.call("POST", path, {"action": "stop"})
            assert status == 200, stopped
            assert await asyncio.to_thread(caller.wait, 60) == 0, caller.output()[-1500:]
            assert await asyncio.to_thread(phone.wait, 15) == 0
            assert await wait_for(lambda: any(e.kind == "full" for e in finished), timeout=10)
        async with aiohttp.ClientSession() as http:
            qa = await _qa_api(app, http)
            status, page = await qa.call("GET", f"/api/v1/recordings?linkedid={linkedid}&sort=started_at&order=asc")
            assert status == 200, page
            by_kind = {item["kind"]: item for item in page["items"]}
            assert set(by_kind) == {"full", "on_demand"}, page
            full, on_demand = by_kind["full"], by_kind["on_demand"]
            # Found by agent, by a partial number and by description words.
            for query in (f"agent={agent}&kind=full", "number=55505&number_match=partial", "q=payment"):
                status, found = await qa.call("GET", f"/api/v1/recordings?{query}")
                assert status == 200, found
                assert linkedid in {item["linkedid"] for item in found["items"]}, (query, found)
    recordings = config.recordings_dir
    assert full["agent"]["interface"] == agent
    assert full["agent"]["user_id"] is not None
    assert full["caller_number"] == "5550501"
    assert full["status"] == "complete"
    assert len(full["sha256"]) == 64
    rate, samples = _read(_file(recordings, full["id"]))
    assert len(samples) / rate > 6.0
    assert _rms(samples) > 300
    # On demand: the stored paused interval is silent, the audio around it is not.
    assert on_demand["status"] == "complete"
    assert on_demand["description"] == "card payment"
    ((pause_start, pause_end),) = on_demand["paused_intervals"]
    assert 1.5 <= pause_end - pause_start <= 3.0
    rate, samples = _read(_file(recordings, on_demand["id"]))
    # MixMonitor writes the frames it gets, so the file's timeline runs a few hundred ms behind the wall clock
    # the paused interval was stored in: the silent stretch is found in the file and compared with it.
    step = rate // 4
    windows = [_rms(samples[i : i + step]) for i in range(0, len(samples) - step + 1, step)]
    runs: list[tuple[int, int]] = []
    start = None
    for index, level in enumerate([*windows, 1e9]):
        if level < 50 and start is None:
            start = index
        elif level >= 50 and start is not None:
            runs.append((start, index))
            start = None
    longest_start, longest_end = max(runs, key=lambda run: run[1] - run[0])
    silent_from, silent_for = longest_start / 4, (longest_end - longest_start) / 4
    assert abs(silent_for - (pause_end - pause_start)) <= 0.75, (runs, pause_start, pause_end)
    assert abs(silent_from - pause_start) <= 1.0, (runs, pause_start, pause_end)
    assert _rms(samples[: longest_start * step]) > 300
    assert _rms(samples[longest_end * step :]) > 300


async def test_a_recording_rule_records_a_vip_callers_call_from_the_moment_it_is_queued(
    config: Config, sandbox: Sandbox, phones: Phones
) -> None:
    ruled = config.model_copy(update={"recordings": config.recordings.model_copy(update={"record_tiers": ["vip"]})})
    bus = Bus()
    started: list[tuple[float, RecordingStarted]] = []
    bus.subscribe(RecordingStarted, lambda event: started.append((time.monotonic(), event)))
    answered: list[float] = []
    bus.subscribe(CallAnswered, lambda _event: answered.append(time.monotonic()))
    finished: list[RecordingFinished] = []
    bus.subscribe(RecordingFinished, finished.append)
    general = config.queues.general
    async with running_engine(ruled, bus, {dialplan.ROUTE_IVR: queue_route(general)}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        number = f"1390001{secrets.randbelow(10000):04d}"
        await app[CRM].customers.create(
            CustomerIn(name="Vera Important", tier="vip", phones=[PhoneIn(number=number)]), actor="test"
        )
        async with user_api(app, Role.AGENT, "1001") as agent_api:
            phone = phones.desk_phone("agent-1001", local_ip=PHONE_IP, local_port=AGENT_PORTS["1001"])
            # Nobody staffs the queue yet: the caller waits, talking from 1.5 s, and hangs up at 13.5 s.
            caller = phones.call(
                "caller",
                config.sip.dids[0],
                CallerScript(caller_number=number, wait_before_digits_ms=1500, talk_ms=12000, speech=True),
                local_ip=PSTN,
                local_port=5284,
            )
            assert await wait_for(lambda: bool(started), timeout=20)
            await asyncio.sleep(3.0)
            assert (await agent_api.call("POST", "/api/v1/agents/me/login", {"queues": [{"queue": general}]}))[0] == 200
            assert await wait_for(lambda: bool(answered), timeout=30)
            assert await asyncio.to_thread(caller.wait, 60) == 0, caller.output()[-1500:]
            assert await asyncio.to_thread(phone.wait, 15) == 0
            assert await wait_for(lambda: len(finished) >= 2, timeout=10)
        linkedid = started[0][1].linkedid
        async with aiohttp.ClientSession() as http:
            qa = await _qa_api(app, http)
            status, page = await qa.call("GET", f"/api/v1/recordings?linkedid={linkedid}&sort=started_at&order=asc")
            assert status == 200, page
    by_kind = {item["kind"]: item for item in page["items"]}
    assert set(by_kind) == {"full", "on_demand"}, page
    rule, full = by_kind["on_demand"], by_kind["full"]
    # Started by the rule while the caller waited, before any agent answered; the full recording at the answer.
    assert started[0][1].kind == "on_demand"
    assert started[0][0] < answered[0] - 2.5
    assert "vip" in rule["description"]
    assert rule["caller_number"] == number
    assert rule["status"] == "complete"
    assert rule["duration"] > full["duration"] + 2.5, (rule, full)
    rate, samples = _read(_file(config.recordings_dir, rule["id"]))
    assert len(samples) / rate > 6.0
    assert _rms(samples) > 300


async def test_a_call_answered_and_ended_while_the_engine_is_down_is_recorded_by_asterisk_and_indexed_after(
    config: Config, sandbox: Sandbox, phones: Phones, queue_member: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    general = config.queues.general
    route = {dialplan.ROUTE_IVR: queue_route(general)}
    # The engine has met this Asterisk once (the CEL horizon is set), then it is gone.
    async with running_engine(config, Bus(), route) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
    sandbox.cli(f"queue add member PJSIP/1002 to {general}")
    queue_member.append(f"1002@{general}")
    before = set(config.recordings_dir.rglob("rec-*.wav"))
    # No engine: the FastAGI IVR is unreachable, so the dialplan's fallback apologises and queues the caller; the
    # seat answers; the caller speaks from 6 s after the call's answer (the apology is over by then).
    phone = phones.desk_phone("agent-1002", local_ip=PHONE_IP, local_port=AGENT_PORTS["1002"])
    number = f"5550{secrets.randbelow(1000000):06d}"
    caller = phones.call(
        "caller",
        config.sip.dids[0],
        CallerScript(
            caller_number=number, wait_before_digits_ms=1000, pause_before_speech_ms=5000, talk_ms=14000, speech=True
        ),
        local_ip=PSTN,
        local_port=5285,
    )
    assert await asyncio.to_thread(caller.wait, 60) == 0, caller.output()[-1500:]
    assert await asyncio.to_thread(phone.wait, 15) == 0
    (made,) = set(config.recordings_dir.rglob("rec-*.wav")) - before
    assert made.parent.parent.parent.parent.name == "full"
    # The engine comes back: the call's record comes from Asterisk's event log, and with it the file's row.
    monkeypatch.setattr(calls_service, "BACKFILL_GRACE_SECONDS", 1.0)
    bus = Bus()
    recorded: list[CallRecorded] = []
    bus.subscribe(CallRecorded, recorded.append)
    async with running_engine(config, bus, route) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        # Asterisk writes the event log on its own time: reconciled until the call's end is in it.
        assert await wait_for_async(lambda: _reconciled(app, recorded), timeout=20)
        (linkedid,) = {event.linkedid for event in recorded if event.source == "cel"}
        assert made.name.startswith(call_prefix(linkedid))
        index = app[RECORDINGS].index
        assert await wait_for_async(lambda: _found(index, linkedid), timeout=10)
        (row,) = (await index.search(SearchQuery(linkedid=linkedid))).items
        # A second pass over the same files writes nothing more.
        assert await app[RECORDING_CONTROL].full.index_call(linkedid) == 0
    assert row.id == made.name.removesuffix(".wav")
    assert row.kind == "full"
    assert row.status == "complete"
    assert row.caller_number == number
    assert row.agent_interface == "PJSIP/1002"
    assert row.queue == general
    assert row.duration is not None
    assert row.duration > 4.0
    assert len(row.sha256 or "") == 64
    rate, samples = _read(made)
    assert abs(len(samples) / rate - row.duration) < 0.1
    assert _rms(samples) > 300


async def _reconciled(app: Any, recorded: list[CallRecorded]) -> bool:
    await app[CALLS].reconcile()
    return any(event.source == "cel" for event in recorded)


async def _found(index: Any, linkedid: str) -> bool:
    return bool((await index.search(SearchQuery(linkedid=linkedid))).items)


async def wait_for_async(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(interval)
    return False
