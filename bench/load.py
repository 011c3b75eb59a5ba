"""The whole system under load: the real Asterisk 22 sandbox, the engine as its own process, SIPp agents and
callers, and what each call costs the engine beside what it costs Asterisk; then the same calls through the same
menu and queue in dialplan alone (the named peer: Asterisk without the engine), in the same run.

The bench provisions everything in a temporary directory: a config (SIP 5260, AMI 5238, FastAGI 4673, web 8281;
agents 1001.. whose static contacts are all one SIPp on 127.0.0.3:5401), the shipped flows with their hours open
around the clock, a data directory with its SQLite file, or with ``--database postgresql`` a PostgreSQL of its own
(PgSandbox: initdb on a free loopback port, removed at the end). It starts the sandbox's Asterisk, the engine
(``callcenter run``), the agents (each logged in to the general queue through the engine's API; their one SIPp
answers every call ringing them and talks with sip-tester's speech capture) and SIPp callers from 127.0.0.2 at a
rate and at most so many at once: each one hears the welcome, presses 2 in the main menu (fault consultation), hears the
"connecting" prompt, waits in the queue, is answered by an agent (Asterisk records the call), talks and hangs up.

Reported, per run: calls offered, completed (an agent phone answered and the caller hung up after its talk) and
failed (everything else, SIPp's aborted calls included); the call records, the complete full recordings and the
records with the IVR's flow in the engine's database against the calls; CPU ms per call of the engine and of
Asterisk (utime+stime from /proc, the CPU of the same processes idle over as long measured first and taken out:
the idle rates are printed); the queue wait the phones saw; the engine's RSS and open files before and after; the
p50/p99 AGI answer latency (``callcenter_agi_answer_seconds``: from the FastAGI connection to the engine's first
command). The pure-dialplan phase stops the engine, adds the same phones to the queue as dynamic members (CLI),
appends the menu in dialplan to the sandbox's extensions.conf (Background/WaitExten, Queue, the same MixMonitor
subroutine) and places the same calls to a DID of its own. Both phases then step the rate up (no cap on calls at
once, enough agents) until a step has a failed call: the capacity is the highest rate with none.

Usage: ``.venv/bin/python bench/load.py [--quick] [--database sqlite|postgresql] [--agents N] [--rate R]
[--concurrency N] [--calls N] [--talk S] [--steps R,R,...] [--no-baseline] [--soak MINUTES] [--json PATH]``.
Needs root (the chroot), ``sipp``, the sandbox (``callcenter asterisk install``) and no other Asterisk of the
sandbox running; it takes the sandbox's lock, as the tests do. The last line is
``engine_ms_per_call=X asterisk_ms_per_call=Y engine_vs_asterisk=R failed_calls=N capacity_ratio=C``
(see docs/benchmarks.md, "Whole system under load").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from callcenter.config import Config, Phone, load_config  # noqa: E402
from callcenter_devtools.chaos import (  # noqa: E402
    AgentPhone,
    EngineApi,
    EngineProcess,
    Load,
    ProcessUsage,
    User,
    aborted_calls,
    asterisk_channels,
    create_users,
    engine_config,
    queue_members,
    read_tables,
    stop_asterisk,
)
from callcenter_devtools.load import (  # noqa: E402
    MENU_KEY,
    MenuPrompts,
    bucket_delta,
    cpu_seconds,
    dialplan_menu,
    gauge_value,
    histogram_buckets,
    histogram_quantile,
    install_dialplan,
    menu_prompts,
    open_all_day_flows,
    profile_top,
)
from callcenter_devtools.pgsandbox import PgSandbox  # noqa: E402
from callcenter_devtools.sandbox import Sandbox  # noqa: E402
from callcenter_devtools.sipp import renumbered_dtmf  # noqa: E402
from ivr_flows.prompts import prompt_path  # noqa: E402

PORTS = {"sip": 5260, "ami": 5238, "agi": 4673, "web": 8281}
PSTN = "127.0.0.2"
PHONE_IP = "127.0.0.3"
# Every agent's static contact is this one SIPp: one process answers them all (a process per phone would cost the
# load generator far more CPU, each SIPp polling on its own).
AGENT_CONTACT_PORT = 5401
CALLER_PORT_BASE = 5300  # each run's callers on a port of their own
ENGINE_DID = "4000"
DIALPLAN_DID = "4990"
PASSWORD = "load-bench-password-1"  # noqa: S105 - users of the bench's own throwaway database
ANSWER_METRIC = "callcenter_agi_answer_seconds"
TASKS_METRIC = "callcenter_asyncio_tasks"
# After the last channel is gone: the engine writes the last records and recordings in this time (counted in the
# run's CPU, the idle rate taken out).
SETTLE_S = 3.0
# A key lands this long after its prompt started to listen (the welcome ends first).
KEY_MARGIN_MS = 1200
# The caller holds this long past the "connecting" prompt before the talk counts (the queue rings an agent).
RING_MARGIN_MS = 1000


@dataclass(frozen=True, slots=True)
class Plan:
    rate: float  # the measured run: calls a second...
    concurrency: int  # ...at most this many at once...
    calls: int  # ...this many calls...
    talk_s: float  # ...each talking this long once queued (the agent answers within about a second)
    steps: tuple[float, ...]  # the rates above ``rate`` tried for the capacity, in order
    step_s: float  # each step places calls for this long...
    step_talk_s: float  # ...with this much talk
    idle_s: float  # CPU of the idle processes measured over this long, before each phase
    agents: int


# Quick: the target's rate (5 calls/s, 60 at once), then steps that bracket where this 2-core machine gives out.
# A step places calls for as long as one call lasts (about 13 s), so that the calls at once reach their steady number.
QUICK = Plan(
    rate=5, concurrency=60, calls=100, talk_s=3, steps=(9, 13, 17), step_s=13, step_talk_s=3, idle_s=6, agents=90
)
# Full: the run (2 calls/s, 60 at once, 240 calls, 20 s of talk), then finer steps of longer batches.
FULL = Plan(
    rate=2,
    concurrency=60,
    calls=240,
    talk_s=20,
    steps=(5, 7, 9, 11, 13, 15),
    step_s=30,
    step_talk_s=3,
    idle_s=30,
    agents=80,
)


@dataclass
class Run:
    """One batch of calls at one rate, in one phase."""

    phase: str  # "engine" or "dialplan"
    rate: float
    limit: int
    offered: int
    placed: int = 0
    completed: int = 0
    failed: int = 0
    aborted: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)  # per process, over the run, idle not taken out
    ms_per_call: dict[str, float] = field(default_factory=dict)  # per process, idle taken out
    wait_p50_s: float | None = None  # the key to an agent's answer as the phones saw it ("connecting" prompt included)
    wait_p99_s: float | None = None
    records: int | None = None  # engine phase only: what its database holds for these calls
    records_with_ivr: int | None = None
    recordings: int | None = None
    answer_p50_ms: float | None = None
    answer_p99_ms: float | None = None

    @property
    def clean(self) -> bool:
        return self.failed == 0 and self.placed == self.offered


@dataclass
class Phase:
    name: str
    idle_cpu_pct: dict[str, float] = field(default_factory=dict)  # per process: CPU % of one core while idle
    runs: list[Run] = field(default_factory=list)
    capacity: float = 0.0  # the highest rate with no failed call (0: the first run failed)
    capacity_capped: bool = False  # no step failed: the capacity is at least this


@dataclass(frozen=True, slots=True)
class SoakSample:
    at: float  # seconds into the soak
    rss_kib: int
    open_files: int
    tasks: float | None  # the engine's callcenter_asyncio_tasks (None: an engine without it)

    def __str__(self) -> str:
        tasks = "?" if self.tasks is None else f"{self.tasks:.0f}"
        return f"RSS {self.rss_kib / 1024:.1f} MiB, {self.open_files} open files, {tasks} asyncio tasks"


def soak_verdict(samples: Sequence[SoakSample]) -> str:
    """Flat or not: the second quarter of the samples against the last (both under the same steady load; the first
    quarter is the warm-up). Growth allowed: RSS 10% + 10 MiB, 10 open files, tasks 10% + 10."""
    if len(samples) < 8:
        return f"too few samples ({len(samples)}) to judge"
    quarter = len(samples) // 4

    def mean(values: Sequence[float]) -> float:
        return sum(values) / len(values)

    checks = []
    series = {
        "RSS MiB": [sample.rss_kib / 1024 for sample in samples],
        "open files": [float(sample.open_files) for sample in samples],
        "asyncio tasks": [sample.tasks or 0.0 for sample in samples],
    }
    for label, values in series.items():
        before, after = mean(values[quarter : 2 * quarter]), mean(values[-quarter:])
        allowed = 10.0 if label == "open files" else before * 0.1 + 10
        flat = after - before <= allowed
        checks.append((flat, f"{label} {before:.1f} -> {after:.1f} ({'flat' if flat else 'GROWS'})"))
    verdict = "flat" if all(flat for flat, _ in checks) else "NOT flat"
    return f"{verdict}: " + "; ".join(text for _, text in checks) + f"; RSS trend {rss_trend(samples):+.1f} MiB/10 min"


def rss_trend(samples: Sequence[SoakSample]) -> float:
    """The RSS's least-squares slope after the warm-up quarter, in MiB per 10 minutes: a slow leak shows here even
    when the quarters' means stay within their allowance."""
    kept = samples[len(samples) // 4 :]
    if len(kept) < 2:
        return 0.0
    mean_at = sum(sample.at for sample in kept) / len(kept)
    mean_rss = sum(sample.rss_kib for sample in kept) / len(kept)
    spread = sum((sample.at - mean_at) ** 2 for sample in kept)
    if spread == 0:
        return 0.0
    slope = sum((sample.at - mean_at) * (sample.rss_kib - mean_rss) for sample in kept) / spread
    return slope * 600 / 1024


# -- the setup ---------------------------------------------------------------------------------------------------


def agent_extensions(count: int) -> list[str]:
    if not 1 <= count <= 99:
        raise SystemExit("--agents: 1 to 99")
    return [f"10{n:02d}" for n in range(1, count + 1)]


def bench_config(workdir: Path, agents: Sequence[str], database_url: str) -> Config:
    base = load_config(environ={})
    phones = [
        Phone(
            extension=ext,
            kind="agent",
            password=f"load-phone-pw-{ext}",
            contact=f"sip:{ext}@{PHONE_IP}:{AGENT_CONTACT_PORT}",
        )
        for ext in agents
    ]
    data = workdir / "data"
    return base.model_copy(
        update={
            "sip": base.sip.model_copy(
                update={"port": PORTS["sip"], "phones": phones, "pstn_address": PSTN, "dids": [ENGINE_DID]}
            ),
            "ami": base.ami.model_copy(update={"port": PORTS["ami"]}),
            "agi": base.agi.model_copy(update={"port": PORTS["agi"]}),
            "web": base.web.model_copy(update={"port": PORTS["web"]}),
            # Every agent takes the next call at once: the phones, not wrap-up, set the pace.
            "queues": base.queues.model_copy(update={"wrapup_time": 0}),
            "database": base.database.model_copy(update={"url": database_url}),
            "paths": base.paths.model_copy(update={"data_dir": data, "recordings_dir": data / "recordings"}),
        }
    )


@contextlib.contextmanager
def sandbox_lock(sandbox: Sandbox) -> Iterator[None]:
    """The lock the integration tests take around the sandbox (tests/real_parts.py): one user at a time."""
    with (sandbox.root.parent / f"{sandbox.root.name}.tests.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("the sandbox is in use (tests?); waiting for it", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def wav_ms(path: Path) -> int:
    with wave.open(str(path), "rb") as audio:
        return int(audio.getnframes() * 1000 / audio.getframerate())


@dataclass(frozen=True, slots=True)
class CallShape:
    """When the caller presses the key and how long it holds after it (the talk starts when an agent answers)."""

    key_after_ms: int
    hold_after_key_ms: int

    @classmethod
    def of(cls, sounds: Path, prompts: MenuPrompts, talk_s: float) -> CallShape:
        welcome = wav_ms(prompt_path(sounds, prompts.welcome))
        connecting = wav_ms(prompt_path(sounds, prompts.connecting))
        return cls(welcome + KEY_MARGIN_MS, connecting + RING_MARGIN_MS + int(talk_s * 1000))

    @property
    def seconds(self) -> float:
        return (self.key_after_ms + self.hold_after_key_ms) / 1000 + 1.0


class Bench:
    def __init__(self, args: argparse.Namespace, plan: Plan, workdir: Path, config: Config, sandbox: Sandbox) -> None:
        self.args = args
        self.plan = plan
        self.workdir = workdir
        self.config = config
        self.sandbox = sandbox
        self.agents = agent_extensions(plan.agents)
        self.load = Load(config.sip.host, config.sip.port, workdir / "sipp")
        self.key = renumbered_dtmf(MENU_KEY, 0, workdir / "dtmf")
        self.runs = 0
        self.engine: EngineProcess | None = None
        self.prompts: MenuPrompts | None = None
        self.soak_samples: list[SoakSample] = []

    def asterisk_pid(self) -> int:
        pid = self.sandbox.running_pid()
        if pid is None:
            raise RuntimeError("the sandbox's Asterisk is not running")
        return pid

    def pids(self) -> dict[str, int]:
        pids = {"asterisk": self.asterisk_pid()}
        if self.engine is not None and self.engine.running():
            pids["engine"] = self.engine.pid
        return pids

    async def idle(self, phase: Phase) -> None:
        """CPU of the processes with agents logged in and no call, as % of one core."""
        pids = self.pids()
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        await asyncio.sleep(self.plan.idle_s)
        elapsed = time.monotonic() - started
        phase.idle_cpu_pct = {name: (cpu_seconds(pid) - before[name]) / elapsed * 100 for name, pid in pids.items()}
        shown = ", ".join(f"{name} {pct:.2f}%" for name, pct in phase.idle_cpu_pct.items())
        print(f"  idle CPU over {elapsed:.0f} s (one core = 100%): {shown}", flush=True)

    async def run(self, phase: Phase, did: str, rate: float, calls: int, limit: int, talk_s: float) -> Run:
        assert self.prompts is not None
        self.runs += 1
        prefix = f"8{self.runs:02d}0"
        shape = CallShape.of(self.config.asterisk.sounds_path, self.prompts, talk_s)
        result = Run(phase.name, rate, limit, calls)
        pids = self.pids()
        scrape_before = await self.scrape() if "engine" in pids else ""
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        caller = self.load.call(
            f"callers-{self.runs}",
            did,
            prefix=prefix,
            calls=calls,
            rate=rate,
            talk_ms=shape.hold_after_key_ms,
            local_ip=PSTN,
            local_port=CALLER_PORT_BASE + self.runs,
            max_wait_s=60,
            limit=limit,
            keys=[self.key],
            keys_after_ms=shape.key_after_ms,
        )
        budget = calls / rate + shape.seconds + 90
        try:
            await asyncio.to_thread(caller.proc.wait, budget)
        except subprocess.TimeoutExpired:
            print(f"  callers still running after {budget:.0f} s: stopped", flush=True)
            caller.stop()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and asterisk_channels(self.sandbox):
            await asyncio.sleep(0.5)
        await asyncio.sleep(SETTLE_S)
        result.seconds = time.monotonic() - started
        result.cpu_s = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        traces = self.load.traces(prefix)
        placed = [trace for trace in traces.values() if trace.started is not None]
        done = [trace for trace in placed if trace.done is not None and trace.agents]
        result.placed = len(placed)
        # SIPp's "Dead call ... (successful)" is a late retransmission for a call that ended well: not a failure.
        result.aborted = [event for event in aborted_calls([caller]) if "(successful)" not in event]
        result.completed = len(done)
        result.failed = calls - len(done)
        for name, used in result.cpu_s.items():
            busy = used - phase.idle_cpu_pct.get(name, 0.0) / 100 * result.seconds
            result.ms_per_call[name] = busy * 1000 / max(1, result.placed)
        waits = sorted(
            trace.agent_answered - trace.answered - shape.key_after_ms / 1000
            for trace in done
            if trace.agent_answered is not None and trace.answered is not None
        )
        if waits:
            result.wait_p50_s = statistics.median(waits)
            result.wait_p99_s = waits[min(len(waits) - 1, math.ceil(0.99 * len(waits)) - 1)]
        if "engine" in pids:
            buckets = bucket_delta(
                histogram_buckets(await self.scrape(), ANSWER_METRIC), histogram_buckets(scrape_before, ANSWER_METRIC)
            )
            for q, attr in ((0.5, "answer_p50_ms"), (0.99, "answer_p99_ms")):
                value = histogram_quantile(q, buckets)
                setattr(result, attr, None if value is None else value * 1000)
            await self.count_records(result, prefix)
        phase.runs.append(result)
        print("  " + describe(result), flush=True)
        return result

    async def count_records(self, result: Run, prefix: str, within: float = 20.0) -> None:
        """The engine's records of the run's calls (by caller number), waiting a little for late writes."""
        deadline = time.monotonic() + within
        while True:
            tables = await read_tables(self.config_engine.database_url)
            records = [row for row in tables.calls if row.caller_number.startswith(prefix)]
            ours = {row.linkedid for row in records}
            recordings = [
                row
                for row in tables.recordings
                if row.kind == "full" and row.status == "complete" and row.linkedid in ours
            ]
            if (len(records) >= result.placed and len(recordings) >= result.completed) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        result.records = len(records)
        result.records_with_ivr = sum(1 for row in records if row.ivr_flow)
        result.recordings = len(recordings)

    async def scrape(self) -> str:
        assert self.engine is not None
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.get(self.engine.base_url + "/metrics") as response,
        ):
            return await response.text()

    async def step(self, phase: Phase, did: str, rate: float) -> bool:
        """One step of the capacity search: ``step_s`` worth of calls at ``rate``; True when none failed."""
        calls = max(1, round(rate * self.plan.step_s))
        shape = CallShape.of(self.config.asterisk.sounds_path, self.prompts or menu_prompts(self.flows), 0)
        # No cap that would hold the rate back: room for every call the rate keeps in progress, twice over.
        limit = max(self.plan.concurrency, math.ceil(rate * (shape.seconds + self.plan.step_talk_s) * 2))
        run = await self.run(phase, did, rate, calls, limit, self.plan.step_talk_s)
        return run.clean

    async def capacity(self, phase: Phase, did: str, start: float | None = None) -> None:
        """The highest rate of the plan's steps with no failed call, the steps tried from ``start`` (default: the
        lowest) upwards until one fails; when the step at ``start`` fails, the lower ones downwards until one
        passes. The measured run counts as the step at its rate."""
        first = phase.runs[0]
        if not first.clean:
            return
        phase.capacity = first.rate
        steps = sorted(rate for rate in self.plan.steps if rate > first.rate)
        upper = [rate for rate in steps if start is None or rate >= start]
        for index, rate in enumerate(upper):
            if not await self.step(phase, did, rate):
                if index == 0:
                    for lower in reversed([rate for rate in steps if rate < upper[0]]):
                        if await self.step(phase, did, lower):
                            phase.capacity = lower
                            break
                return
            phase.capacity = rate
        phase.capacity_capped = True

    def first_failing(self, phase: Phase) -> float | None:
        failed = [run.rate for run in phase.runs if not run.clean]
        return min(failed) if failed else None

    # -- the engine phase ------------------------------------------------------------------------------------

    @property
    def flows(self) -> Path:
        return self.workdir / "flows"

    @property
    def engine_url(self) -> str:
        assert self.engine is not None
        return self.engine.base_url

    @property
    def config_engine(self) -> Config:
        assert self.engine is not None
        return self.engine.config

    async def engine_phase(self) -> tuple[Phase, ProcessUsage, ProcessUsage]:
        config = engine_config(
            self.config,
            self.workdir / "engine-data",
            flows={"directory": open_all_day_flows(self.flows), "prepare_prompts": True},
        )
        boss = User("load-boss", PASSWORD, "supervisor")
        users = [User(f"load-agent-{ext}", PASSWORD, "agent", ext) for ext in self.agents]
        await create_users(config, [boss, *users])
        self.engine = EngineProcess(config, self.workdir / "engine")
        self.engine.start()
        await self.engine.wait_healthy(180)
        self.prompts = menu_prompts(self.flows)
        await self.wait_prompts(self.prompts)
        apis: list[EngineApi] = []
        try:
            general = config.queues.general
            started = time.monotonic()
            # A few at once: each login is an argon2 check in the engine, which runs two at a time.
            gate = asyncio.Semaphore(4)

            async def seat(user: User) -> None:
                async with gate:
                    api = await EngineApi.login(self.engine_url, user.username, user.password)
                    apis.append(api)
                    status, body = await api.call("POST", "/api/v1/agents/me/login", {"queues": [{"queue": general}]})
                    if status != 200:
                        raise RuntimeError(f"seat login of {user.username}: {status} {body}")

            await asyncio.gather(*(seat(user) for user in users))
            await self.wait_members({f"PJSIP/{ext}" for ext in self.agents})
            print(f"  {len(users)} agents logged in in {time.monotonic() - started:.0f} s", flush=True)
        finally:
            for api in apis:
                await api.close()
        phase = Phase("engine")
        print(f"engine phase ({config.database_url.split(':', 1)[0]}), pid {self.engine.pid}", flush=True)
        before = self.engine.usage()
        await self.idle(phase)
        plan = self.plan
        profiler = self.start_profiler(self.engine.pid) if self.args.profile else None
        await self.run(phase, ENGINE_DID, plan.rate, plan.calls, plan.concurrency, plan.talk_s)
        if profiler is not None:
            self.stop_profiler(profiler)
        await self.capacity(phase, ENGINE_DID)
        after = self.engine.usage()
        if self.args.soak:
            await self.soak(phase)
        self.engine.stop()
        return phase, before, after

    def start_profiler(self, pid: int) -> subprocess.Popen[bytes]:
        """py-spy sampling the engine (Python frames, 100 Hz, without pausing it) through the measured run: its
        CPU figures then include what the sampling costs the engine, so they are printed as such."""
        found = Path(sys.executable).parent / "py-spy"
        command = str(found) if found.exists() else shutil.which("py-spy")
        if command is None:
            raise SystemExit("--profile needs py-spy (.venv/bin/pip install py-spy)")
        print("  profiling the engine with py-spy: this run's CPU figures include the sampling", flush=True)
        args = [command, "record", "--pid", str(pid), "--rate", "100", "--nonblocking", "--format", "raw"]
        with (self.workdir / "py-spy.log").open("wb") as log:
            return subprocess.Popen([*args, "--output", self.args.profile], stdout=log, stderr=subprocess.STDOUT)

    def stop_profiler(self, profiler: subprocess.Popen[bytes]) -> None:
        # py-spy writes its file when interrupted.
        profiler.send_signal(signal.SIGINT)
        try:
            profiler.wait(30)
        except subprocess.TimeoutExpired:
            profiler.kill()
            profiler.wait(5)
        samples, own, inclusive = profile_top(Path(self.args.profile).read_text(encoding="utf-8"))
        print(f"  engine profile: {samples} samples in {self.args.profile}", flush=True)
        for title, entries in (("own time", own), ("inclusive time", inclusive)):
            print(f"  top by {title} (own % / inclusive %):")
            for entry in entries:
                print(f"    {entry.own * 100:5.1f} {entry.total * 100:5.1f}  {entry.function}")

    async def wait_prompts(self, prompts: MenuPrompts, within: float = 180.0) -> None:
        """The engine makes its prompts (espeak-ng) as it starts; the calls and the key timing need them."""
        names = [prompts.welcome, *prompts.menu, prompts.connecting]
        paths = [prompt_path(self.config.asterisk.sounds_path, name) for name in names]
        deadline = time.monotonic() + within
        while not all(path.is_file() for path in paths):
            if time.monotonic() > deadline:
                raise RuntimeError(f"prompts not made within {within:.0f} s: {[p for p in paths if not p.is_file()]}")
            await asyncio.sleep(0.5)

    async def wait_members(self, expected: set[str], within: float = 20.0) -> None:
        general = self.config.queues.general
        deadline = time.monotonic() + within
        while queue_members(self.sandbox, general) != expected:
            if time.monotonic() > deadline:
                found = queue_members(self.sandbox, general)
                raise RuntimeError(f"queue {general}: {len(found)} members, expected {len(expected)}")
            await asyncio.sleep(0.3)

    async def soak(self, phase: Phase) -> None:
        """Half the found capacity for --soak minutes; the engine's RSS, open files and asyncio tasks sampled every
        30 s while the calls go on."""
        assert self.engine is not None
        rate = max(0.5, phase.capacity / 2)
        minutes = self.args.soak
        calls = round(rate * minutes * 60)
        print(f"soak: {minutes:g} min at {rate:g} calls/s ({calls} calls)", flush=True)
        shape = CallShape.of(self.config.asterisk.sounds_path, self.prompts or menu_prompts(self.flows), 0)
        limit = max(self.plan.concurrency, math.ceil(rate * (shape.seconds + self.plan.step_talk_s) * 2))
        task = asyncio.create_task(self.run(phase, ENGINE_DID, rate, calls, limit, self.plan.step_talk_s))
        started = time.monotonic()
        while not task.done():
            usage = self.engine.usage()
            tasks = gauge_value(await self.scrape(), TASKS_METRIC)
            sample = SoakSample(time.monotonic() - started, usage.rss_kib, usage.open_files, tasks)
            self.soak_samples.append(sample)
            print(f"  soak {sample.at:6.0f} s: {sample}", flush=True)
            await asyncio.wait({task}, timeout=30)
        await task
        print(f"soak: {soak_verdict(self.soak_samples)}", flush=True)

    # -- the pure-dialplan phase -----------------------------------------------------------------------------

    async def dialplan_phase(self, start: float) -> Phase:
        assert self.prompts is not None
        general = self.config.queues.general
        for member in queue_members(self.sandbox, general):
            self.sandbox.cli(f"queue remove member {member} from {general}", check=False)
        for ext in self.agents:
            self.sandbox.cli(f"queue add member PJSIP/{ext} to {general}")
        await self.wait_members({f"PJSIP/{ext}" for ext in self.agents})
        install_dialplan(
            self.sandbox, dialplan_menu(self.config, DIALPLAN_DID, self.prompts), f"{DIALPLAN_DID}@from-pstn"
        )
        phase = Phase("dialplan")
        print("pure-dialplan phase (no engine)", flush=True)
        await self.idle(phase)
        plan = self.plan
        await self.run(phase, DIALPLAN_DID, plan.rate, plan.calls, plan.concurrency, plan.talk_s)
        # Dialplan alone starts where the engine failed (or at the engine's highest step when none failed): the
        # steps below are run only when that one fails.
        await self.capacity(phase, DIALPLAN_DID, start=start)
        return phase

    def start_phones(self) -> None:
        self.load.agent(AgentPhone("desks", PHONE_IP, AGENT_CONTACT_PORT))

    def close(self) -> None:
        self.load.close()
        if self.engine is not None:
            self.engine.stop()
        general = self.config.queues.general
        if self.sandbox.running_pid() is not None:
            for member in queue_members(self.sandbox, general):
                self.sandbox.cli(f"queue remove member {member} from {general}", check=False)


def describe(run: Run) -> str:
    cpu = ", ".join(f"{name} {ms:.1f} ms" for name, ms in run.ms_per_call.items())
    text = (
        f"{run.phase} {run.rate:g}/s (<= {run.limit} at once): {run.offered} offered, {run.placed} placed, "
        f"{run.completed} completed, {run.failed} failed in {run.seconds:.0f} s; CPU per call {cpu}"
    )
    if run.wait_p50_s is not None:
        text += f"; key to agent p50 {run.wait_p50_s:.2f} s p99 {run.wait_p99_s:.2f} s"
    if run.records is not None:
        text += (
            f"; {run.records} call records ({run.records_with_ivr} through the IVR), {run.recordings} full recordings"
        )
    if run.answer_p50_ms is not None:
        text += f"; AGI answer p50 {run.answer_p50_ms:.1f} ms p99 {run.answer_p99_ms:.1f} ms"
    if run.aborted:
        text += f"; SIPp aborted {len(run.aborted)}: {run.aborted[:3]}"
    return text


# -- main ----------------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(kind: str) -> AsyncIterator[str]:
    """The engine's database URL: empty for SQLite in the data directory, or a PostgreSQL of the bench's own."""
    if kind == "sqlite":
        yield ""
        return
    with PgSandbox() as pg:
        yield pg.url


def plan_of(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    overrides: dict[str, Any] = {}
    for name in ("agents", "rate", "concurrency", "calls", "talk"):
        value = getattr(args, name)
        if value is not None:
            overrides["talk_s" if name == "talk" else name] = value
    if args.steps is not None:
        overrides["steps"] = tuple(float(rate) for rate in args.steps.split(",") if rate)
    return replace(plan, **overrides)


async def main_async(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise SystemExit("bench/load.py needs root (the Asterisk sandbox is a chroot)")
    if shutil.which("sipp") is None:
        raise SystemExit("sipp is not installed (apt-get install sip-tester)")
    plan = plan_of(args)
    started = time.monotonic()
    print(f"whole system under load: {plan}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="cc-load-"))
    results: dict[str, Any] = {"plan": asdict(plan), "database": args.database}
    try:
        async with database(args.database) as url:
            config = bench_config(workdir, agent_extensions(plan.agents), url)
            sandbox = Sandbox(config, progress=lambda line: print(line, flush=True))
            if not sandbox.installed():
                raise SystemExit("no Asterisk sandbox: run `callcenter asterisk install` first")
            with sandbox_lock(sandbox):
                if sandbox.running_pid() is not None:
                    raise SystemExit("the sandbox's Asterisk is running (make demo?): `callcenter asterisk stop` first")
                # Queue members persist in astdb: a run starts from none.
                (sandbox.root / "var/lib/asterisk/astdb.sqlite3").unlink(missing_ok=True)
                sandbox.start()
                bench = Bench(args, plan, workdir, config, sandbox)
                try:
                    bench.start_phones()
                    engine, before, after = await bench.engine_phase()
                    results["engine"] = asdict(engine)
                    results["engine_usage"] = {"before": asdict(before), "after": asdict(after)}
                    results["soak"] = [asdict(sample) for sample in bench.soak_samples]
                    start = bench.first_failing(engine) or engine.capacity
                    peer = None if args.no_baseline else await bench.dialplan_phase(start)
                    results["dialplan"] = asdict(peer) if peer else None
                finally:
                    bench.close()
                    stop_asterisk(sandbox)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    results["seconds"] = time.monotonic() - started
    results["load_average_end"] = os.getloadavg()[0]
    return report(results, engine, before, after, peer, args)


def report(
    results: dict[str, Any],
    engine: Phase,
    before: ProcessUsage,
    after: ProcessUsage,
    peer: Phase | None,
    args: argparse.Namespace,
) -> int:
    measured = engine.runs[0]
    print()
    print(
        f"engine RSS {before.rss_kib} KiB before, {after.rss_kib} KiB after; open files {before.open_files} before,"
        f" {after.open_files} after"
    )
    engine_ms = measured.ms_per_call.get("engine", 0.0)
    asterisk_ms = measured.ms_per_call["asterisk"]
    ratio = engine_ms / asterisk_ms if asterisk_ms > 0 else math.inf
    print(f"measured run: {describe(measured)}")
    line = f"capacity (highest rate with no failed call): engine {engine.capacity:g}/s"
    line += " (no step failed)" if engine.capacity_capped else ""
    capacity_ratio = math.nan
    if peer is not None:
        base = peer.runs[0]
        print(f"pure dialplan, same calls: {describe(base)}")
        print(
            f"Asterisk per call: {asterisk_ms:.1f} ms with the engine, {base.ms_per_call['asterisk']:.1f} ms in "
            "dialplan alone"
        )
        line += f", pure dialplan {peer.capacity:g}/s" + (" (no step failed)" if peer.capacity_capped else "")
        if peer.capacity > 0:
            capacity_ratio = engine.capacity / peer.capacity
    print(line)
    print(f"run took {results['seconds']:.0f} s; load average {results['load_average_end']:.2f} at the end")
    targets = [
        ("engine_vs_asterisk <= 0.25", ratio <= 0.25),
        (f"failed_calls=0 at {measured.rate:g} calls/s with {measured.limit} at once", measured.failed == 0),
        ("capacity_ratio >= 0.9", capacity_ratio >= 0.9),
    ]
    for name, met in targets:
        print(f"target {name}: {'met' if met else 'NOT met'}")
    results.update(engine_vs_asterisk=ratio, capacity_ratio=capacity_ratio)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(
        f"engine_ms_per_call={engine_ms:.1f} asterisk_ms_per_call={asterisk_ms:.1f} engine_vs_asterisk={ratio:.2f} "
        f"failed_calls={measured.failed} capacity_ratio={capacity_ratio:.2f}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short plan, under 5 minutes")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--agents", type=int, default=None, help="agent phones logged in (1-99)")
    parser.add_argument("--rate", type=float, default=None, help="calls a second in the measured run")
    parser.add_argument("--concurrency", type=int, default=None, help="calls at once at most in the measured run")
    parser.add_argument("--calls", type=int, default=None, help="calls in the measured run")
    parser.add_argument("--talk", type=float, default=None, help="seconds of talk once an agent answers")
    parser.add_argument("--steps", default=None, help="rates tried above the measured one, e.g. 7,10")
    parser.add_argument("--no-baseline", action="store_true", help="skip the pure-dialplan phase")
    parser.add_argument("--soak", type=float, default=0.0, help="minutes at half the found capacity (engine)")
    parser.add_argument("--profile", default=None, help="py-spy the engine through the measured run, to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, SIPp files)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
