"""The chaos tier's rig: the engine as a process of its own, the agents logged in through its API with their SIPp
phones, a caller a second, and the counting once the load has drained (callcenter_devtools.chaos)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from callcenter.config import Config
from callcenter_devtools.chaos import (
    AgentPhone,
    Audit,
    CallTrace,
    EngineApi,
    EngineProcess,
    Load,
    ProcessUsage,
    User,
    aborted_calls,
    asterisk_channels,
    audit,
    create_users,
    engine_config,
    live_mismatch,
    queue_members,
    read_tables,
    stop_asterisk,
)
from callcenter_devtools.sandbox import Sandbox
from callcenter_devtools.sipp import SippProcess
from tests.integration.conftest import AGENT_PORTS, PHONE_IP, PSTN

AGENTS = tuple(f"10{n:02d}" for n in range(1, 9))
# 1001 and 1002 keep the ports the session gives them; the others follow.
AGENT_CONTACT_PORTS = {ext: AGENT_PORTS.get(ext, 5180 + int(ext[2:])) for ext in AGENTS}
CALLER_PORTS = (5290, 5291)
PASSWORD = "chaos-agent-password-1"
# One caller a second, each talking 9 s after the answer (the agent hears about 8.5 s of it).
RATE = 1.0
TALK_MS = 9000
# After a fault the engine has this long to write every record and index every recording.
SETTLE_S = 45.0


@dataclass
class Rig:
    """One test's engine, phones and logins (``agents``: each agent's API session); the test sets
    ``fault_started`` and ``fault_ended`` around its fault."""

    config: Config  # the engine's
    sandbox: Sandbox
    engine: EngineProcess
    load: Load
    supervisor: EngineApi
    agents: list[EngineApi]
    fault_started: float = 0.0
    fault_ended: float = 0.0
    usage_before: ProcessUsage | None = None

    def call(self, name: str, prefix: str, calls: int, port: int) -> SippProcess:
        """``calls`` calls numbered ``prefix`` + 1, 2, ... (prefixes of one rig must not be prefixes of each other)."""
        return self.load.call(
            name,
            self.config.sip.dids[0],
            prefix=prefix,
            calls=calls,
            rate=RATE,
            talk_ms=TALK_MS,
            local_ip=PSTN,
            local_port=port,
        )

    def traces(self) -> dict[str, CallTrace]:
        return self.load.traces()

    def in_flight(self, at: float) -> set[str]:
        """The calls placed before ``at`` that had not ended by then."""
        return {
            number
            for number, trace in self.traces().items()
            if trace.started is not None and trace.started < at and (trace.ended is None or trace.ended > at)
        }

    async def wait_started(self, count: int, within: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and len(self.traces()) < count:
            await asyncio.sleep(0.2)
        assert len(self.traces()) >= count, f"only {len(self.traces())} calls placed"

    def measure(self) -> ProcessUsage:
        self.usage_before = self.engine.usage()
        return self.usage_before

    async def drain(self, within: float = 120.0) -> None:
        """Until every caller process has exited and no agent phone has a call left."""
        deadline = time.monotonic() + within
        for caller in self.load.callers:
            remaining = max(1.0, deadline - time.monotonic())
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(caller.proc.wait, remaining)
        while time.monotonic() < deadline and asterisk_channels(self.sandbox):
            await asyncio.sleep(0.5)

    async def settle(self, may_be_cut: frozenset[str] = frozenset()) -> Audit:
        """Audits until every call is right or SETTLE_S passed (records and recordings may come late)."""
        deadline = time.monotonic() + SETTLE_S
        while True:
            tables = await read_tables(self.config.database_url)
            result = audit(self.traces(), tables, recordings_dir=self.config.recordings_dir, may_be_cut=may_be_cut)
            if not result.problems or time.monotonic() > deadline:
                return result
            await asyncio.sleep(2.0)

    async def live_problems(self) -> list[str]:
        status, body = await self.supervisor.call("GET", "/api/v1/calls")
        assert status == 200, body
        problems = live_mismatch(body["items"], asterisk_channels(self.sandbox))
        general = self.config.queues.general
        in_asterisk = queue_members(self.sandbox, general)
        expected = {f"PJSIP/{ext}" for ext in AGENTS}
        if in_asterisk != expected:
            problems.append(f"Asterisk's {general} members are {sorted(in_asterisk)}, expected {sorted(expected)}")
        # Nobody is on a call any more: every seat is logged in to the queue and free in the engine's model.
        status, seats = await self.supervisor.call("GET", "/api/v1/agents")
        assert status == 200, seats
        for seat in seats["items"]:
            if seat["interface"] not in expected:
                continue
            queues = {item["queue"] for item in seat["queues"]}
            if seat["state"] != "available" or seat["linkedid"] or general not in queues:
                problems.append(
                    f"the engine has seat {seat['interface']} {seat['state']} on {seat['linkedid']} in {sorted(queues)}"
                    " while Asterisk has no call"
                )
        return problems

    async def ivr_problems(self) -> list[str]:
        """Calls placed well before the fault went through the engine's IVR (a FastAGI session it refused, say
        for a wrong secret, would send every call down the dialplan's fallback and still reach an agent)."""
        tables = await read_tables(self.config.database_url)
        early = {n for n, t in self.traces().items() if t.started and t.started < self.fault_started - 2.0}
        missed = sorted(row.caller_number for row in tables.calls if row.caller_number in early and not row.ivr_flow)
        return [f"{number}: placed before the fault, no IVR flow in its record" for number in missed]

    def phone_problems(self) -> list[str]:
        """Calls a SIPp phone aborted or gave up on (agents included)."""
        return aborted_calls([*self.load.callers, *self.load.agents.values()])

    def usage_problems(self) -> list[str]:
        """Engine RSS and open files against their level before the fault (under the same load)."""
        before = self.usage_before
        assert before is not None, "measure() before the fault"
        after = self.engine.usage()
        problems = []
        # The database pool keeps up to 5 connections, opened as the work after a fault needs them; a SQLite one
        # holds 3 descriptors (the file, its -wal and -shm): up to 15 more without any leak.
        if after.open_files > before.open_files + 20:
            problems.append(f"open files {before.open_files} before the fault, {after.open_files} after")
        if after.rss_kib > before.rss_kib * 1.25 + 20 * 1024:
            problems.append(f"RSS {before.rss_kib} KiB before the fault, {after.rss_kib} KiB after")
        return problems


@contextlib.asynccontextmanager
async def open_rig(
    chaos_config: Config, sandbox: Sandbox, workdir: Path, *, ami_port: int | None = None
) -> AsyncIterator[Rig]:
    """Starts the engine process, logs every agent in through its API and starts their phones; stops all of it."""
    # A test that restarted Asterisk and failed half-way may have left it stopped.
    if sandbox.running_pid() is None:
        stop_asterisk(sandbox)
        sandbox.start()
    flows = workdir / "flows"
    flows.mkdir(parents=True)
    (flows / "main.yaml").write_text(FLOW, encoding="utf-8")
    config = engine_config(
        chaos_config,
        workdir / "data",
        ami_port=ami_port,
        calls={"reconcile_interval": 5.0},
        flows={"directory": flows, "prepare_prompts": False},
    )
    boss = User(f"chaos-boss-{secrets.token_hex(3)}", PASSWORD, "supervisor")
    users = [User(f"chaos-agent-{ext}", PASSWORD, "agent", ext) for ext in AGENTS]
    await create_users(config, [boss, *users])
    engine = EngineProcess(config, workdir / "engine")
    load = Load(config.sip.host, config.sip.port, workdir / "sipp")
    apis: list[EngineApi] = []
    try:
        engine.start()
        await engine.wait_healthy(60)
        supervisor = await EngineApi.login(engine.base_url, boss.username, boss.password)
        apis.append(supervisor)
        general = config.queues.general
        for user in users:
            api = await EngineApi.login(engine.base_url, user.username, user.password)
            apis.append(api)
            status, seat = await api.call("POST", "/api/v1/agents/me/login", {"queues": [{"queue": general}]})
            assert status == 200, seat
        for ext in AGENTS:
            load.agent(_phone(ext))
        deadline = time.monotonic() + 10
        expected = {f"PJSIP/{ext}" for ext in AGENTS}
        while time.monotonic() < deadline and queue_members(sandbox, general) != expected:
            await asyncio.sleep(0.2)
        assert queue_members(sandbox, general) == expected
        yield Rig(config, sandbox, engine, load, supervisor, apis[1:])
    finally:
        load.close()
        for api in apis:
            await api.close()
        engine.stop()
        for ext in AGENTS:
            for queue in (chaos_config.queues.general, chaos_config.queues.expert):
                sandbox.cli(f"queue remove member PJSIP/{ext} from {queue}", check=False)


def _phone(ext: str) -> AgentPhone:
    return AgentPhone(ext, PHONE_IP, AGENT_CONTACT_PORTS[ext])


# Every caller is queued at once to the general queue: the faults, not the menus, are under test.
FLOW = """\
name: main
description: The chaos tests' flow, which queues every caller at once.
language: en
languages: [en]
start: queue
nodes:
  queue:
    queue: {queue: general, reason: agent}
"""
