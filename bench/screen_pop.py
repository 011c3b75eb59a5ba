"""Screen-pop benchmark: from the AMI event that rings an agent's phone to the caller's file on the agent's page.

What one pop goes through, in one process on one uvloop event loop, as in the engine:

1. an ``AgentCalled`` AMI message into the engine's own live service (``LiveService._on_event``: the pure reducer
   ``callcenter.ami.reducer.apply``, then ``CallOffered`` on the bus), which is what the AMI connection feeds;
2. the screen-pop (``crm_bridge.screenpop.ScreenPop``): the customer files of the calling number
   (``crm_bridge.popquery.PopReader``: three indexed statements on one pooled connection, on SQLite in one trip to
   the driver's thread, on PostgreSQL in one statement) and its last calls from ``call_records`` through the calls'
   port (``calls.reads.CallReads``: one indexed statement, one more trip), the IVR path and the wait from memory,
   then JSON and the hub;
3. the real aiohttp websocket route on 127.0.0.1, and a real aiohttp websocket client logged in as the ringing
   agent (bearer token), which notes when the frame arrives.

The time measured is from just before step 1 to the client's receipt of the frame. The CRM holds N customers made by
``callcenter_devtools.seed`` (default 1,000,000; ``--quick`` 100,000) and N/4 earlier calls from a pool of their
numbers, so most pops have a history; one caller in ten is unknown (the new-customer form). Both backends run in the
same invocation: SQLite (the seeded file is cached under /var/tmp/callcenter-bench, keyed by N, so reruns skip
seeding) and PostgreSQL (``CC_BENCH_POSTGRES_URL``, in a schema of its own that is dropped afterwards).

Two phases per backend:

- **one at a time**: each pop waits for the previous one's frame: the latency of a pop with nothing else going on,
  with a breakdown (the database read, the payload's assembly, hub, and everything outside the screen-pop: reducer,
  bus, socket, client);
- **paced**: pops arrive at random (Poisson) at ``--rate`` per second (default 20: 72,000 offered calls an hour, a very
  big center) over 20 agents' pages, so pops sometimes overlap and the loop sometimes idles between them.

The last line is ``p99_ms_sqlite=X p99_ms_postgres=Y``, the p99 of the paced phase. See docs/benchmarks.md.

Usage: ``.venv/bin/python bench/screen_pop.py [--quick] [--customers N] [--backend both|sqlite|postgres]
[--json PATH] [--profile PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import hashlib
import json
import logging
import os
import platform
import pstats
import random
import resource
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import uvloop  # noqa: E402
from aiohttp import WSMsgType, web  # noqa: E402
from argon2 import PasswordHasher  # noqa: E402
from sqlalchemy import func, insert, select, text  # noqa: E402

from callcenter.ami.message import AmiMessage  # noqa: E402
from callcenter.auth.middleware import auth_middleware  # noqa: E402
from callcenter.auth.permissions import Role  # noqa: E402
from callcenter.auth.services import AuthService  # noqa: E402
from callcenter.bus import Bus  # noqa: E402
from callcenter.config import AuthConfig  # noqa: E402
from callcenter.db import MIGRATIONS_DIR, Database, mask_url  # noqa: E402
from callcenter.keys import AUTH, HUB  # noqa: E402
from callcenter.live import LiveService  # noqa: E402
from callcenter.web.errors import error_middleware  # noqa: E402
from callcenter.web.ws import Hub, ws_routes  # noqa: E402
from callcenter_devtools.seed import SeedOptions, seed  # noqa: E402
from calls.models import CallRecord  # noqa: E402
from calls.reads import CallReads  # noqa: E402
from calls.records import caller_tail  # noqa: E402
from crm_bridge.models import CustomerPhone  # noqa: E402
from crm_bridge.screenpop import ScreenPop  # noqa: E402
from crm_bridge.services import CrmService  # noqa: E402
from ivr_flows.events import IvrEnded  # noqa: E402
from seats.reads import SeatReads  # noqa: E402

CACHE_DIR = Path("/var/tmp/callcenter-bench")
# Part of the cache key: bump it when what this bench seeds changes.
DATA_VERSION = 1
SEED = 7
# The seeded data is relative to this instant, so that a cached file and a fresh PostgreSQL schema hold the same.
DATA_NOW = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
PG_URL = os.environ.get("CC_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
PASSWORD = "bench-screen-pop-password"  # noqa: S105
AGENTS = 20
GENERAL = "general"
EXPERT = "expert"
UNKNOWN_SHARE = 0.1
CALLER_POOL_MAX = 50_000
INSERT_CHUNK = 5_000
FRAME_TIMEOUT = 10.0
# The loop-lag ticker's period (seconds).
TICK = 0.005


@dataclass(frozen=True)
class Plan:
    customers: int
    quick: bool
    sequential: int  # pops measured one at a time
    warmup: int  # pops before anything is measured
    rate: float  # pops per second in the paced phase
    paced_seconds: float

    @property
    def calls(self) -> int:
        return self.customers // 4


@dataclass
class Phase:
    backend: str
    label: str
    latency_ms: list[float] = field(default_factory=list)
    # One at a time only: where the time of each pop went.
    crm_ms: list[float] = field(default_factory=list)
    build_ms: list[float] = field(default_factory=list)
    handler_ms: list[float] = field(default_factory=list)
    frame_bytes: list[int] = field(default_factory=list)
    known: int = 0
    unknown: int = 0
    with_history: int = 0
    late_starts: int = 0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    load_average: float = 0.0  # the machine's 1-minute load average when the phase began
    involuntary_switches: int = 0
    max_loop_lag_ms: float = 0.0

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float:
            if not values:
                return float("nan")
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]

        outside = [t - h for t, h in zip(self.latency_ms, self.handler_ms, strict=False)] if self.handler_ms else []
        history = [b - c for b, c in zip(self.build_ms, self.crm_ms, strict=False)] if self.build_ms else []
        hub = [h - b for h, b in zip(self.handler_ms, self.build_ms, strict=False)] if self.handler_ms else []
        return {
            "backend": self.backend,
            "phase": self.label,
            "pops": len(self.latency_ms),
            "p50_ms": pct(self.latency_ms, 50),
            "p95_ms": pct(self.latency_ms, 95),
            "p99_ms": pct(self.latency_ms, 99),
            "max_ms": max(self.latency_ms, default=float("nan")),
            "mean_ms": statistics.fmean(self.latency_ms) if self.latency_ms else float("nan"),
            "read_ms_p50": pct(self.crm_ms, 50),
            "read_ms_p99": pct(self.crm_ms, 99),
            "payload_ms_p50": pct(history, 50),
            "payload_ms_p99": pct(history, 99),
            "hub_ms_p50": pct(hub, 50),
            "hub_ms_p99": pct(hub, 99),
            "outside_ms_p50": pct(outside, 50),
            "outside_ms_p99": pct(outside, 99),
            "frame_kib_mean": statistics.fmean(self.frame_bytes) / 1024 if self.frame_bytes else float("nan"),
            "known": self.known,
            "unknown": self.unknown,
            "with_history": self.with_history,
            "late_starts": self.late_starts,
            "cpu_percent": 100 * self.cpu_seconds / self.wall_seconds if self.wall_seconds else float("nan"),
            # The process's CPU (every thread: the loop and the SQLite driver's) per pop: steadier than the latency
            # on a shared machine.
            "cpu_ms_per_pop": 1000 * self.cpu_seconds / len(self.latency_ms) if self.latency_ms else float("nan"),
            "load_average": self.load_average,
            "involuntary_switches": self.involuntary_switches,
            "max_loop_lag_ms": self.max_loop_lag_ms,
        }


class NoConnection:
    """LiveService's AMI connection, never started: the bench calls the event handler itself."""

    connected = True

    def __init__(self, **_handlers: object) -> None:
        pass


def say(message: str) -> None:
    print(message, flush=True)


# -- the data -------------------------------------------------------------------------------------------------


async def _phone_keys(database: Database, count: int, rng: random.Random) -> list[str]:
    """Lookup keys of up to ``count`` phone numbers of seeded customers, drawn at random."""
    async with database.session() as session:
        top = int(await session.scalar(select(func.max(CustomerPhone.id))) or 0)
        keys: list[str] = []
        ids = rng.sample(range(1, top + 1), min(count, top)) if top else []
        for start in range(0, len(ids), INSERT_CHUNK):
            chunk = ids[start : start + INSERT_CHUNK]
            keys.extend(await session.scalars(select(CustomerPhone.normalized).where(CustomerPhone.id.in_(chunk))))
    return keys


def caller_id(key: str) -> str:
    # The trunk presents numbers as E.164 with the plus; the call records keep them as presented.
    return "+" + key


def unknown_caller(rng: random.Random) -> str:
    return f"+86170{rng.randrange(10**8):08d}"


async def _seed_calls(database: Database, plan: Plan, say_progress: Callable[[str], None]) -> None:
    """Earlier calls from a pool of the customers' numbers (about 5 each) and from unknown numbers."""
    rng = random.Random(SEED + 1)
    pool = await _phone_keys(database, min(CALLER_POOL_MAX, max(1, plan.calls // 5)), rng)
    table = CallRecord.__table__
    outcomes = ("answered", "answered", "answered", "abandoned", "voicemail")
    choices = ("fault", "business", "repair", "complaint", "product_info", None)
    written = 0
    while written < plan.calls:
        rows = []
        for number in range(written, min(plan.calls, written + INSERT_CHUNK)):
            started = DATA_NOW - timedelta(seconds=rng.random() * 180 * 86_400)
            outcome = outcomes[rng.randrange(len(outcomes))]
            caller = unknown_caller(rng) if rng.random() < UNKNOWN_SHARE or not pool else caller_id(rng.choice(pool))
            rows.append(
                {
                    "linkedid": f"seed-{number}",
                    "direction": "inbound",
                    "caller_number": caller,
                    "caller_tail": caller_tail(caller),
                    "caller_name": "",
                    "did": "4000",
                    "started_at": started,
                    "ended_at": started + timedelta(seconds=30 + rng.random() * 600),
                    "outcome": outcome,
                    "ivr_flow": "hotline",
                    "ivr_outcome": "queued",
                    "ivr_choice": choices[rng.randrange(len(choices))],
                    "ivr_path": "[]",
                    "queues": '["general"]',
                    "segments": "[]",
                    "wait_time": rng.random() * 60,
                    "talk_time": None if outcome != "answered" else rng.random() * 600,
                    "agent": None if outcome != "answered" else f"PJSIP/{1001 + rng.randrange(AGENTS)}",
                    "expert": None,
                    "handoff_notes": None,
                    "recording_ids": "[]",
                    "service_record_id": None,
                    "source": "live",
                    "created_at": started,
                }
            )
        async with database.engine.begin() as connection:
            await connection.execute(insert(table), rows)
        written += len(rows)
        if written % 100_000 < INSERT_CHUNK or written == plan.calls:
            say_progress(f"  {written}/{plan.calls} call records")


async def _fill(database: Database, plan: Plan) -> None:
    began = time.monotonic()
    report = await seed(
        database,
        SeedOptions(customers=plan.customers, seed=SEED, now=DATA_NOW),
        progress=lambda line: say(f"  {line}"),
    )
    say(f"  seeded {report.summary()}")
    await _seed_calls(database, plan, say)
    async with database.engine.begin() as connection:
        # What autovacuum (PostgreSQL) or the operator (SQLite) would have done on a database this size.
        await connection.execute(text("ANALYZE"))
    say(f"  data ready in {time.monotonic() - began:.0f} s")


def schema_fingerprint() -> str:
    """A digest of the migration scripts: a migration added or edited in place makes a new cache file."""
    digest = hashlib.sha256(f"seed={SEED}".encode())
    for script in sorted(MIGRATIONS_DIR.glob("versions/*.py")):
        digest.update(script.name.encode() + b"\0" + script.read_bytes())
    return digest.hexdigest()[:12]


def _read_through(path: Path) -> int:
    size = 0
    with path.open("rb") as file:
        while chunk := file.read(8 * 2**20):
            size += len(chunk)
    return size


async def open_sqlite(plan: Plan) -> Database:
    """The seeded SQLite file of this size, from the cache or made (then cached) now."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cached = CACHE_DIR / f"screen_pop-v{DATA_VERSION}-{schema_fingerprint()}-{plan.customers}.sqlite3"
    if not cached.exists():
        # A file of the same size made under an older schema is of no more use; it may be a gigabyte.
        for stale in CACHE_DIR.glob(f"screen_pop-*-{plan.customers}.sqlite3*"):
            say(f"sqlite: removing {stale.name} (another schema or data version)")
            stale.unlink()
        partial = cached.with_name(cached.name + ".partial")
        for leftover in CACHE_DIR.glob(partial.name + "*"):
            leftover.unlink()
        say(f"sqlite: seeding {plan.customers} customers into {partial} (cached for the next runs)")
        database = Database(f"sqlite+aiosqlite:///{partial}")
        await database.open()
        try:
            await database.migrate()
            await _fill(database, plan)
        finally:
            await database.close()
        partial.rename(cached)
    else:
        say(f"sqlite: {cached} (cached, seeding skipped)")
    # Read once, so that the OS page cache holds the file as on a server that has been running a while.
    began = time.monotonic()
    size = await asyncio.to_thread(_read_through, cached)
    say(f"sqlite: {size / 2**20:.0f} MiB read into the page cache in {time.monotonic() - began:.1f} s")
    database = Database(f"sqlite+aiosqlite:///{cached}")
    await database.open()
    # Migrations added since the file was cached (none usually).
    await database.migrate()
    return database


def _admin_dsn() -> str:
    return PG_URL.replace("postgresql+asyncpg://", "postgresql://", 1)


async def create_schema() -> str:
    schema = f"bench_screen_pop_{secrets.token_hex(4)}"
    try:
        connection = await asyncpg.connect(_admin_dsn(), timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise SystemExit(
            f"PostgreSQL not reachable at {mask_url(PG_URL)} ({type(exc).__name__}: {exc}); "
            "set CC_BENCH_POSTGRES_URL or run with --backend sqlite"
        ) from exc
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await connection.close()
    return schema


async def open_postgres(plan: Plan, schema: str) -> Database:
    say(f"postgresql: seeding {plan.customers} customers into schema {schema} of {mask_url(PG_URL)}")
    database = Database(PG_URL, schema=schema)
    await database.open()
    try:
        await database.migrate()
        await _fill(database, plan)
    except BaseException:
        await database.close()
        raise
    return database


async def drop_schema(schema: str) -> None:
    connection = await asyncpg.connect(_admin_dsn(), timeout=5)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


# -- the pipeline ------------------------------------------------------------------------------------------------


class Engine:
    """The engine's parts on the screen-pop's path, with the agents' pages connected over loopback."""

    def __init__(self, database: Database, auth: AuthService, seats: SeatReads) -> None:
        self.database = database
        self.auth = auth
        self.bus = Bus()
        self.live = LiveService(NoConnection, self.bus)  # type: ignore[arg-type]
        self.hub = Hub()
        self.crm = CrmService(database)
        self.screen = ScreenPop(
            self.crm,
            database,
            self.bus,
            self.hub,
            lambda: self.live.model,
            history=CallReads(database),
            seats=seats,
            expert_queue=EXPERT,
        )
        self.waiting: dict[str, asyncio.Future[tuple[float, str]]] = {}
        self.runner: web.AppRunner | None = None
        self.session: aiohttp.ClientSession | None = None
        self.pages: list[aiohttp.ClientWebSocketResponse] = []
        self.readers: list[asyncio.Task[None]] = []
        self.timing: dict[str, float] = {}
        self._instrument()

    def _instrument(self) -> None:
        """Times the database read and the whole payload of each pop (wrappers on this instance only)."""
        read, build = self.screen.reader.read, self.screen.build

        async def timed_read(number: str) -> Any:
            began = time.perf_counter()
            try:
                return await read(number)
            finally:
                self.timing["crm"] = time.perf_counter() - began

        async def timed_build(linkedid: str, queue: str) -> dict[str, Any]:
            began = time.perf_counter()
            try:
                return await build(linkedid, queue)
            finally:
                self.timing["build"] = time.perf_counter() - began

        self.screen.reader.read = timed_read  # type: ignore[method-assign]
        self.screen.build = timed_build  # type: ignore[method-assign]

    async def start(self, tokens: list[str]) -> None:
        self.screen.start()
        app = web.Application(middlewares=[error_middleware, auth_middleware])
        app[AUTH] = self.auth
        app[HUB] = self.hub
        app.add_routes(ws_routes)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.session = aiohttp.ClientSession()
        for token in tokens:
            page = await self.session.ws_connect(
                f"http://127.0.0.1:{port}/api/v1/ws", headers={"Authorization": f"Bearer {token}"}, max_msg_size=0
            )
            self.pages.append(page)
            self.readers.append(asyncio.create_task(self._read(page)))
        async with asyncio.timeout(10):
            while self.hub.connections < len(tokens):
                await asyncio.sleep(0.01)

    async def _read(self, page: aiohttp.ClientWebSocketResponse) -> None:
        async for message in page:
            if message.type is not WSMsgType.TEXT:
                break
            arrived = time.perf_counter()
            if not message.data.startswith('{"type": "screen_pop"'):
                continue
            # The page parses the frame; so does the bench, to find the call it belongs to.
            body = json.loads(message.data)
            waiter = self.waiting.pop(str(body.get("linkedid")), None)
            if waiter is not None and not waiter.done():
                waiter.set_result((arrived, message.data))

    async def close(self) -> None:
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        for page in self.pages:
            await page.close()
        if self.session is not None:
            await self.session.close()
        await self.hub.close()
        if self.runner is not None:
            await self.runner.cleanup()
        self.screen.close()

    async def pop(self, linkedid: str, number: str, agent: int, phase: Phase | None) -> None:
        """One call: it arrives and queues (not timed), rings ``agent`` (timed to the frame), then hangs up."""
        live, interface = self.live, f"PJSIP/{1001 + agent}"
        caller = f"PJSIP/trunk-{linkedid}"
        live._on_event(
            AmiMessage.of(
                ("Event", "Newchannel"),
                Channel=caller,
                ChannelState="4",
                ChannelStateDesc="Ring",
                CallerIDNum=number,
                CallerIDName="Caller <b>name</b>",
                Context="from-pstn",
                Exten="4000",
                Uniqueid=linkedid,
                Linkedid=linkedid,
            )
        )
        live._on_event(
            AmiMessage.of(
                ("Event", "QueueCallerJoin"),
                Queue=GENERAL,
                Channel=caller,
                Uniqueid=linkedid,
                Linkedid=linkedid,
                CallerIDNum=number,
                CallerIDName="Caller",
                Position="1",
                Count="1",
            )
        )
        self.bus.publish(
            IvrEnded(
                uniqueid=linkedid,
                linkedid=linkedid,
                caller_number=number,
                flow="hotline",
                outcome="queued",
                path=[
                    _path_entry("welcome", "menu", "2", "chosen", "fault"),
                    _path_entry("fault", "menu", "1", "chosen", "to_queue"),
                    _path_entry("to_queue", "queue", None, "queued", GENERAL),
                ],
                language="zh",
                queue=GENERAL,
                priority=5,
                choice="fault",
                voicemails=[],
                started_at=0.0,
                ended_at=0.0,
                duration=0.0,
                error=None,
            )
        )
        arrived: asyncio.Future[tuple[float, str]] = asyncio.get_running_loop().create_future()
        self.waiting[linkedid] = arrived
        ring = AmiMessage.of(
            ("Event", "AgentCalled"),
            Queue=GENERAL,
            Interface=interface,
            MemberName=interface,
            DestChannel=f"{interface}-{linkedid}",
            Uniqueid=linkedid,
            Linkedid=linkedid,
        )
        began = time.perf_counter()
        live._on_event(ring)
        at, data = await asyncio.wait_for(arrived, FRAME_TIMEOUT)
        if phase is not None:
            phase.latency_ms.append((at - began) * 1000)
            phase.frame_bytes.append(len(data.encode()))
            if '"unknown_caller": true' in data:
                phase.unknown += 1
            else:
                phase.known += 1
            if '"history": []' not in data:
                phase.with_history += 1
        live._on_event(AmiMessage.of(("Event", "AgentRingNoAnswer"), Queue=GENERAL, Interface=interface))
        # The caller leaves the queue (as on an answer or a hang-up), so the queue's waiting list stays short.
        live._on_event(
            AmiMessage.of(
                ("Event", "QueueCallerLeave"), Queue=GENERAL, Channel=caller, Uniqueid=linkedid, Linkedid=linkedid
            )
        )
        live._on_event(AmiMessage.of(("Event", "Hangup"), Channel=caller, Uniqueid=linkedid, Linkedid=linkedid))


def _path_entry(node: str, step: str, digits: str | None, result: str, detail: str) -> dict[str, Any]:
    """One entry of an IVR path, with the engine's fields (ivr_flows.steps.CallState.trace)."""
    return {
        "flow": "hotline",
        "node": node,
        "step": step,
        "index": 0,
        "digits": digits,
        "result": result,
        "detail": detail,
        "monotonic": 0.0,
        "at": 0.0,
    }


@contextlib.asynccontextmanager
async def measuring(phase: Phase) -> AsyncIterator[None]:
    """Wall and CPU time of the phase, and what says whether the machine let it run: the load average, the
    process's involuntary context switches (the kernel took the CPU away), and the event loop's worst lag."""
    gc.collect()
    phase.load_average = os.getloadavg()[0]
    lags: list[float] = []

    async def tick() -> None:
        while True:
            planned = time.perf_counter() + TICK
            await asyncio.sleep(TICK)
            lags.append(time.perf_counter() - planned)

    ticker = asyncio.create_task(tick())
    switches = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        yield
    finally:
        phase.wall_seconds, phase.cpu_seconds = time.perf_counter() - wall0, time.process_time() - cpu0
        phase.involuntary_switches = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw - switches
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        phase.max_loop_lag_ms = 1000 * max(lags, default=0.0)


async def run_backend(
    backend: str,
    database: Database,
    auth: AuthService,
    seats: SeatReads,
    tokens: list[str],
    plan: Plan,
    profile: str | None,
) -> list[Phase]:
    rng = random.Random(SEED + 2)
    keys = await _phone_keys(database, min(CALLER_POOL_MAX, max(1, plan.calls // 5)), random.Random(SEED + 1))
    # The callers of the measured pops: mostly customers who called before (the call records' pool), some unknown.
    numbers = [
        unknown_caller(rng) if rng.random() < UNKNOWN_SHARE else caller_id(rng.choice(keys))
        for _ in range(plan.warmup + plan.sequential + int(plan.rate * plan.paced_seconds * 1.5) + 10)
    ]
    engine = Engine(database, auth, seats)
    await engine.start(tokens)
    run = secrets.token_hex(3)
    phases: list[Phase] = []
    try:
        for index in range(plan.warmup):
            await engine.pop(f"{run}-w{index}", numbers[index], index % AGENTS, None)
        used = plan.warmup

        one = Phase(backend, "one at a time")
        profiler = cProfile.Profile() if profile and backend == "sqlite" else None
        async with measuring(one):
            if profiler is not None:
                profiler.enable()
            for index in range(plan.sequential):
                engine.timing.clear()
                await engine.pop(f"{run}-s{index}", numbers[used + index], index % AGENTS, one)
                one.crm_ms.append(engine.timing.get("crm", 0.0) * 1000)
                one.build_ms.append(engine.timing["build"] * 1000)
                one.handler_ms.append((engine.screen.last_latency or 0.0) * 1000)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile)
        used += plan.sequential
        phases.append(one)

        paced = Phase(backend, f"paced, {plan.rate:.0f} pops/s")
        tasks: list[asyncio.Task[None]] = []
        async with measuring(paced):
            due = begin = time.perf_counter()
            index = 0
            while due - begin < plan.paced_seconds:
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.005:
                    paced.late_starts += 1
                tasks.append(
                    asyncio.create_task(engine.pop(f"{run}-p{index}", numbers[used + index], index % AGENTS, paced))
                )
                index += 1
                due += rng.expovariate(plan.rate)
            await asyncio.gather(*tasks)
        phases.append(paced)
    finally:
        await engine.close()
    return phases


async def make_auth(directory: Path) -> tuple[Database, AuthService, list[str]]:
    """The agents' accounts, in a throwaway database of their own (logins are not what is measured)."""
    database = Database(f"sqlite+aiosqlite:///{directory / 'auth.sqlite3'}")
    await database.open()
    await database.migrate()
    auth = AuthService(
        database,
        AuthConfig(address_burst=10_000, address_per_minute=10_000.0),
        password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
    tokens = []
    for agent in range(AGENTS):
        name = f"agent{1001 + agent}"
        await auth.create_user(name, PASSWORD, roles=[Role.AGENT], extension=str(1001 + agent))
        token, _ = await auth.login(name, PASSWORD)
        tokens.append(token)
    return database, auth, tokens


def report(phases: list[Phase]) -> None:
    say("")
    say(
        f"{'backend':<11} {'phase':<22} {'pops':>5} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'CPU':>5} {'CPU ms/pop':>10} {'frame KiB':>9} {'known/unknown':>13} {'history':>7}"
    )
    for phase in phases:
        s = phase.summary()
        say(
            f"{s['backend']:<11} {s['phase']:<22} {s['pops']:>5} {s['p50_ms']:>7.2f} {s['p95_ms']:>7.2f} "
            f"{s['p99_ms']:>7.2f} {s['max_ms']:>7.2f} {s['cpu_percent']:>4.0f}% {s['cpu_ms_per_pop']:>10.2f} "
            f"{s['frame_kib_mean']:>9.1f} {s['known']:>6}/{s['unknown']:<6} {s['with_history']:>7}"
        )
        if phase.crm_ms:
            say(
                f"{'':<11} where the time goes (p50 / p99 ms): "
                f"database read (files + calls) {s['read_ms_p50']:.2f} / {s['read_ms_p99']:.2f}; "
                f"payload {s['payload_ms_p50']:.2f} / {s['payload_ms_p99']:.2f}; "
                f"JSON + hub {s['hub_ms_p50']:.2f} / {s['hub_ms_p99']:.2f}; reducer, bus, socket, client "
                f"{s['outside_ms_p50']:.2f} / {s['outside_ms_p99']:.2f}"
            )
        say(
            f"{'':<11} the machine: load average {s['load_average']:.1f}, {s['involuntary_switches']} involuntary "
            f"context switches, event loop's worst lag {s['max_loop_lag_ms']:.1f} ms"
            + (f", {phase.late_starts} pops started more than 5 ms late" if phase.late_starts else "")
        )


async def main_async(plan: Plan, backends: list[str], json_path: str | None, profile: str | None) -> int:
    loop = asyncio.get_running_loop()
    say(
        f"screen-pop bench: {plan.customers:,} customers"
        + (" (fewer than the full run's 1,000,000)" if plan.quick else "")
        + f", {plan.calls:,} earlier calls, {AGENTS} agents' pages, loop {type(loop).__module__}, "
        f"{plan.sequential} pops one at a time, then {plan.rate:.0f} pops/s for {plan.paced_seconds:.0f} s"
    )
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="cc-bench-screen-pop-") as directory:
        auth_db, auth, tokens = await make_auth(Path(directory))
        # Who is on which phone: the agents' own extensions (nobody is logged in on a seat), in their database.
        seats = SeatReads(auth_db)
        try:
            for backend in backends:
                if backend == "sqlite":
                    database = await open_sqlite(plan)
                    try:
                        phases += await run_backend(backend, database, auth, seats, tokens, plan, profile)
                    finally:
                        await database.close()
                    continue
                schema = await create_schema()
                try:
                    database = await open_postgres(plan, schema)
                    try:
                        phases += await run_backend(backend, database, auth, seats, tokens, plan, profile)
                    finally:
                        await database.close()
                finally:
                    await drop_schema(schema)
                    say(f"postgresql: schema {schema} dropped")
        finally:
            await auth_db.close()
    report(phases)
    if profile and "sqlite" in backends:
        say(f"\ncProfile of the SQLite one-at-a-time phase in {profile}; the top by own time:")
        stats = pstats.Stats(profile)
        stats.sort_stats("tottime").print_stats(12)
    if json_path:
        document = {
            "plan": asdict(plan),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "phases": [phase.summary() for phase in phases],
        }
        Path(json_path).write_text(json.dumps(document, indent=2), encoding="utf-8")
        say(f"JSON written to {json_path}")
    paced = {phase.backend: phase.summary()["p99_ms"] for phase in phases if phase.label.startswith("paced")}
    say(
        " ".join(
            f"p99_ms_{name}={paced[backend]:.2f}" if backend in paced else f"p99_ms_{name}=not-run"
            for backend, name in (("sqlite", "sqlite"), ("postgresql", "postgres"))
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100,000 customers, fewer pops (about a minute or two)")
    parser.add_argument("--customers", type=int, help="customers to seed (default 1,000,000; --quick 100,000)")
    parser.add_argument("--backend", choices=["both", "sqlite", "postgres"], default="both")
    parser.add_argument("--rate", type=float, default=20.0, help="pops per second in the paced phase")
    parser.add_argument("--json", help="also write every number to this file")
    parser.add_argument("--profile", help="cProfile the SQLite one-at-a-time phase into this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    customers = args.customers or (100_000 if args.quick else 1_000_000)
    plan = Plan(
        customers=customers,
        quick=args.quick or customers < 1_000_000,
        sequential=500 if args.quick else 2_000,
        warmup=100 if args.quick else 300,
        rate=args.rate,
        paced_seconds=10.0 if args.quick else 40.0,
    )
    backends = {"both": ["sqlite", "postgresql"], "sqlite": ["sqlite"], "postgres": ["postgresql"]}[args.backend]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main_async(plan, backends, args.json, args.profile))


if __name__ == "__main__":
    sys.exit(main())
