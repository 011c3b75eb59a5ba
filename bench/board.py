"""Live-board benchmark: AMI events -> reducer -> board -> websocket hub -> 50 real websocket pages, in one process.

A generated event stream of a busy center (200 seats in 20 queues by default; callers join a queue, a free seat
of that queue is rung and answers, talks, completes; callers who find no free seat hang up after a while) is
replayed in real time into the engine's own live service (``LiveService._on_event``: the pure reducer, then the
domain events on the bus), which is what the AMI connection feeds in production. The supervisor package's
notifier rebuilds the board and hands it to the real websocket hub; 50 aiohttp websocket clients, logged in with
a bearer token like a supervisor's page, read the frames over loopback. Everything shares one uvloop event loop,
as the engine does (the clients too: their cost is part of what is measured).

Every board carries ``version``, the number of board-changing events seen when it was built. The feeder notes
when each version happened, the hub (a subclass that only adds timestamps) when it handed each page each frame,
and each page when each frame arrived. Two latencies come out of that, for every event and every page:

- **event to frame** (the headline): from the moment the page was allowed to get a frame showing the event (the
  event itself, or one ``board_interval`` after the hub handed that page its previous frame: the issue's "at most
  one board frame per second per subscriber") to the arrival of the first frame that shows it. This is what the
  pipeline (rebuilding the board, JSON, the hub, the socket) adds to the deliberate rate limit.
- **event to first frame**: the same without the allowance, that is, with the rate limit's wait: an event that
  comes just after a frame waits up to a second for the next one.

The peer, in the same run on the same stream: **rebuild per event**, the same notifier without its build
throttle (the board is rebuilt after every event, at most once per loop iteration; the hub still coalesces what
goes to each page). It shows what the throttle saves.

Usage: ``.venv/bin/python bench/board.py [--quick] [--json PATH]``; ``--quick`` replays 8 s per variant (full: 30 s).
The last line is ``p99_event_to_frame_ms=X``. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import json
import logging
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import uvloop  # noqa: E402
from aiohttp import WSMsgType, web  # noqa: E402
from argon2 import PasswordHasher  # noqa: E402

from callcenter.ami.message import AmiMessage  # noqa: E402
from callcenter.auth.directory import UserDirectory  # noqa: E402
from callcenter.auth.middleware import auth_middleware  # noqa: E402
from callcenter.auth.models import User  # noqa: E402
from callcenter.auth.permissions import Role  # noqa: E402
from callcenter.auth.services import AuthService  # noqa: E402
from callcenter.bus import Bus  # noqa: E402
from callcenter.config import AuthConfig  # noqa: E402
from callcenter.db import Database  # noqa: E402
from callcenter.keys import AUTH, HUB  # noqa: E402
from callcenter.live import LiveService  # noqa: E402
from callcenter.web.errors import error_middleware  # noqa: E402
from callcenter.web.ws import Client, Hub, ws_routes  # noqa: E402
from calls.reads import CallReads  # noqa: E402
from seats.models import AgentSeat  # noqa: E402
from seats.reads import SeatReads  # noqa: E402
from supervisor.board import BoardService  # noqa: E402
from supervisor.notifier import BoardNotifier  # noqa: E402

VERSION = re.compile(r'"version": (\d+)')
# A throwaway user in a throwaway database.
PASSWORD = "bench-board-password"  # noqa: S105
WARMUP = 1.0  # seconds of each replay not measured


@dataclass(frozen=True)
class Plan:
    seats: int = 200
    queues: int = 20
    clients: int = 50
    seconds: float = 30.0
    calls_per_second: float = 10.0
    interval: float = 1.0
    seed: int = 7


@dataclass
class Result:
    label: str
    events: int = 0
    versions: int = 0
    builds: int = 0
    frames: int = 0
    frame_bytes: list[int] = field(default_factory=list)
    build_ms: list[float] = field(default_factory=list)
    to_frame_ms: list[float] = field(default_factory=list)
    to_first_frame_ms: list[float] = field(default_factory=list)
    fanout_ms: list[float] = field(default_factory=list)
    build_to_hub_ms: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    closed_slow: int = 0
    late_feeds: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "events": self.events,
            "events_per_s": self.events / self.wall_seconds if self.wall_seconds else 0.0,
            "board_changes": self.versions,
            "builds": self.builds,
            "builds_per_s": self.builds / self.wall_seconds if self.wall_seconds else 0.0,
            "frames": self.frames,
            "frame_kib": statistics.mean(self.frame_bytes) / 1024 if self.frame_bytes else 0.0,
            "build_ms_p50": pct(self.build_ms, 50),
            "build_ms_p99": pct(self.build_ms, 99),
            "to_frame_ms_p50": pct(self.to_frame_ms, 50),
            "to_frame_ms_p99": pct(self.to_frame_ms, 99),
            "to_frame_ms_max": max(self.to_frame_ms, default=0.0),
            "to_first_frame_ms_p50": pct(self.to_first_frame_ms, 50),
            "to_first_frame_ms_p99": pct(self.to_first_frame_ms, 99),
            "fanout_ms_p50": pct(self.fanout_ms, 50),
            "build_to_hub_ms_p50": pct(self.build_to_hub_ms, 50),
            "build_to_hub_ms_p99": pct(self.build_to_hub_ms, 99),
            "fanout_ms_p99": pct(self.fanout_ms, 99),
            "cpu_percent": 100 * self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0,
            "closed_slow": self.closed_slow,
            "late_feeds": self.late_feeds,
        }


def pct(values: list[float], percent: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(percent / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


# -- the event stream -------------------------------------------------------------------------------------------


def _msg(event: str, **headers: str) -> AmiMessage:
    return AmiMessage.of(("Event", event), *headers.items())


def interfaces(plan: Plan) -> list[str]:
    return [f"PJSIP/{1000 + index}" for index in range(plan.seats)]


def queue_of(plan: Plan, seat: int) -> str:
    return f"q{seat % plan.queues:02d}"


def generate(plan: Plan) -> list[tuple[float, AmiMessage]]:
    """(offset in seconds, event) for one replay: the members first, then the calls, in time order."""
    rng = random.Random(plan.seed)
    seats = interfaces(plan)
    timeline: list[tuple[float, int, AmiMessage]] = []
    order = 0

    def at(offset: float, message: AmiMessage) -> None:
        nonlocal order
        order += 1
        timeline.append((offset, order, message))

    for index, interface in enumerate(seats):
        at(
            0.0,
            _msg(
                "QueueMemberAdded",
                Queue=queue_of(plan, index),
                Interface=interface,
                MemberName=interface,
                StateInterface=interface,
                Membership="dynamic",
                Penalty="0",
                Paused="0",
                Status="1",
                InCall="0",
                CallsTaken="0",
            ),
        )
    free_at = dict.fromkeys(range(plan.seats), 0.5)
    by_queue: dict[str, list[int]] = {}
    for index in range(plan.seats):
        by_queue.setdefault(queue_of(plan, index), []).append(index)
    start = 0.5
    call = 0
    channel = 0
    while start < plan.seconds:
        call += 1
        queue = f"q{rng.randrange(plan.queues):02d}"
        linkedid = f"1800000000.{call * 2}"
        caller = f"PJSIP/pstn-{channel:08x}"
        channel += 1
        number = f"555{rng.randrange(10_000_000):07d}"
        at(
            start,
            _msg(
                "Newchannel",
                Channel=caller,
                ChannelState="4",
                ChannelStateDesc="Ring",
                CallerIDNum=number,
                CallerIDName="Caller",
                Context="from-pstn",
                Exten="4000",
                Uniqueid=linkedid,
                Linkedid=linkedid,
            ),
        )
        join = start + 0.3
        at(
            join,
            _msg(
                "QueueCallerJoin",
                Queue=queue,
                Channel=caller,
                Uniqueid=linkedid,
                Linkedid=linkedid,
                CallerIDNum=number,
                CallerIDName="Caller",
                Position="1",
                Count="1",
            ),
        )
        candidates = [seat for seat in by_queue[queue] if free_at[seat] <= join]
        if not candidates:
            gives_up = join + rng.uniform(3.0, 10.0)
            at(
                gives_up,
                _msg(
                    "QueueCallerAbandon",
                    Queue=queue,
                    Uniqueid=linkedid,
                    Linkedid=linkedid,
                    Position="1",
                    OriginalPosition="1",
                    HoldTime=f"{gives_up - join:.0f}",
                ),
            )
            at(gives_up, _msg("QueueCallerLeave", Queue=queue, Uniqueid=linkedid, Linkedid=linkedid))
            at(gives_up + 0.01, _msg("Hangup", Channel=caller, Uniqueid=linkedid, Linkedid=linkedid, Cause="16"))
        else:
            seat = rng.choice(candidates)
            interface = seats[seat]
            agent_channel = f"{interface}-{channel:08x}"
            agent_id = f"1800000000.{call * 2 + 1}"
            channel += 1
            ring = join + 0.05
            answer = ring + rng.uniform(0.5, 3.0)
            talk = rng.uniform(4.0, 25.0)
            end = answer + talk
            bridge = f"bridge-{call}"
            at(
                ring,
                _msg(
                    "Newchannel",
                    Channel=agent_channel,
                    ChannelState="0",
                    ChannelStateDesc="Down",
                    CallerIDNum=interface[6:],
                    Context="cc-phones",
                    Exten="s",
                    Uniqueid=agent_id,
                    Linkedid=linkedid,
                ),
            )
            at(
                ring,
                _msg(
                    "AgentCalled",
                    Queue=queue,
                    Interface=interface,
                    MemberName=interface,
                    DestChannel=agent_channel,
                    Uniqueid=linkedid,
                    Linkedid=linkedid,
                ),
            )
            at(ring, _msg("DialBegin", Channel=caller, DestChannel=agent_channel))
            at(ring + 0.02, _msg("QueueMemberStatus", Queue=queue, Interface=interface, Status="6", InCall="0"))
            at(
                answer,
                _msg(
                    "Newstate",
                    Channel=agent_channel,
                    ChannelState="6",
                    ChannelStateDesc="Up",
                    Uniqueid=agent_id,
                    Linkedid=linkedid,
                ),
            )
            at(answer, _msg("QueueMemberStatus", Queue=queue, Interface=interface, Status="2", InCall="1"))
            at(answer, _msg("QueueCallerLeave", Queue=queue, Uniqueid=linkedid, Linkedid=linkedid))
            at(
                answer,
                _msg(
                    "AgentConnect",
                    Queue=queue,
                    Interface=interface,
                    MemberName=interface,
                    Uniqueid=linkedid,
                    Linkedid=linkedid,
                    DestChannel=agent_channel,
                    HoldTime=f"{answer - join:.0f}",
                    RingTime="1",
                ),
            )
            at(answer, _msg("BridgeEnter", Channel=caller, Uniqueid=linkedid, Linkedid=linkedid, BridgeUniqueid=bridge))
            at(
                answer,
                _msg("BridgeEnter", Channel=agent_channel, Uniqueid=agent_id, Linkedid=linkedid, BridgeUniqueid=bridge),
            )
            at(
                end,
                _msg(
                    "AgentComplete",
                    Queue=queue,
                    Interface=interface,
                    MemberName=interface,
                    Uniqueid=linkedid,
                    Linkedid=linkedid,
                    HoldTime=f"{answer - join:.0f}",
                    TalkTime=f"{talk:.0f}",
                    Reason="caller",
                ),
            )
            at(end, _msg("BridgeLeave", Channel=caller, Uniqueid=linkedid, Linkedid=linkedid, BridgeUniqueid=bridge))
            at(
                end,
                _msg("BridgeLeave", Channel=agent_channel, Uniqueid=agent_id, Linkedid=linkedid, BridgeUniqueid=bridge),
            )
            at(end + 0.01, _msg("Hangup", Channel=agent_channel, Uniqueid=agent_id, Linkedid=linkedid, Cause="16"))
            at(end + 0.02, _msg("Hangup", Channel=caller, Uniqueid=linkedid, Linkedid=linkedid, Cause="16"))
            at(end + 0.03, _msg("QueueMemberStatus", Queue=queue, Interface=interface, Status="1", InCall="0"))
            # Three seconds of wrap-up (the live model's) before the seat takes another call.
            free_at[seat] = end + 3.5
        start += rng.expovariate(plan.calls_per_second)
    timeline.sort(key=lambda item: (item[0], item[1]))
    return [(offset, message) for offset, _, message in timeline if offset < plan.seconds]


# -- the engine side ------------------------------------------------------------------------------------------


class NoConnection:
    """LiveService's AMI connection, never started: the bench calls the event handler itself."""

    connected = True

    def __init__(self, **_handlers: object) -> None:
        pass


class TimedHub(Hub):
    """The engine's hub, noting when it hands each page a coalesced frame (pages in the order they connected)."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[Client] = []
        self.flushes: dict[int, list[float]] = {}

    def note_new_page(self) -> None:
        self.order.extend(client for client in self._clients if client not in self.order)

    def _flush(self, client: Client, event_type: str) -> None:
        if client.latest.get(event_type) is not None and client in self._clients and client in self.order:
            self.flushes.setdefault(self.order.index(client), []).append(time.perf_counter())
        super()._flush(client, event_type)


class PerEventNotifier(BoardNotifier):
    """The peer: no build throttle; the board is rebuilt for every change (once per loop iteration at most)."""

    def schedule(self) -> None:
        if self._pending:
            return
        self._pending = True
        self._handle = asyncio.get_running_loop().call_soon(self._push)


async def prepare(directory: Path, plan: Plan) -> tuple[Database, AuthService, str]:
    database = Database(f"sqlite+aiosqlite:///{directory / 'bench.sqlite3'}")
    await database.open()
    await database.migrate()
    auth = AuthService(
        database,
        AuthConfig(address_burst=10_000, address_per_minute=10_000.0),
        password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
    await auth.create_user("boss", PASSWORD, roles=[Role.SUPERVISOR], extension="3001")
    now = datetime.now(UTC)
    async with database.session() as session:
        for index, interface in enumerate(interfaces(plan)):
            user = User(
                username=f"agent{index:03d}",
                display_name=f"Agent {index:03d}",
                password_hash="-",  # noqa: S106 - these seats never log in
                extension=interface[6:],
                is_active=True,
                created_at=now,
            )
            session.add(user)
            await session.flush()
            session.add(
                AgentSeat(
                    user_id=user.id,
                    interface=interface,
                    extension=interface[6:],
                    queues=json.dumps([{"queue": queue_of(plan, index), "penalty": 0}]),
                    logged_in_at=now,
                    paused=False,
                )
            )
    token, _ = await auth.login("boss", PASSWORD)
    return database, auth, token


async def run_variant(
    label: str,
    notifier_class: type[BoardNotifier],
    plan: Plan,
    stream: list[tuple[float, AmiMessage]],
    database: Database,
    auth: AuthService,
    token: str,
) -> Result:
    result = Result(label)
    bus = Bus()
    live = LiveService(NoConnection, bus, wrapup={f"q{q:02d}": 3.0 for q in range(plan.queues)})  # type: ignore[arg-type]
    board = BoardService(
        CallReads(database),
        SeatReads(database),
        UserDirectory(database),
        lambda: live.model,
        zone=ZoneInfo("UTC"),
        service_level=20.0,
    )
    await board.load_directory()
    hub = TimedHub()
    notifier = notifier_class(board, hub, bus, interval=plan.interval, refresh=5.0)
    build_snapshot = board.snapshot

    built: dict[int, float] = {}

    def timed_snapshot() -> dict[str, Any]:
        began = time.perf_counter()
        snapshot = build_snapshot()
        result.build_ms.append((time.perf_counter() - began) * 1000)
        built[snapshot["version"]] = began
        return snapshot

    board.snapshot = timed_snapshot  # type: ignore[method-assign]
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[AUTH] = auth
    app[HUB] = hub
    app.add_routes(ws_routes)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    frames: list[list[tuple[float, int]]] = [[] for _ in range(plan.clients)]
    sizes: list[int] = []
    notifier.start()
    session = aiohttp.ClientSession()
    readers: list[asyncio.Task[None]] = []
    try:
        sockets = []
        for index in range(plan.clients):
            # One at a time, so that the hub's n-th connection is page n.
            sockets.append(
                await session.ws_connect(
                    f"http://127.0.0.1:{port}/api/v1/ws", headers={"Authorization": f"Bearer {token}"}, max_msg_size=0
                )
            )
            while hub.connections < index + 1:
                await asyncio.sleep(0.005)
            hub.note_new_page()

        async def read(index: int, socket: aiohttp.ClientWebSocketResponse) -> None:
            async for message in socket:
                if message.type is not WSMsgType.TEXT:
                    break
                arrived = time.perf_counter()
                found = VERSION.search(message.data, 0, 200)
                if found is not None and message.data.startswith('{"type": "board"'):
                    frames[index].append((arrived, int(found.group(1))))
                    if index == 0:
                        sizes.append(len(message.data.encode()))

        readers = [asyncio.create_task(read(index, socket)) for index, socket in enumerate(sockets)]
        fed: list[float] = [0.0]  # fed[v]: when the board reached version v
        gc.collect()
        cpu0 = time.process_time()
        begin = time.perf_counter()
        for offset, message in stream:
            delay = begin + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.05 and offset >= WARMUP:
                result.late_feeds += 1
            live._on_event(message)
            result.events += 1
            if board.version >= len(fed):
                now = time.perf_counter()
                fed.extend([now] * (board.version + 1 - len(fed)))
        result.wall_seconds = time.perf_counter() - begin
        result.cpu_seconds = time.process_time() - cpu0
        await asyncio.sleep(plan.interval * 1.5 + 0.5)
        result.versions = board.version
        result.builds = notifier.builds
        result.closed_slow = hub.closed_slow
        measured_from = begin + WARMUP
        for number, page in enumerate(frames):
            result.frames += len(page)
            versions = [version for _, version in page]
            sent = hub.flushes.get(number, [])
            if len(sent) != len(page):
                raise SystemExit(f"page {number}: {len(page)} frames but the hub sent {len(sent)}")
            for (arrived, version), handed in zip(page, sent, strict=True):
                if handed >= measured_from:
                    result.fanout_ms.append((arrived - handed) * 1000)
                    if version in built:
                        result.build_to_hub_ms.append((handed - built[version]) * 1000)
            for version in range(1, len(fed)):
                if fed[version] < measured_from:
                    continue
                index = bisect.bisect_left(versions, version)
                if index == len(page):
                    continue
                arrived = page[index][0]
                result.to_first_frame_ms.append((arrived - fed[version]) * 1000)
                # The earliest moment the rate limit let a frame show this event to this page: the event itself,
                # or one interval after the hub handed this page its previous frame.
                allowed = fed[version]
                if index > 0:
                    allowed = max(allowed, sent[index - 1] + plan.interval)
                result.to_frame_ms.append((arrived - allowed) * 1000)
        result.frame_bytes = sizes
        for socket in sockets:
            await socket.close()
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await session.close()
        await notifier.close()
        await board.close()
        await hub.close()
        await runner.cleanup()
    return result


def report(plan: Plan, results: list[Result]) -> None:
    print()
    header = (
        f"{'variant':<38} {'builds/s':>8} {'frame KiB':>9} {'build ms p50/p99':>17} "
        f"{'event->frame ms p50/p99/max':>28} {'event->first frame p50/p99':>27} {'CPU':>5}"
    )
    print(header)
    for result in results:
        s = result.summary()
        print(
            f"{s['label']:<38} {s['builds_per_s']:>8.1f} {s['frame_kib']:>9.1f} "
            f"{s['build_ms_p50']:>8.2f}/{s['build_ms_p99']:<8.2f} "
            f"{s['to_frame_ms_p50']:>9.1f}/{s['to_frame_ms_p99']:.1f}/{s['to_frame_ms_max']:<9.1f} "
            f"{s['to_first_frame_ms_p50']:>13.1f}/{s['to_first_frame_ms_p99']:<13.1f} {s['cpu_percent']:>4.0f}%"
        )
        print(
            f"    build -> hub hands the frame to the page: p50 {s['build_to_hub_ms_p50']:.1f} ms, "
            f"p99 {s['build_to_hub_ms_p99']:.1f} ms; hub -> page (socket, client): p50 {s['fanout_ms_p50']:.1f} ms, "
            f"p99 {s['fanout_ms_p99']:.1f} ms"
        )
        print(
            f"    {s['events']} events ({s['events_per_s']:.0f}/s), {s['board_changes']} board changes, "
            f"{s['frames']} frames to {plan.clients} pages, {s['closed_slow']} pages closed as slow, "
            f"{s['late_feeds']} events fed >50 ms late (after the first second)"
        )


async def main_async(plan: Plan, json_path: str | None) -> int:
    stream = generate(plan)
    with tempfile.TemporaryDirectory(prefix="cc-bench-board-") as directory:
        database, auth, token = await prepare(Path(directory), plan)
        try:
            loop = asyncio.get_running_loop()
            print(
                f"board bench: {plan.seats} seats, {plan.queues} queues, {plan.clients} websocket pages, "
                f"{len(stream)} events over {plan.seconds:.0f} s ({plan.calls_per_second:.0f} calls/s), "
                f"board_interval {plan.interval} s, loop {type(loop).__module__}",
                flush=True,
            )
            results = [
                await run_variant(
                    "ours (build at most once per interval)", BoardNotifier, plan, stream, database, auth, token
                ),
                await run_variant("peer: rebuild per event", PerEventNotifier, plan, stream, database, auth, token),
            ]
        finally:
            await database.close()
    report(plan, results)
    ours = results[0].summary()
    if json_path:
        document = {
            "plan": asdict(plan),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "results": [result.summary() for result in results],
        }
        Path(json_path).write_text(json.dumps(document, indent=2), encoding="utf-8")
        print(f"JSON written to {json_path}")
    print(
        f"p99_event_to_first_frame_ms={ours['to_first_frame_ms_p99']:.1f} (includes the {plan.interval} s page limit)"
    )
    print(f"p99_event_to_frame_ms={ours['to_frame_ms_p99']:.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="8 s of replay per variant instead of 30 s")
    parser.add_argument("--seats", type=int, default=200)
    parser.add_argument("--queues", type=int, default=20)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--calls-per-second", type=float, default=10.0)
    parser.add_argument("--json", help="also write every number to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    plan = Plan(
        seats=args.seats,
        queues=args.queues,
        clients=args.clients,
        seconds=8.0 if args.quick else 30.0,
        calls_per_second=args.calls_per_second,
    )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main_async(plan, args.json))


if __name__ == "__main__":
    sys.exit(main())
