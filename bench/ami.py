"""AMI benchmark: our inbound path against panoramisk's Manager, and our parser plus the live-model reducer.

The stream is built from the transcripts recorded on the real sandbox (``tests/fixtures/ami/*.ami``): their
unsolicited events, in the order Asterisk sent them and byte for byte, repeated with fresh uniqueids,
linkedids, channel sequence numbers and bridge ids until there are at least 100,000 events (3 calls a copy,
3,573 distinct calls in all). Every measured configuration gets the same bytes, cut into the same chunks, in
one process and on one event loop:

- **ours**: ``_Session.data_received`` of :mod:`callcenter.ami.connection` on a transport that goes nowhere,
  that is the engine's whole inbound path (parse, route, bounded queue, dispatcher task) up to ``on_event``;
  ``on_event`` dispatches each event to counting handlers for 10 patterns (names looked up once per name).
- **panoramisk**: ``AMIProtocol.data_received`` of panoramisk 1.4 attached to a ``Manager`` the way
  ``Manager.connect`` attaches it, with a counting handler registered for each of the same 10 patterns.
- **pipeline**: ours with ``on_event`` folding each event into the live model with the pure reducer
  (``callcenter.ami.reducer.apply``), as ``callcenter.live`` does, without publishing the domain events.
- **parse only** (ours: ``AmiParser.feed``) and **reducer only** (``apply`` over parsed events) split the
  pipeline's cost in two.
- **reference parse**: ``ReferenceAmiParser.feed`` (:mod:`callcenter.ami.parser_reference`), the plain
  line-by-line parser that says what ``AmiParser`` must give, on the same chunks: what the fast parser's tricks
  buy. Its messages must equal the fast parser's, or the run fails.

Between two chunks the feeder yields to the loop once (``await asyncio.sleep(0)``), as a socket read would,
so that our dispatcher drains the queue; the run fails if an event is dropped or the sides disagree on the
count per pattern. Rates are events per second of the process's CPU time (one core); wall-clock rates are
shown beside them.

Usage: ``.venv/bin/python bench/ami.py [--quick] [--json PATH] [--profile PATH]`` (``make bench`` runs
``--quick``). The last line is ``ratio_vs_panoramisk=X.XX pipeline_events_per_s=N``. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import fnmatch
import gc
import importlib.metadata
import json
import logging
import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import uvloop  # noqa: E402
from panoramisk.ami_protocol import AMIProtocol  # noqa: E402
from panoramisk.manager import Manager  # noqa: E402

from callcenter.ami.connection import INBOUND_MAX_LINE, AmiConnection, _EventQueue, _Session  # noqa: E402
from callcenter.ami.message import MAX_HEADERS, AmiMessage, AmiParser  # noqa: E402
from callcenter.ami.parser_reference import ReferenceAmiParser  # noqa: E402
from callcenter.ami.reducer import apply  # noqa: E402
from callcenter.model import LiveModel  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "ami"
TRANSCRIPTS = ("answered", "abandoned", "status")
# What a call-center application subscribes to: the 10 patterns both sides register.
PATTERNS = (
    "Newchannel",
    "Newstate",
    "Hangup",
    "Dial*",
    "BridgeEnter",
    "BridgeLeave",
    "QueueCaller*",
    "QueueMember*",
    "Agent*",
    "MusicOnHold*",
)
# The transcripts carry no timestamps: the pipeline's clock moves a quarter second per event (as the replay tests).
STEP = 0.25
WRAPUP = {"support": 10.0, "expert": 10.0}
KIB = 1024
QUEUE_SIZE = 10000  # AmiConnection's default, which the engine uses

_UNIQUEID = re.compile(rb"\b\d{9,10}\.\d+\b")
_CHANNEL_SEQUENCE = re.compile(rb"(?<=[A-Za-z0-9]/)[^\s/;,]*?-([0-9a-f]{8})\b")
_BRIDGE_ID = re.compile(rb"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_SEAT = re.compile(rb"(?<=PJSIP/)\d{4}\b")


@dataclass(frozen=True)
class Scenario:
    """How the stream is delivered: chunk size in bytes (0: one event per read) and calls overlapping."""

    label: str
    chunk: int
    overlap: int = 1


@dataclass(frozen=True)
class Plan:
    events: int
    rounds: int
    scenarios: tuple[Scenario, ...]


BURST = Scenario("16 KiB reads", 16 * KIB)
QUICK = Plan(events=100_000, rounds=1, scenarios=(BURST,))
FULL = Plan(
    events=100_000,
    rounds=3,
    scenarios=(BURST, Scenario("one event per read", 0), Scenario("16 KiB reads, 20 calls at once", 16 * KIB, 20)),
)


# --------------------------------------------------------------------------------------------------------
# The stream
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """The banner and the unsolicited events of the transcripts, each block with its blank line."""

    banner: bytes
    events: tuple[bytes, ...]
    dropped: dict[str, int]


def load_recorded(directory: Path = FIXTURES, names: Sequence[str] = TRANSCRIPTS) -> Recorded:
    """Events only: replies and the list events that answer an action (they carry its ActionID) go to the
    action's result in the engine, never to ``on_event``; TestEvent exists only in Asterisk builds with the test
    framework, which the sandbox has and production does not."""
    banner = b""
    events: list[bytes] = []
    dropped = {"replies": 0, "list events": 0, "TestEvent": 0}
    for name in names:
        data = (directory / f"{name}.ami").read_bytes()
        first, _, body = data.partition(b"\r\n")
        banner = banner or first + b"\r\n"
        for block in body.split(b"\r\n\r\n"):
            if not block.strip():
                continue
            if not block.startswith(b"Event: "):
                dropped["replies"] += 1
            elif b"\r\nActionID: " in block:
                dropped["list events"] += 1
            elif block.startswith(b"Event: TestEvent\r\n"):
                dropped["TestEvent"] += 1
            else:
                events.append(block + b"\r\n\r\n")
    if not banner.startswith(b"Asterisk Call Manager/") or not events:
        raise SystemExit(f"no AMI transcript with events in {directory}")
    return Recorded(banner, tuple(events), dropped)


@dataclass(frozen=True)
class _Templates:
    """The events as ``%``-templates whose identifiers are placeholders (``u``, ``c``, ``b``, ``s`` + index)."""

    events: list[bytes]
    uniqueids: int
    channels: int
    bridges: int
    seats: list[bytes]  # the recorded extension behind each seat placeholder


def _templates(events: Sequence[bytes]) -> _Templates:
    seen: dict[bytes, bytes] = {}
    counts = {"u": 0, "c": 0, "b": 0, "s": 0}
    seats: list[bytes] = []

    def placeholder(kind: str, original: bytes) -> bytes:
        key = kind.encode() + b":" + original
        if key not in seen:
            seen[key] = b"%%(%s%d)b" % (kind.encode(), counts[kind])
            counts[kind] += 1
            if kind == "s":
                seats.append(original)
        return seen[key]

    out = []
    for event in events:
        text = event.replace(b"%", b"%%")
        text = _UNIQUEID.sub(lambda m: placeholder("u", m.group(0)), text)
        text = _BRIDGE_ID.sub(lambda m: placeholder("b", m.group(0)), text)
        text = _SEAT.sub(lambda m: placeholder("s", m.group(0)), text)
        text = _CHANNEL_SEQUENCE.sub(lambda m: m.group(0)[: -len(m.group(1))] + placeholder("c", m.group(1)), text)
        out.append(text)
    return _Templates(out, counts["u"], counts["c"], counts["b"], seats)


@dataclass
class Stream:
    banner: bytes
    events: list[bytes]
    copies: int
    overlap: int

    @property
    def size(self) -> int:
        return len(self.banner) + sum(map(len, self.events))

    def chunks(self, size: int) -> list[bytes]:
        """The bytes as a socket could deliver them: ``size``-byte reads, or one event per read when 0."""
        if size <= 0:
            return [self.banner + self.events[0], *self.events[1:]]
        data = self.banner + b"".join(self.events)
        return [data[offset : offset + size] for offset in range(0, len(data), size)]


def build_stream(recorded: Recorded, min_events: int, overlap: int = 1) -> Stream:
    """Copies of the recorded events with fresh identifiers until there are at least ``min_events``.

    Copy ``n`` gets uniqueids ``(1900000000 + n).i``, its own channel sequence numbers and bridge ids, so every
    copy is a new set of calls. With ``overlap`` > 1, that many copies are interleaved event by event, so that
    many calls are live at once (each copy keeps its own order); each of them gets its own agents' seats
    (extension + 10000 x its slot), so that every agent's state machine stays the one that was recorded.
    """
    templates = _templates(recorded.events)
    overlap = max(1, overlap)
    copies = math.ceil(max(1, math.ceil(min_events / len(templates.events))) / overlap) * overlap
    rendered: list[list[bytes]] = []
    for copy in range(copies):
        slot = copy % overlap
        values: dict[bytes, bytes] = {}
        for i in range(templates.uniqueids):
            values[b"u%d" % i] = b"%d.%d" % (1_900_000_000 + copy, i)
        for i in range(templates.channels):
            values[b"c%d" % i] = b"%08x" % (copy * templates.channels + i)
        for i in range(templates.bridges):
            values[b"b%d" % i] = b"%08x-0000-4000-8000-%012x" % (copy, i)
        for i, seat in enumerate(templates.seats):
            values[b"s%d" % i] = b"%d" % (int(seat) + 10000 * slot)
        rendered.append([template % values for template in templates.events])
    events: list[bytes] = []
    for start in range(0, copies, overlap):
        group = rendered[start : start + overlap]
        for index in range(len(templates.events)):
            events.extend(copy_events[index] for copy_events in group)
    return Stream(recorded.banner, events, copies, overlap)


# --------------------------------------------------------------------------------------------------------
# The sides
# --------------------------------------------------------------------------------------------------------


class NullTransport:
    """Where the sides' writes go (panoramisk writes nothing here; our session writes nothing unless asked)."""

    def __init__(self) -> None:
        self.closed = False
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


@dataclass
class Run:
    name: str
    scenario: str
    events: int
    wall: float
    cpu: float
    counts: dict[str, int] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / self.cpu if self.cpu > 0 else math.inf

    @property
    def wall_events_per_s(self) -> float:
        return self.events / self.wall if self.wall > 0 else math.inf

    @property
    def us_per_event(self) -> float:
        return self.cpu / self.events * 1e6


class PatternDispatch:
    """Our ``on_event`` for the comparison: each event goes to the handlers of the patterns its name matches.

    The patterns match as panoramisk's do (``fnmatch``, case-sensitive); the handlers of a name are found once
    and kept, since an application's patterns do not change while events arrive.
    """

    def __init__(self, handlers: dict[str, Callable[[AmiMessage], None]]) -> None:
        self._handlers = handlers
        self._by_name: dict[str, tuple[Callable[[AmiMessage], None], ...]] = {}

    def __call__(self, message: AmiMessage) -> None:
        name = message.event
        handlers = self._by_name.get(name)
        if handlers is None:
            handlers = self._by_name[name] = tuple(
                handler for pattern, handler in self._handlers.items() if fnmatch.fnmatchcase(name, pattern)
            )
        for handler in handlers:
            handler(message)


class Fold:
    """The pipeline's ``on_event``: the live model folded by the pure reducer, as ``callcenter.live`` does."""

    def __init__(self) -> None:
        self.model = LiveModel(wrapup=dict(WRAPUP))
        self.now = 1_000.0
        self.events = 0
        self.domain_events = 0

    def __call__(self, message: AmiMessage) -> None:
        self.now += STEP
        self.events += 1
        self.model, produced = apply(self.model, message, self.now)
        self.domain_events += len(produced)


def _counters(counts: dict[str, int]) -> dict[str, Callable[[AmiMessage], None]]:
    def counter(pattern: str) -> Callable[[AmiMessage], None]:
        def handler(_message: AmiMessage) -> None:
            counts[pattern] += 1

        return handler

    return {pattern: counter(pattern) for pattern in PATTERNS}


class _Clock:
    def __init__(self) -> None:
        gc.collect()
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


async def _feed(data_received: Callable[[bytes], None], chunks: Iterable[bytes]) -> None:
    for chunk in chunks:
        data_received(chunk)
        await asyncio.sleep(0)


async def run_ours(
    chunks: Sequence[bytes], on_event: Callable[[AmiMessage], None], *, name: str = "ours", scenario: str = ""
) -> Run:
    """Our inbound path: the session parses and routes, the connection's dispatcher task calls ``on_event``."""
    connection = AmiConnection("127.0.0.1", 5038, "bench", "bench-secret-0", on_event=on_event, queue_size=QUEUE_SIZE)
    # What AmiConnection.start() sets up for events, without the supervisor that would connect to Asterisk.
    connection._queue = _EventQueue(QUEUE_SIZE)
    dispatcher = asyncio.get_running_loop().create_task(connection._dispatch(on_event), name="bench-dispatcher")
    session = _Session(connection, AmiParser(max_line=INBOUND_MAX_LINE, max_headers=MAX_HEADERS))
    session.connection_made(NullTransport())  # type: ignore[arg-type]
    session.logged_in = True  # as once the Login's answer is read: the stream is what a logged-in session gets
    try:
        clock = _Clock()
        await _feed(session.data_received, chunks)
        while connection.queue_depth:
            await asyncio.sleep(0)
        wall, cpu = clock.stop()
    finally:
        dispatcher.cancel()
        await asyncio.gather(dispatcher, return_exceptions=True)
        session.fail("bench over")
    stats = connection.stats
    if stats.dropped or stats.protocol_errors or stats.unmatched_replies:
        raise RuntimeError(f"{name}: events lost: {stats}")
    return Run(name, scenario, stats.events, wall, cpu)


async def run_ours_patterns(chunks: Sequence[bytes], scenario: str = "") -> Run:
    counts = dict.fromkeys(PATTERNS, 0)
    run = await run_ours(chunks, PatternDispatch(_counters(counts)), scenario=scenario)
    run.counts = counts
    return run


async def run_panoramisk(chunks: Sequence[bytes], scenario: str = "") -> Run:
    """panoramisk's protocol attached to its Manager as ``Manager.connect`` does, 10 counting patterns."""
    loop = asyncio.get_running_loop()
    manager = Manager(loop=loop)
    counts = dict.fromkeys(PATTERNS, 0)
    events = 0

    def counter(pattern: str) -> Callable[[Manager, Any], None]:
        def handler(_manager: Manager, _event: Any) -> None:
            counts[pattern] += 1

        return handler

    for pattern in PATTERNS:
        manager.register_event(pattern, counter(pattern))
    dispatch = manager.dispatch

    # Counts what reaches dispatch: one more Python call per event, well under 1% of panoramisk's cost.
    def counting_dispatch(event: Any) -> Any:
        nonlocal events
        events += 1
        return dispatch(event)

    protocol: AMIProtocol = manager.config["protocol_factory"]()
    transport = NullTransport()
    protocol.connection_made(transport)
    made: asyncio.Future[tuple[NullTransport, AMIProtocol]] = loop.create_future()
    made.set_result((transport, protocol))
    # As when create_connection completes: the manager adopts the protocol (factory, encoding, pinger).
    manager.connection_made(made)
    manager.dispatch = counting_dispatch
    try:
        clock = _Clock()
        await _feed(protocol.data_received, chunks)
        wall, cpu = clock.stop()
    finally:
        manager.close()
    return Run("panoramisk", scenario, events, wall, cpu, counts)


async def run_pipeline(chunks: Sequence[bytes], scenario: str = "") -> Run:
    fold = Fold()
    run = await run_ours(chunks, fold, name="pipeline", scenario=scenario)
    run.notes = {
        "domain_events": fold.domain_events,
        "live_calls_at_end": len(fold.model.calls),
        "live_channels_at_end": len(fold.model.channels),
        "agents": len(fold.model.agents),
    }
    if fold.events != run.events:
        raise RuntimeError(f"pipeline: {run.events} events routed, {fold.events} folded")
    return run


def run_parse(chunks: Sequence[bytes], scenario: str = "") -> tuple[Run, list[AmiMessage]]:
    """Our parser alone; the messages are kept (outside the timing) for the reducer-only run."""
    parser = AmiParser(max_line=INBOUND_MAX_LINE, max_headers=MAX_HEADERS)
    count = 0
    clock = _Clock()
    for chunk in chunks:
        count += len(parser.feed(chunk))
    wall, cpu = clock.stop()
    parser = AmiParser(max_line=INBOUND_MAX_LINE, max_headers=MAX_HEADERS)
    messages = [message for chunk in chunks for message in parser.feed(chunk)]
    return Run("parse only", scenario, count, wall, cpu), messages


def run_parse_reference(chunks: Sequence[bytes], expected: Sequence[AmiMessage], scenario: str = "") -> Run:
    """The reference parser alone, on the same chunks; its messages are checked (outside the timing) against
    ``expected``, the fast parser's."""
    parser = ReferenceAmiParser(max_line=INBOUND_MAX_LINE, max_headers=MAX_HEADERS)
    messages: list[AmiMessage] = []
    clock = _Clock()
    for chunk in chunks:
        messages += parser.feed(chunk)
    wall, cpu = clock.stop()
    if messages != list(expected):
        raise RuntimeError("reference parse: the reference parser and AmiParser disagree on the stream")
    return Run("reference parse", scenario, len(messages), wall, cpu)


def run_reducer(messages: Sequence[AmiMessage], scenario: str = "") -> Run:
    fold = Fold()
    clock = _Clock()
    for message in messages:
        fold(message)
    wall, cpu = clock.stop()
    return Run("reducer only", scenario, len(messages), wall, cpu, notes={"domain_events": fold.domain_events})


def check_same_counts(ours: Run, peer: Run) -> None:
    if ours.events != peer.events or ours.counts != peer.counts:
        raise RuntimeError(f"the sides disagree: ours {ours.events} {ours.counts}, peer {peer.events} {peer.counts}")


# --------------------------------------------------------------------------------------------------------
# Running and reporting
# --------------------------------------------------------------------------------------------------------

ORDER = ("ours", "panoramisk", "pipeline", "parse only", "reducer only", "reference parse")


async def one_round(stream: Stream, scenario: Scenario) -> list[Run]:
    chunks = stream.chunks(scenario.chunk)
    ours = await run_ours_patterns(chunks, scenario.label)
    peer = await run_panoramisk(chunks, scenario.label)
    check_same_counts(ours, peer)
    pipeline = await run_pipeline(chunks, scenario.label)
    parse, messages = run_parse(chunks, scenario.label)
    reducer = run_reducer(messages, scenario.label)
    reference = run_parse_reference(chunks, messages, scenario.label)
    del messages
    return [ours, peer, pipeline, parse, reducer, reference]


def _median_run(runs: list[Run]) -> Run:
    ordered = sorted(runs, key=lambda run: run.cpu)
    return ordered[len(ordered) // 2]


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def report(results: dict[tuple[str, str], list[Run]], plan: Plan) -> dict[str, Any]:
    print()
    print(f"Median of {plan.rounds} round(s); events/s of CPU time (one core), wall-clock beside it.")
    summary: dict[str, Any] = {}
    for scenario in plan.scenarios:
        print(f"\n{scenario.label}:")
        print(f"  {'configuration':<15} {'events':>8} {'events/s':>10} {'µs/event':>9} {'wall ev/s':>10}  range")
        medians: dict[str, Run] = {}
        for name in ORDER:
            runs = results[(scenario.label, name)]
            median = medians[name] = _median_run(runs)
            low = min(run.events_per_s for run in runs)
            high = max(run.events_per_s for run in runs)
            print(
                f"  {name:<15} {median.events:>8} {_fmt_rate(median.events_per_s):>10} {median.us_per_event:>9.1f}"
                f" {_fmt_rate(median.wall_events_per_s):>10}  {_fmt_rate(low)}-{_fmt_rate(high)}"
            )
        ratio = medians["ours"].events_per_s / medians["panoramisk"].events_per_s
        ratios = [
            ours.events_per_s / peer.events_per_s
            for ours, peer in zip(
                results[(scenario.label, "ours")], results[(scenario.label, "panoramisk")], strict=True
            )
        ]
        print(
            f"  ours/panoramisk {ratio:.2f} (rounds {min(ratios):.2f}-{max(ratios):.2f});"
            f" pipeline {medians['pipeline'].us_per_event:.1f} µs/event = inbound"
            f" {medians['ours'].us_per_event:.1f} + reducer {medians['reducer only'].us_per_event:.1f};"
            f" {medians['pipeline'].notes.get('domain_events', 0)} domain events;"
            f" the fast parser reads {medians['parse only'].events_per_s / medians['reference parse'].events_per_s:.1f}"
            " times the reference's events/s"
        )
        summary[scenario.label] = {
            "ratio_vs_panoramisk": ratio,
            "round_ratios": ratios,
            "events_per_s": {name: run.events_per_s for name, run in medians.items()},
            "us_per_event": {name: run.us_per_event for name, run in medians.items()},
            "pipeline_notes": medians["pipeline"].notes,
        }
    return summary


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "panoramisk": importlib.metadata.version("panoramisk"),
        "uvloop": importlib.metadata.version("uvloop"),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop] | None] = {"uvloop": uvloop.new_event_loop, "asyncio": None}


def _run_async(loop: str, coroutine: Callable[[], Awaitable[Any]]) -> Any:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        return runner.run(coroutine())  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of the 16 KiB scenario (about 15 s)")
    parser.add_argument("--events", type=int, help="at least this many events in the stream (default 100,000)")
    parser.add_argument("--rounds", type=int, help="rounds per scenario; the median is kept")
    parser.add_argument("--loop", choices=sorted(LOOPS), default="uvloop", help="event loop (default: uvloop)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--profile", metavar="PATH", help="cProfile an extra pipeline run into PATH")
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else FULL
    plan = Plan(args.events or plan.events, max(1, args.rounds or plan.rounds), plan.scenarios)
    logging.getLogger("callcenter").setLevel(logging.ERROR)
    logging.getLogger("panoramisk").setLevel(logging.ERROR)
    started = time.monotonic()
    recorded = load_recorded()
    streams = {overlap: build_stream(recorded, plan.events, overlap) for overlap in {s.overlap for s in plan.scenarios}}
    first = streams[1] if 1 in streams else next(iter(streams.values()))
    print(
        f"stream: {len(first.events)} events ({len(recorded.events)} recorded events x {first.copies} copies with"
        f" fresh ids), {first.size / 1e6:.1f} MB; left out of the recording: {recorded.dropped}"
    )
    print(f"patterns ({len(PATTERNS)}): {', '.join(PATTERNS)}; loop: {args.loop}")

    results: dict[tuple[str, str], list[Run]] = {}
    for round_no in range(1, plan.rounds + 1):
        for scenario in plan.scenarios:
            stream = streams[scenario.overlap]
            runs = _run_async(args.loop, lambda s=stream, sc=scenario: one_round(s, sc))
            for run in runs:
                results.setdefault((scenario.label, run.name), []).append(run)
            rates = "  ".join(f"{run.name} {_fmt_rate(run.events_per_s)}" for run in runs)
            print(f"  round {round_no}  {scenario.label}: {rates} events/s", flush=True)
    if args.profile:
        # An extra pipeline run under cProfile, after the measured ones and not counted in them.
        chunks = streams[plan.scenarios[0].overlap].chunks(plan.scenarios[0].chunk)
        profiler = cProfile.Profile()
        profiler.enable()
        _run_async(args.loop, lambda: run_pipeline(chunks))
        profiler.disable()
        profiler.dump_stats(args.profile)
    summary = report(results, plan)
    machine = _machine()
    print(
        f"\nmachine: {machine['nproc']} CPUs, {machine['cpu']}, Python {machine['python']},"
        f" panoramisk {machine['panoramisk']}, uvloop {machine['uvloop']}, load {machine['load_average']};"
        f" bench took {time.monotonic() - started:.0f} s"
    )
    if args.profile:
        print(f"profile of an extra pipeline run ({plan.scenarios[0].label}): python -m pstats {args.profile}")
    if args.json:
        document = {
            "mode": "quick" if args.quick else "full",
            "plan": asdict(plan),
            "patterns": PATTERNS,
            "machine": machine,
            "summary": summary,
            "runs": [asdict(run) for runs in results.values() for run in runs],
        }
        Path(args.json).write_text(json.dumps(document, indent=2, default=str) + "\n")
        print(f"JSON written to {args.json}")
    headline = summary[plan.scenarios[0].label]
    pipeline_rate = statistics.median(run.events_per_s for run in results[(plan.scenarios[0].label, "pipeline")])
    print(f"ratio_vs_panoramisk={headline['ratio_vs_panoramisk']:.2f} pipeline_events_per_s={pipeline_rate:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
