"""FastAGI server benchmark: our asyncio server against panoramisk's and a thread-per-connection server.

Every server runs the same 5-command IVR session (ANSWER, STREAM FILE, GET DATA, SET VARIABLE, VERBOSE).
A load generator in its own process plays Asterisk: it opens N concurrent connections, sends a realistic
``agi_*`` header and answers each command line until the server closes the socket. A second test sends
100 half headers that then close and measures how late a 10 ms ticker in the server's process runs.

The event loop is part of each configuration (``CONFIGS``): ours runs on uvloop, as the engine does
(``callcenter.runtime``), and on stock asyncio; panoramisk on stock asyncio, as shipped, and on uvloop; the
threaded peer has no loop. The load generator always runs on the stock asyncio loop, in its own process.

Usage: ``.venv/bin/python bench/fastagi.py [--quick] [--json PATH]`` (``make bench`` runs ``--quick``).
The last two lines of the output are ``same_loop_ratio_asyncio=A.AA same_loop_ratio_uvloop=B.BB`` and
``ratio_vs_panoramisk=X.XX max_loop_lag_ms=Y`` (as deployed: ours on uvloop against panoramisk on asyncio).
See docs/benchmarks.md.

Every process the bench starts is a child it holds a handle to; each is stopped in a ``finally`` (terminate,
then kill), children ignore Ctrl-C so the parent alone decides, and each child exits by itself if the parent
goes away. Loopback (127.0.0.1) and ephemeral ports only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import importlib.metadata
import json
import logging
import math
import multiprocessing
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import uvloop  # noqa: E402
from panoramisk import fast_agi  # noqa: E402

from callcenter.agi.server import FastAgiServer, ServerLimits  # noqa: E402
from callcenter.agi.session import AgiSession  # noqa: E402

HOST = "127.0.0.1"
OURS = "ours"
PANORAMISK = "panoramisk"
THREADED = "threaded"
UVLOOP = "uvloop"
ASYNCIO = "asyncio"
NO_LOOP = "none"


@dataclass(frozen=True)
class ServerConfig:
    """One server of the comparison: which implementation, on which event loop."""

    key: str  # short name: progress lines, JSON
    label: str
    kind: str  # OURS, PANORAMISK or THREADED
    loop: str  # UVLOOP, ASYNCIO, or NO_LOOP for the threaded peer


OURS_UVLOOP = ServerConfig("ours/uvloop", "ours (callcenter.agi, uvloop: as the engine runs it)", OURS, UVLOOP)
OURS_ASYNCIO = ServerConfig("ours/asyncio", "ours (callcenter.agi, asyncio)", OURS, ASYNCIO)
PANORAMISK_ASYNCIO = ServerConfig(
    "panoramisk/asyncio", "panoramisk 1.4 fast_agi (asyncio: as shipped)", PANORAMISK, ASYNCIO
)
PANORAMISK_UVLOOP = ServerConfig("panoramisk/uvloop", "panoramisk 1.4 fast_agi (uvloop)", PANORAMISK, UVLOOP)
THREADED_PEER = ServerConfig("threaded", "threaded (pyst2/wazo-agid style)", THREADED, NO_LOOP)
CONFIGS = (OURS_UVLOOP, OURS_ASYNCIO, PANORAMISK_ASYNCIO, PANORAMISK_UVLOOP, THREADED_PEER)
CONFIGS_BY_KEY = {config.key: config for config in CONFIGS}
# panoramisk's loop freezes on the first half header whatever the loop, so one run of it is enough.
LAG_CONFIGS = (OURS_UVLOOP, OURS_ASYNCIO, PANORAMISK_ASYNCIO)
# How a server child starts its loop: asyncio.Runner(loop_factory=...); None is the stock asyncio loop.
LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop] | None] = {
    UVLOOP: uvloop.new_event_loop,
    ASYNCIO: None,
}

ROUTE = "ivr"
COMMANDS_PER_SESSION = 5
# One listen backlog for every server: the one FastAgiServer.start() passes with the default ServerLimits.
# The peers get it explicitly (asyncio.start_server's default is 100, socketserver's 5), so that a burst of
# 200 connects measures the servers and not the kernel's 1 s SYN retry timer.
BACKLOG = max(ServerLimits().backlog, ServerLimits().max_sessions)
# A load generator at or above this share of one core is the limit, not the server.
GEN_BOUND_PCT = 85.0
TICK = 0.010
LAG_CONNECTIONS = 100
LAG_HARD_TIMEOUT = 5.0
CHILD_MAX_LIFETIME = 900.0


@dataclass(frozen=True)
class Plan:
    levels: tuple[int, ...]
    sessions: int
    warmup: int
    time_cap: float
    rounds: int = 1


QUICK = Plan(levels=(50, 200), sessions=3000, warmup=200, time_cap=8.0, rounds=1)
# Full mode runs every (server, level) pair in 3 interleaved rounds and keeps the median round.
FULL = Plan(levels=(50, 200), sessions=10000, warmup=500, time_cap=30.0, rounds=3)


# --------------------------------------------------------------------------------------------------------
# Child-process plumbing
# --------------------------------------------------------------------------------------------------------


def _child_setup(parent_pid: int) -> None:
    """Common start of every child: Ctrl-C is the parent's business, and no child outlives the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    born = time.monotonic()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid or time.monotonic() - born > CHILD_MAX_LIFETIME:
                os._exit(3)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


class _CountingHandler(logging.Handler):
    """Keeps the servers quiet while still telling the parent how many warnings they logged."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.samples) < 3:
            self.samples.append(f"{record.name}: {record.getMessage()}"[:200])


def _quiet_logging() -> _CountingHandler:
    counter = _CountingHandler()
    for name in ("callcenter", "panoramisk", "asyncio"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        logger.handlers[:] = [counter]
        logger.propagate = False
    return counter


class _Child:
    """One child process and its pipe; closing it always ends the process (terminate, then kill)."""

    def __init__(self, ctx: Any, target: Callable[..., None], *args: object) -> None:
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child_conn, os.getpid(), *args), daemon=True)
        self.proc.start()
        child_conn.close()

    @property
    def pid(self) -> int:
        return int(self.proc.pid or 0)

    def recv(self, timeout: float) -> Any | None:
        """The next message, or None when none came in time or the child is gone."""
        try:
            if self.conn.poll(max(0.0, timeout)):
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        return None

    def send(self, message: object) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(message)

    def close(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(1.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(1.0)
        self.conn.close()

    def __enter__(self) -> _Child:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _listen_overflows() -> int | None:
    """The kernel's count of connections dropped because an accept queue was full (Linux, system-wide)."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split(), values.split(), strict=False))
            return int(table.get("ListenOverflows", 0))
    return None


def _cpu_seconds(pid: int) -> float | None:
    """User+system CPU time of a process, read from outside (Linux /proc); None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------------------
# The three servers, each running the same 5-command session
# --------------------------------------------------------------------------------------------------------


async def _ours_ivr(session: AgiSession) -> None:
    await session.answer()
    await session.stream_file("welcome", "")
    await session.get_data("menu", 3000, 1)
    await session.set_variable("CC_ACTION", "queue")
    await session.verbose("done", 1)


PLAIN_COMMANDS = (
    "ANSWER",
    'STREAM FILE welcome ""',
    "GET DATA menu 3000 1",
    "SET VARIABLE CC_ACTION queue",
    "VERBOSE done 1",
)


async def _panoramisk_ivr(request: fast_agi.Request) -> None:
    for command in PLAIN_COMMANDS:
        result = await request.send_command(command)
        if "error" in result:
            raise RuntimeError(f"{command}: {result}")


def _panoramisk_app() -> tuple[fast_agi.Application, str]:
    """The peer, with the one Python 3.11 workaround it needs (documented in docs/benchmarks.md).

    panoramisk 1.4's ``add_route`` wraps non-coroutine endpoints with ``asyncio.coroutine``, which Python 3.11
    removed. Our endpoint is ``async def``, so that branch is not reached; should it be (another panoramisk
    build), the route goes straight into the ``_route`` dict that ``Application.handler`` reads.
    """
    app = fast_agi.Application(loop=asyncio.get_running_loop())
    try:
        app.add_route(ROUTE, _panoramisk_ivr)
        note = "route registered with add_route (async def endpoint: asyncio.coroutine branch not reached)"
    except AttributeError:
        app._route[ROUTE] = _panoramisk_ivr
        note = "shim: add_route failed on asyncio.coroutine; route written into Application._route"
    return app, note


# ---- the thread-per-connection peer: written here, in the style of pyst2's AGI and wazo-agid's FastAGI ----

_RESULT_LINE = re.compile(r"^(\d{3})[ -](?:result=(\S*)(?: \((.*)\))?)?")


class ThreadedAgiHandler(socketserver.StreamRequestHandler):
    """One OS thread per call: file-object reads of the header, then blocking write/readline per command."""

    def handle(self) -> None:
        env: dict[str, str] = {}
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if line == "":
                break
            key, _, value = line.partition(":")
            env[key.strip()] = value.strip()
        if env.get("agi_network_script") != ROUTE:
            return
        for command in PLAIN_COMMANDS:
            self.wfile.write(command.encode() + b"\n")
            self._result(command)

    def _result(self, command: str) -> tuple[str, str | None]:
        line = self.rfile.readline().decode("utf-8", errors="replace").rstrip("\r\n")
        match = _RESULT_LINE.match(line)
        if match is None or match.group(1) != "200":
            raise RuntimeError(f"{command}: unexpected answer {line!r}")
        return match.group(2) or "", match.group(3)


class ThreadedAgiServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = BACKLOG
    handler_errors = 0

    def handle_error(self, request: object, client_address: object) -> None:
        self.handler_errors += 1


# ---- the server child ----------------------------------------------------------------------------------


@dataclass
class _LagState:
    max_lag: float = 0.0


async def _ticker(conn: Connection, state: _LagState) -> None:
    """A 10 ms ticker; every 5 ticks it sends (monotonic time, max lag so far) to the parent: a heartbeat."""
    ticks = 0
    while True:
        before = time.monotonic()
        await asyncio.sleep(TICK)
        state.max_lag = max(state.max_lag, time.monotonic() - before - TICK)
        ticks += 1
        if ticks % 5 == 0:
            conn.send(("beat", time.monotonic(), state.max_lag))


async def _wait_readable(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    readable = loop.create_future()

    def on_readable() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(conn.fileno(), on_readable)
    try:
        await readable
    finally:
        loop.remove_reader(conn.fileno())
    with contextlib.suppress(EOFError, OSError):
        conn.recv()


def _loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """UVLOOP or ASYNCIO: the package the running loop's class comes from."""
    return type(loop).__module__.partition(".")[0]


async def _serve_async(conn: Connection, kind: str, with_ticker: bool, counter: _CountingHandler) -> None:
    close: Callable[[], Awaitable[None]]
    if kind == OURS:
        ours = FastAgiServer({ROUTE: _ours_ivr}, HOST, 0, limits=ServerLimits())
        await ours.start()
        port, note = ours.port, ""

        async def close() -> None:
            await ours.stop(grace=1.0)

    else:
        app, note = _panoramisk_app()
        peer = await asyncio.start_server(app.handler, HOST, 0, backlog=BACKLOG)
        port = int(peer.sockets[0].getsockname()[1])

        async def close() -> None:
            peer.close()
            await peer.wait_closed()

    state = _LagState()
    ticker = asyncio.create_task(_ticker(conn, state)) if with_ticker else None
    conn.send(("ready", port, note, _loop_name(asyncio.get_running_loop())))
    try:
        await _wait_readable(conn)
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        await close()
    conn.send(("stopped", state.max_lag if with_ticker else None, counter.count, counter.samples))


def _server_main(
    conn: Connection, parent_pid: int, kind: str, loop: str, with_ticker: bool, profile: str | None
) -> None:
    _child_setup(parent_pid)
    counter = _quiet_logging()
    if kind == THREADED:
        server = ThreadedAgiServer((HOST, 0), ThreadedAgiHandler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            conn.send(("ready", server.server_address[1], "", NO_LOOP))
            with contextlib.suppress(EOFError, OSError):
                conn.recv()
        finally:
            server.shutdown()
            server.server_close()
        conn.send(("stopped", None, server.handler_errors, []))
        return
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    try:
        with asyncio.Runner(loop_factory=LOOP_FACTORIES[loop]) as runner:
            runner.run(_serve_async(conn, kind, with_ticker, counter))
    finally:
        if profiler is not None and profile:
            profiler.disable()
            profiler.dump_stats(profile)


class ServerChild(_Child):
    def __init__(
        self, ctx: Any, config: ServerConfig, *, with_ticker: bool = False, profile: str | None = None
    ) -> None:
        super().__init__(ctx, _server_main, config.kind, config.loop, with_ticker, profile)
        self.config = config
        ready = self.recv(20.0)
        if not ready or ready[0] != "ready":
            self.close()
            raise RuntimeError(f"{config.key} server did not start")
        if ready[3] != config.loop:  # the loop column must say what really ran
            self.close()
            raise RuntimeError(f"{config.key} server ran on {ready[3]}, not {config.loop}")
        self.port: int = ready[1]
        self.note: str = ready[2]

    def stop(self, timeout: float = 5.0) -> tuple[Any, ...] | None:
        """Asks the server to stop; returns its ('stopped', max_lag, warnings, samples) or None."""
        self.send("stop")
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.recv(left)
            if message is None:
                return None
            if message[0] == "stopped":
                self.proc.join(2.0)
                return tuple(message)
        return None


# --------------------------------------------------------------------------------------------------------
# The load generator: plays Asterisk, in its own process
# --------------------------------------------------------------------------------------------------------

HEADER = (
    "agi_network: yes\n"
    f"agi_network_script: {ROUTE}\n"
    f"agi_request: agi://{HOST}/{ROUTE}\n"
    "agi_channel: PJSIP/trunk-{seq:08x}\n"
    "agi_language: en\n"
    "agi_type: PJSIP\n"
    "agi_uniqueid: 1795392000.{seq}\n"
    "agi_version: 20.10.0\n"
    "agi_callerid: +33612345678\n"
    "agi_calleridname: Jane Doe\n"
    "agi_callingpres: 0\n"
    "agi_callingani2: 0\n"
    "agi_callington: 0\n"
    "agi_callingtns: 0\n"
    "agi_dnid: 0140000000\n"
    "agi_rdnis: unknown\n"
    "agi_context: from-trunk\n"
    "agi_extension: 0140000000\n"
    "agi_priority: 3\n"
    "agi_enhanced: 0.0\n"
    "agi_accountcode: \n"
    "agi_threadid: 140234567890\n"
    "\n"
)

REPLIES = (
    (b"ANSWER", b"200 result=0\n"),
    (b"STREAM FILE", b"200 result=0 endpos=12800\n"),
    (b"GET DATA", b"200 result=1 (timeout)\n"),
    (b"SET VARIABLE", b"200 result=1\n"),
    (b"VERBOSE", b"200 result=1\n"),
)


class FakeAsterisk(asyncio.Protocol):
    """One channel's side of a FastAGI connection: header first, then one answer per command line."""

    def __init__(self, header: bytes, done: asyncio.Future[None]) -> None:
        self._header = header
        self._done = done
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self.commands = 0
        self.unknown = 0
        self.error: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._header)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        buffer = self._buffer + data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            self._transport.write(self._reply(buffer[start:end]))
            start = end + 1
        self._buffer = buffer[start:]

    def _reply(self, line: bytes) -> bytes:
        self.commands += 1
        for verb, reply in REPLIES:
            if line.startswith(verb):
                return reply
        self.unknown += 1
        return b"510 Invalid or unknown command\n"

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = exc
        if not self._done.done():
            self._done.set_result(None)


@dataclass
class _Phase:
    remaining: int
    deadline: float
    seq: int = 0
    errors: int = 0
    last_done: float = 0.0
    latencies: list[float] = field(default_factory=list)


async def _session_worker(port: int, phase: _Phase) -> None:
    loop = asyncio.get_running_loop()
    while phase.remaining > 0 and loop.time() < phase.deadline:
        phase.remaining -= 1
        phase.seq += 1
        header = HEADER.format(seq=phase.seq).encode()
        done: asyncio.Future[None] = loop.create_future()
        started = time.perf_counter()
        try:
            transport, proto = await loop.create_connection(functools.partial(FakeAsterisk, header, done), HOST, port)
        except OSError:
            phase.errors += 1
            await asyncio.sleep(0.01)
            continue
        try:
            await done
        finally:
            transport.close()
        ended = time.perf_counter()
        if proto.error is None and proto.commands == COMMANDS_PER_SESSION and proto.unknown == 0:
            phase.latencies.append(ended - started)
            phase.last_done = ended
        else:
            phase.errors += 1


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def _run_phase(port: int, concurrency: int, sessions: int, time_cap: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    phase = _Phase(remaining=sessions, deadline=loop.time() + time_cap)
    started = time.perf_counter()
    workers = [asyncio.create_task(_session_worker(port, phase)) for _ in range(concurrency)]
    # In-flight sessions get a short grace after the cap; whatever is still open then is cut and counted.
    _done, pending = await asyncio.wait(workers, timeout=time_cap + 5.0)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    elapsed = (phase.last_done or time.perf_counter()) - started
    latencies = sorted(phase.latencies)
    return {
        "sessions": len(latencies),
        "errors": phase.errors,
        "unfinished": len(pending),
        "capped": phase.remaining > 0,
        "elapsed_s": elapsed,
        "sessions_per_s": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": _percentile(latencies, 50) * 1000,
        "p99_ms": _percentile(latencies, 99) * 1000,
    }


async def _load(conn: Connection, port: int, concurrency: int, plan: Plan) -> dict[str, Any]:
    await _run_phase(port, min(concurrency, 50), plan.warmup, 5.0)
    conn.send(("warm",))
    return await _run_phase(port, concurrency, plan.sessions, plan.time_cap)


def _load_main(conn: Connection, parent_pid: int, port: int, concurrency: int, plan: Plan) -> None:
    _child_setup(parent_pid)
    _quiet_logging()
    # The generator is the same for every server: always the stock asyncio loop, whichever loop the server has.
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        conn.send(("result", runner.run(_load(conn, port, concurrency, plan))))


# --------------------------------------------------------------------------------------------------------
# The two measurements, driven from the parent
# --------------------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    server: str  # a ServerConfig.key
    concurrency: int
    sessions: int = 0
    errors: int = 0
    unfinished: int = 0
    capped: bool = False
    elapsed_s: float = 0.0
    sessions_per_s: float = 0.0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    server_cpu_pct: float | None = None
    client_cpu_pct: float | None = None
    server_cpu_us_per_session: float | None = None
    server_warnings: int = 0
    listen_overflows: int | None = None
    failure: str = ""


def measure_load(
    ctx: Any, config: ServerConfig, concurrency: int, plan: Plan, profile: str | None = None
) -> LoadResult:
    result = LoadResult(config.key, concurrency)
    try:
        server = ServerChild(ctx, config, profile=profile)
    except RuntimeError as exc:
        result.failure = str(exc)
        return result
    overflows_before = _listen_overflows()
    with server:
        with _Child(ctx, _load_main, server.port, concurrency, plan) as load:
            deadline = time.monotonic() + 5.0 + plan.time_cap + 5.0 + 20.0
            marks: list[tuple[float, float | None, float | None]] = []
            payload: dict[str, Any] | None = None
            while payload is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    result.failure = "load generator timed out"
                    break
                message = load.recv(min(left, 0.5))
                if message is None:
                    if not load.proc.is_alive():
                        result.failure = "load generator died"
                        break
                    continue
                marks.append((time.monotonic(), _cpu_seconds(server.pid), _cpu_seconds(load.pid)))
                if message[0] == "result":
                    payload = message[1]
        stopped = server.stop()
    overflows_after = _listen_overflows()
    if overflows_before is not None and overflows_after is not None:
        result.listen_overflows = overflows_after - overflows_before
    if payload is not None:
        for key, value in payload.items():
            setattr(result, key, value)
        if len(marks) == 2:
            (t0, s0, c0), (t1, s1, c1) = marks
            if s0 is not None and s1 is not None and t1 > t0:
                result.server_cpu_pct = 100 * (s1 - s0) / (t1 - t0)
                if result.sessions:
                    result.server_cpu_us_per_session = 1e6 * (s1 - s0) / result.sessions
            if c0 is not None and c1 is not None and t1 > t0:
                result.client_cpu_pct = 100 * (c1 - c0) / (t1 - t0)
    if stopped is not None:
        result.server_warnings = int(stopped[2])
    return result


def _half_headers(port: int, count: int) -> int:
    """Slowloris-lite: two agi_ lines, no blank line, then close. Returns how many connects failed."""
    failed = 0
    half = f"agi_network: yes\nagi_network_script: {ROUTE}\n".encode()
    for _ in range(count):
        try:
            with socket.create_connection((HOST, port), timeout=1.0) as sock:
                sock.sendall(half)
        except OSError:
            failed += 1
    return failed


@dataclass
class LagResult:
    server: str  # a ServerConfig.key
    max_lag_ms: float | None = None
    frozen: bool = False
    frozen_for_ms: float = 0.0
    cpu_while_frozen_pct: float | None = None
    failed_connects: int = 0
    server_warnings: int = 0
    note: str = ""

    def text(self) -> str:
        if self.frozen:
            cpu = f", busy-spinning at {self.cpu_while_frozen_pct:.0f}% CPU" if self.cpu_while_frozen_pct else ""
            return f">= {self.frozen_for_ms:.0f} ms (frozen{cpu}; killed)"
        if self.max_lag_ms is None:
            return "not measured"
        return f"{self.max_lag_ms:.1f} ms"


def measure_lag(ctx: Any, config: ServerConfig) -> LagResult:
    """Max ticker lag in the server's process while 100 connections send half a header and close.

    Frozen means no heartbeat for LAG_HARD_TIMEOUT seconds; the child is then killed: the bench never hangs.
    Heartbeats carry time.monotonic(), which on Linux is one clock for every process.
    """
    result = LagResult(config.key)
    try:
        server = ServerChild(ctx, config, with_ticker=True)
    except RuntimeError as exc:
        result.note = str(exc)
        return result
    with server:
        result.note = server.note
        last_beat, max_lag = time.monotonic(), 0.0

        def drain(wait: float) -> None:
            nonlocal last_beat, max_lag
            message = server.recv(wait)
            while message is not None:
                if message[0] == "beat":
                    last_beat, max_lag = message[1], message[2]
                message = server.recv(0.0)

        drain(0.3)
        started = time.monotonic()
        result.failed_connects = _half_headers(server.port, LAG_CONNECTIONS)
        settle_until = time.monotonic() + 1.0
        cpu_start: tuple[float, float | None] | None = None
        while True:
            drain(0.05)
            now = time.monotonic()
            stale = now - last_beat
            if stale >= LAG_HARD_TIMEOUT:
                result.frozen, result.frozen_for_ms = True, stale * 1000
                break
            if stale >= 1.0 and cpu_start is None:
                cpu_start = (now, _cpu_seconds(server.pid))
            if now >= settle_until and stale < 0.5:
                break
            if now - started > LAG_HARD_TIMEOUT + 10.0:  # belt and braces: never wait longer than this
                result.frozen, result.frozen_for_ms = stale >= 1.0, stale * 1000
                break
        if result.frozen:
            if cpu_start is not None and cpu_start[1] is not None:
                cpu_now = _cpu_seconds(server.pid)
                if cpu_now is not None:
                    result.cpu_while_frozen_pct = 100 * (cpu_now - cpu_start[1]) / (time.monotonic() - cpu_start[0])
            return result  # the with-block kills the child
        stopped = server.stop()
        if stopped is None:
            result.max_lag_ms = max_lag * 1000
            result.note += " (server did not report at stop; last heartbeat used)"
        else:
            result.max_lag_ms = float(stopped[1]) * 1000
            result.server_warnings = int(stopped[2])
    return result


# --------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------


def _machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("panoramisk", "uvloop"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "?"
    return {"nproc": str(os.cpu_count()), "cpu": model, "python": sys.version.split()[0], **versions}


def _fmt(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def _median_round(rounds: list[LoadResult]) -> LoadResult:
    ranked = sorted(rounds, key=lambda r: r.sessions_per_s)
    return ranked[(len(ranked) - 1) // 2]


HEADLINE_LEVEL = 50


@dataclass(frozen=True)
class Headline:
    """The numbers the last two lines carry, all at concurrency HEADLINE_LEVEL."""

    as_deployed: float  # sessions/s, ours on uvloop / panoramisk on asyncio
    same_loop_asyncio: float  # ours / panoramisk, both on asyncio
    same_loop_uvloop: float  # ours / panoramisk, both on uvloop
    our_lag_ms: float  # max loop lag of ours on uvloop, the engine's configuration


def _gen_bound(r: LoadResult) -> bool:
    return r.client_cpu_pct is not None and r.client_cpu_pct >= GEN_BOUND_PCT


def _print_load_table(loads: list[LoadResult]) -> None:
    width = max(len(config.label) for config in CONFIGS)
    header = (
        f"{'server':<{width}} {'loop':<7} {'conc':>4} {'sessions':>8} {'err':>4} {'sess/s':>7} {'p50 ms':>7}"
        f" {'p99 ms':>7} {'srv CPU':>7} {'gen CPU':>7} {'srv us/sess':>11} {'lst ovf':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in loads:
        config = CONFIGS_BY_KEY[r.server]
        flags = ["gen-bound"] if _gen_bound(r) else []
        flags += ["capped"] if r.capped else []
        flags += [f"FAILED: {r.failure}"] if r.failure else []
        flags += [f"{r.server_warnings} server warnings"] if r.server_warnings else []
        overflows = "-" if r.listen_overflows is None else str(r.listen_overflows)
        print(
            f"{config.label:<{width}} {config.loop:<7} {r.concurrency:>4} {r.sessions:>8}"
            f" {r.errors + r.unfinished:>4} {r.sessions_per_s:>7.0f} {_fmt(r.p50_ms, '7.1f')}"
            f" {_fmt(r.p99_ms, '7.1f')} {_fmt(r.server_cpu_pct, '6.0f')}% {_fmt(r.client_cpu_pct, '6.0f')}%"
            f" {_fmt(r.server_cpu_us_per_session, '11.0f')} {overflows:>7}" + (f"  {'; '.join(flags)}" if flags else "")
        )
    print(
        "  srv/gen CPU: server and load-generator process CPU over the measured phase (100% = one core);"
        " lst ovf: kernel ListenOverflows during the run (each costs that client a 1 s SYN retry);"
        f" gen-bound: generator CPU >= {GEN_BOUND_PCT:.0f}%, so the generator, not the server, set the pace"
        " (srv us/sess still compares the servers)"
    )


def _print_lag_table(lags: list[LagResult]) -> None:
    width = max(len(config.label) for config in CONFIGS)
    print(f"Event-loop lag: max lateness of a 10 ms ticker while {LAG_CONNECTIONS} connections send half")
    print("a header and close (server in a child process, heartbeats over a pipe, killed after 5 s silent)")
    for lag in lags:
        config = CONFIGS_BY_KEY[lag.server]
        print(f"  {config.label:<{width}} {config.loop:<7} {lag.text()}")
    print(
        f"  {PANORAMISK_UVLOOP.label:<{width}} {UVLOOP:<7} not run (its header loop never yields once the peer"
        " has closed, on any loop)"
    )
    print(f"  {THREADED_PEER.label:<{width}} {NO_LOOP:<7} n/a (no event loop: one OS thread per connection)")
    for lag in lags:
        if lag.note:
            print(f"  note ({lag.server}): {lag.note}")


def report(loads: list[LoadResult], lags: list[LagResult], plan: Plan, mode: str) -> Headline:
    print()
    rounds = f", median of {plan.rounds} rounds" if plan.rounds > 1 else ""
    print(
        f"FastAGI benchmark ({mode}: {plan.sessions} sessions per server and level, cap {plan.time_cap:.0f} s"
        f"{rounds}; each session = ANSWER, STREAM FILE, GET DATA, SET VARIABLE, VERBOSE)"
    )
    print(
        f"Each server in its own process, listen backlog {BACKLOG} for all; the load generator in another"
        " process, always on the stock asyncio loop."
    )
    print()
    _print_load_table(loads)
    print()
    _print_lag_table(lags)
    print()

    rate = {(r.server, r.concurrency): r.sessions_per_s for r in loads}
    levels = plan.levels

    def ratios(ours: ServerConfig, peer: ServerConfig) -> dict[int, float]:
        return {c: _ratio(rate.get((ours.key, c), 0.0), rate.get((peer.key, c), 0.0)) for c in levels}

    def text(values: dict[int, float]) -> str:
        return ", ".join(f"c={c} {value:.2f}" for c, value in values.items())

    same_asyncio = ratios(OURS_ASYNCIO, PANORAMISK_ASYNCIO)
    same_uvloop = ratios(OURS_UVLOOP, PANORAMISK_UVLOOP)
    as_deployed = ratios(OURS_UVLOOP, PANORAMISK_ASYNCIO)
    print("Ratios of sessions/s:")
    print(f"same loop, asyncio: ours/panoramisk {text(same_asyncio)}")
    print(f"same loop, uvloop: ours/panoramisk {text(same_uvloop)}")
    print(f"as deployed (ours on uvloop / panoramisk on asyncio): {text(as_deployed)}")
    print(
        f"ours/threaded: ours on uvloop {text(ratios(OURS_UVLOOP, THREADED_PEER))};"
        f" ours on asyncio {text(ratios(OURS_ASYNCIO, THREADED_PEER))}"
    )
    cpu = {(r.server, r.concurrency): r.server_cpu_us_per_session for r in loads}
    print(
        f"server CPU per session at c={HEADLINE_LEVEL} (us): "
        + ", ".join(f"{config.key} {_fmt(cpu.get((config.key, HEADLINE_LEVEL)), '.0f')}" for config in CONFIGS)
    )
    bound = [f"{r.server} c={r.concurrency}" for r in loads if _gen_bound(r)]
    if bound:
        print(
            f"gen-bound rows: {', '.join(bound)}: their sessions/s is the generator's ceiling, so a ratio with"
            " one of them in it measures the generator as much as the servers"
        )

    our_lag = next((lag for lag in lags if lag.server == OURS_UVLOOP.key), None)
    if our_lag is None or our_lag.max_lag_ms is None:
        our_lag_ms = our_lag.frozen_for_ms if our_lag is not None and our_lag.frozen else math.nan
    else:
        our_lag_ms = our_lag.max_lag_ms
    return Headline(
        as_deployed=as_deployed.get(HEADLINE_LEVEL, math.nan),
        same_loop_asyncio=same_asyncio.get(HEADLINE_LEVEL, math.nan),
        same_loop_uvloop=same_uvloop.get(HEADLINE_LEVEL, math.nan),
        our_lag_ms=our_lag_ms,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer sessions, one round; under a minute on 2 cores")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--sessions", type=int, help="sessions per server and level (overrides the mode)")
    parser.add_argument("--rounds", type=int, help="rounds per server and level; the median is kept")
    parser.add_argument("--profile", metavar="PATH", help="cProfile our server on uvloop in its c=50 runs into PATH")
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else FULL
    plan = replace(plan, sessions=args.sessions or plan.sessions, rounds=max(1, args.rounds or plan.rounds))
    mode = "quick" if args.quick else "full"
    _quiet_logging()
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")

    started = time.monotonic()
    runs: dict[tuple[str, int], list[LoadResult]] = {}
    # Interleaved (round, level, server) so that a noisy spell on the shared machine hits every server alike.
    for round_no in range(1, plan.rounds + 1):
        for concurrency in plan.levels:
            for config in CONFIGS:
                profile = args.profile if config == OURS_UVLOOP and concurrency == HEADLINE_LEVEL else None
                result = measure_load(ctx, config, concurrency, plan, profile)
                runs.setdefault((config.key, concurrency), []).append(result)
                print(
                    f"  round {round_no}  {config.key:<18} c={concurrency:<4} {result.sessions_per_s:6.0f} sess/s"
                    f"  p50 {_fmt(result.p50_ms, '.1f')} ms  p99 {_fmt(result.p99_ms, '.1f')} ms"
                    f"  gen CPU {_fmt(result.client_cpu_pct, '.0f')}%"
                    + (f"  FAILED: {result.failure}" if result.failure else ""),
                    flush=True,
                )
    loads = [_median_round(runs[(config.key, c)]) for c in plan.levels for config in CONFIGS]
    lags = [measure_lag(ctx, config) for config in LAG_CONFIGS]
    headline = report(loads, lags, plan, mode)
    machine = _machine()
    print(
        f"machine: {machine['nproc']} CPUs, {machine['cpu']}, Python {machine['python']},"
        f" panoramisk {machine['panoramisk']}, uvloop {machine['uvloop']};"
        f" bench took {time.monotonic() - started:.0f} s"
    )
    if args.json:
        document = {
            "mode": mode,
            "plan": asdict(plan),
            "machine": machine,
            "backlog": BACKLOG,
            "configs": [asdict(config) for config in CONFIGS],
            "load": [asdict(r) for r in loads],
            "rounds": {f"{key}@{c}": [asdict(r) for r in rs] for (key, c), rs in runs.items()},
            "loop_lag": [asdict(lag) | {"text": lag.text()} for lag in lags],
            "headline_level": HEADLINE_LEVEL,
            "headline": asdict(headline),
        }
        Path(args.json).write_text(json.dumps(document, indent=2, default=str) + "\n")
        print(f"JSON written to {args.json}")
    # The last two lines are read by scripts; all ratios are sessions/s at concurrency 50.
    print(
        f"same_loop_ratio_asyncio={headline.same_loop_asyncio:.2f}"
        f" same_loop_ratio_uvloop={headline.same_loop_uvloop:.2f}"
    )
    print(f"ratio_vs_panoramisk={headline.as_deployed:.2f} max_loop_lag_ms={headline.our_lag_ms:.1f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # The finally blocks have already terminated (or killed) every child by its handle.
        print("interrupted; every child process was stopped", file=sys.stderr)
        sys.exit(130)
