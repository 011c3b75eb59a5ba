"""Call records through faults, with the real Asterisk and SIPp (issue 15, items 2 and 3):

- the engine killed with SIGKILL in the middle of an answered call (a real ``callcenter run`` process: no final
  snapshot, no shutdown) and started again while the call goes on writes one ``answered`` record with the agent, the
  wait and the talk time to the real end, and no callback task;
- the database (a PostgreSQL of the test's own, callcenter_devtools.pgsandbox) stopped in the middle of a call and
  started again: the record waits in the journal and lands once, with the right outcome and agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from callcenter import dialplan
from callcenter.bus import Bus
from callcenter.config import Config
from callcenter.db import Database
from callcenter.keys import LIVE
from callcenter.secrets import ami_secret
from callcenter_devtools.pgsandbox import PgSandbox, PgSandboxError
from callcenter_devtools.sandbox import Sandbox
from callcenter_devtools.sipp import CallerScript, Phones
from calls.events import CallRecorded
from calls.models import CallProgress, CallRecord
from calls.service import JOURNAL_NAME
from crm_bridge.models import RecordType, ServiceRecord
from tests.integration.conftest import AGENT_PORTS, PHONE_IP, PSTN, TEST_PORTS, running_engine, wait_for
from tests.integration.test_seats_and_handoff import queue_route

SEAT = "PJSIP/1002"

# The engine process's flow: every caller queued at once to the general queue (the fault is under test here).
FLOW = """\
name: main
description: Queues every caller at once.
language: en
languages: [en]
start: queue
nodes:
  queue:
    queue: {queue: general, reason: agent}
"""


def _engine_config(config: Config, data: Path, **sections: dict[str, Any]) -> Config:
    """``config`` with a data directory (and so a database) of its own, logging in to the sandbox's AMI."""
    update: dict[str, Any] = {
        "ami": config.ami.model_copy(update={"password": SecretStr(ami_secret(config))}),
        "paths": config.paths.model_copy(update={"data_dir": data, "recordings_dir": config.recordings_dir}),
    }
    for name, values in sections.items():
        update[name] = getattr(config, name).model_copy(update=values)
    return config.model_copy(update=update)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(str(value))


def _config_file(config: Config, flows: Path, path: Path) -> None:
    """The few keys the engine process needs beyond the defaults (the session config's, see tests/real_parts.py)."""
    lines = [
        "[sip]",
        f"port = {config.sip.port}",
        f"pstn_address = {_toml(config.sip.pstn_address)}",
    ]
    for phone in config.sip.phones:
        lines += [
            "[[sip.phones]]",
            f"extension = {_toml(phone.extension)}",
            f"kind = {_toml(phone.kind)}",
            f"password = {_toml(phone.password.get_secret_value())}",
            f"contact = {_toml(phone.contact)}",
        ]
    lines += [
        "[ami]",
        f"port = {config.ami.port}",
        f"password = {_toml(config.ami.password.get_secret_value())}",
        "[agi]",
        f"port = {config.agi.port}",
        f"read_timeout = {config.agi.read_timeout!r}",
        "[web]",
        f"port = {config.web.port}",
        "[paths]",
        f"data_dir = {_toml(config.data_dir)}",
        f"recordings_dir = {_toml(config.recordings_dir)}",
        "[flows]",
        f"directory = {_toml(flows)}",
        "prepare_prompts = false",
        "[calls]",
        "reconcile_interval = 5.0",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)


class EngineProcess:
    """``callcenter run`` as a process of its own, killed by its pid."""

    def __init__(self, config: Config, workdir: Path) -> None:
        self.config = config
        flows = workdir / "flows"
        flows.mkdir(parents=True, exist_ok=True)
        (flows / "main.yaml").write_text(FLOW, encoding="utf-8")
        self.config_path = workdir / "engine.toml"
        _config_file(config, flows, self.config_path)
        self.log_path = workdir / "engine.log"
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {name: value for name, value in os.environ.items() if not name.startswith("CALLCENTER_")}
        command = Path(sys.executable).with_name("callcenter")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(command), "--config", str(self.config_path), "run"],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: none of the engine's shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    async def healthy(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{TEST_PORTS['web']}/healthz"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    return False
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(url) as response:
                        body = await response.json()
                        if body.get("checks", {}).get("ami", {}).get("ok"):
                            return True
                await asyncio.sleep(0.3)
        return False


@pytest.fixture
def engine_process(config: Config, tmp_path: Path) -> Iterator[EngineProcess]:
    workdir = tmp_path / "engine"
    workdir.mkdir()
    engine = EngineProcess(_engine_config(config, workdir / "data"), workdir)
    try:
        yield engine
    finally:
        engine.stop()


T = TypeVar("T")


async def _polled(read: Callable[[], Awaitable[T]], interval: float, timeout: float = 30.0) -> T:
    """What ``read`` answers once it answers something (a linkedid, rows), or its last answer after ``timeout``."""
    deadline = time.monotonic() + timeout
    found = await read()
    while not found and time.monotonic() < deadline:
        await asyncio.sleep(interval)
        found = await read()
    return found


async def _rows(url: str, model: Any, **where: Any) -> list[Any]:
    database = Database(url)
    await database.open()
    try:
        async with database.session() as session:
            query = select(model)
            for name, value in where.items():
                query = query.where(getattr(model, name) == value)
            return list((await session.scalars(query)).all())
    finally:
        await database.close()


async def _answered_snapshot(url: str) -> str | None:
    for row in await _rows(url, CallProgress):
        call = json.loads(row.snapshot)["call"]
        if call.get("answered_at") and call.get("agent") == SEAT:
            return row.linkedid
    return None


async def test_an_engine_killed_mid_call_and_restarted_writes_one_answered_record_with_agent_and_times(
    config: Config, sandbox: Sandbox, phones: Phones, queue_member: list[str], engine_process: EngineProcess
) -> None:
    general = config.queues.general
    sandbox.cli(f"queue add member {SEAT} to {general}")
    queue_member.append(f"1002@{general}")
    url = engine_process.config.database_url
    engine_process.start()
    assert await engine_process.healthy(60), engine_process.log()[-3000:]
    phone = phones.desk_phone("agent-1002", local_ip=PHONE_IP, local_port=AGENT_PORTS["1002"])
    started = time.time()
    caller = phones.call(
        "caller",
        config.sip.dids[0],
        CallerScript(caller_number="5550501", caller_name="Killed Engine", talk_ms=30000),
        local_ip=PSTN,
        local_port=5283,
    )
    # The engine has seen the answer and snapshotted it (every 2 s) before it dies.
    linkedid = await _polled(lambda: _answered_snapshot(url), 0.3)
    assert linkedid is not None, engine_process.log()[-3000:]
    engine_process.kill()
    killed_at = time.time()
    assert caller.proc.poll() is None, "the call must outlive the engine"
    engine_process.start()
    assert await engine_process.healthy(60), engine_process.log()[-3000:]
    assert caller.proc.poll() is None, "the call must still be going on when the engine is back"
    assert await asyncio.to_thread(caller.wait, 60) == 0, caller.output()[-1500:]
    assert await asyncio.to_thread(phone.wait, 15) == 0
    ended = time.time()
    records: list[CallRecord] = await _polled(lambda: _rows(url, CallRecord), 0.5)
    (record,) = records
    assert record.linkedid == linkedid
    assert record.outcome == "answered", record.segments
    assert record.agent == SEAT
    assert record.did == config.sip.dids[0]
    assert record.caller_number == "5550501"
    assert record.wait_time is not None
    assert 0.0 <= record.wait_time < 10.0
    # About 30 s of talk, followed past the kill (at killed_at - started s) to the real end.
    assert record.talk_time is not None
    assert killed_at - started < record.talk_time <= ended - started + 1, (record.talk_time, killed_at - started)
    assert record.talk_time > 20.0
    assert await _rows(url, CallProgress) == []
    callbacks = await _rows(url, ServiceRecord, linkedid=linkedid, type=RecordType.CALLBACK_VISIT)
    assert callbacks == []
    assert "async subscriber" not in engine_process.log()


async def _queued_snapshot(url: str) -> str | None:
    for row in await _rows(url, CallProgress):
        call = json.loads(row.snapshot)["call"]
        if call.get("queue") and not call.get("answered_at"):
            return row.linkedid
    return None


async def test_a_call_answered_while_the_engine_is_dead_is_answered_by_its_agent_with_its_wait(
    config: Config, sandbox: Sandbox, phones: Phones, queue_member: list[str], engine_process: EngineProcess
) -> None:
    general = config.queues.general
    sandbox.cli(f"queue add member {SEAT} to {general}")
    queue_member.append(f"1002@{general}")
    url = engine_process.config.database_url
    engine_process.start()
    assert await engine_process.healthy(60), engine_process.log()[-3000:]
    # The agent's phone rings 9 s before it answers: the engine dies while the caller waits in the queue.
    phone = phones.desk_phone("agent-1002", local_ip=PHONE_IP, local_port=AGENT_PORTS["1002"], ring_ms=9000)
    caller = phones.call(
        "caller",
        config.sip.dids[0],
        CallerScript(caller_number="5550503", caller_name="Answered Unseen", talk_ms=20000),
        local_ip=PSTN,
        local_port=5285,
    )
    linkedid = await _polled(lambda: _queued_snapshot(url), 0.2)
    assert linkedid is not None, engine_process.log()[-3000:]
    engine_process.kill()
    killed_at = time.time()
    # The phone answers while no engine runs; the engine comes back during the talk.
    await asyncio.sleep(10)
    restarted_at = time.time()
    engine_process.start()
    assert await engine_process.healthy(60), engine_process.log()[-3000:]
    assert await asyncio.to_thread(caller.wait, 60) == 0, caller.output()[-1500:]
    assert await asyncio.to_thread(phone.wait, 15) == 0
    records: list[CallRecord] = await _polled(lambda: _rows(url, CallRecord), 0.5)
    (record,) = records
    assert record.linkedid == linkedid
    assert record.outcome == "answered", record.segments
    assert record.agent == SEAT
    # About 9 s of ringing in the queue, answered while no engine ran, then the talk to the real end.
    (segment,) = json.loads(record.segments)
    answered_at = datetime.fromisoformat(segment["answered_at"]).timestamp()
    assert killed_at < answered_at < restarted_at, (killed_at, segment, restarted_at)
    assert record.wait_time is not None
    assert 6.0 <= record.wait_time <= 15.0, record.segments
    assert record.talk_time is not None
    assert record.talk_time > 2.0
    assert abs(record.ended_at.timestamp() - answered_at - record.talk_time) <= 1.5, record.segments
    assert await _rows(url, ServiceRecord, linkedid=linkedid, type=RecordType.CALLBACK_VISIT) == []


@pytest.fixture
def postgres() -> Iterator[PgSandbox]:
    try:
        sandbox = PgSandbox()
    except PgSandboxError as exc:
        pytest.skip(str(exc))
    with sandbox:
        yield sandbox


async def test_a_call_that_ends_while_the_database_is_down_is_recorded_once_from_the_journal(
    config: Config,
    sandbox: Sandbox,
    phones: Phones,
    queue_member: list[str],
    postgres: PgSandbox,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    general = config.queues.general
    sandbox.cli(f"queue add member {SEAT} to {general}")
    queue_member.append(f"1002@{general}")
    data = tmp_path / "data"
    engine_config = _engine_config(config, data, database={"url": postgres.url})
    bus = Bus()
    recorded: list[CallRecorded] = []
    bus.subscribe(CallRecorded, recorded.append)
    caplog.set_level(logging.INFO)
    async with running_engine(engine_config, bus, {dialplan.ROUTE_IVR: queue_route(general)}) as app:
        live = app[LIVE]
        assert await wait_for(lambda: live.connection.connected and live.resyncs >= 1, timeout=10)
        phone = phones.desk_phone("agent-1002", local_ip=PHONE_IP, local_port=AGENT_PORTS["1002"])
        caller = phones.call(
            "caller",
            config.sip.dids[0],
            CallerScript(caller_number="5550502", caller_name="Database Down", talk_ms=15000),
            local_ip=PSTN,
            local_port=5284,
        )
        assert await wait_for(lambda: any(c.answered_at for c in live.model.calls.values()), timeout=30)
        (linkedid,) = live.model.calls
        await asyncio.to_thread(postgres.stop)
        assert await asyncio.to_thread(caller.wait, 60) == 0, caller.output()[-1500:]
        assert await asyncio.to_thread(phone.wait, 15) == 0
        assert await wait_for(lambda: not live.model.calls, timeout=10)
        journal = data / JOURNAL_NAME

        def journaled() -> bool:
            if not journal.exists():
                return False
            keys = [json.loads(line).get("key") for line in journal.read_text(encoding="utf-8").splitlines()]
            return f"record:{linkedid}" in keys

        assert await wait_for(journaled, timeout=10)
        assert recorded == []
        await asyncio.to_thread(postgres.start)
        assert await wait_for(lambda: any(event.linkedid == linkedid for event in recorded), timeout=60)
        await bus.drain()
    (record,) = await _rows(postgres.url, CallRecord)
    assert record.linkedid == linkedid
    assert record.outcome == "answered"
    assert record.agent == SEAT
    assert record.wait_time is not None
    assert record.talk_time is not None
    assert record.talk_time >= 8.0
    assert [event.linkedid for event in recorded] == [linkedid]
    assert await _rows(postgres.url, ServiceRecord, linkedid=linkedid, type=RecordType.CALLBACK_VISIT) == []
    lines = [line for line in journal.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert lines == []
    messages = [record.getMessage() for record in caplog.records]
    assert len([text for text in messages if text.startswith("database unavailable")]) == 1, messages
    assert len([text for text in messages if text.startswith("database back")]) == 1, messages
    failing = [r for r in caplog.records if r.name.startswith("callcenter.calls") and r.exc_info]
    assert failing == []
