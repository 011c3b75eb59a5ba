"""Socket-level FastAGI tests: the test plays Asterisk over a real loopback TCP connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from callcenter.agi.exceptions import (
    AgiCommandFailed,
    AgiConnectionLost,
    AgiDeadChannel,
    AgiHangup,
    AgiUsageError,
)
from callcenter.agi.server import AccessPolicy, FastAgiServer, Handler, ServerLimits
from callcenter.agi.session import AgiSession, DataResult, RecordResult
from callcenter.calllog import LOG_FORMAT, CallContextFilter
from callcenter.dialplan import ACTION_FALLBACK, VAR_ACTION

UNIQUEID = "1700000000.9"
LINKEDID = "1700000000.5"
DEAD = "511 Command Not Permitted on a dead channel or intercepted channel"

# One step of a fake Asterisk's script: the prefix the command line must start with, and the reply line(s).
Step = tuple[str, str | Sequence[str]]


def asterisk_header(
    script: str = f"ivr?linkedid={LINKEDID}",
    *,
    uniqueid: str = UNIQUEID,
    calleridname: str = "Alice Example",
    args: Sequence[str] = (),
) -> bytes:
    """The environment block Asterisk 22 writes first on a FastAGI connection."""
    lines = [
        "agi_network: yes",
        f"agi_network_script: {script}",
        f"agi_request: agi://127.0.0.1:4573/{script}",
        "agi_channel: PJSIP/pstn-00000007",
        "agi_language: en",
        "agi_type: PJSIP",
        f"agi_uniqueid: {uniqueid}",
        "agi_version: 22.10.1",
        "agi_callerid: 5551234",
        f"agi_calleridname: {calleridname}",
        "agi_callingpres: 0",
        "agi_callingani2: 0",
        "agi_callington: 0",
        "agi_callingtns: 0",
        "agi_dnid: 4000",
        "agi_rdnis: unknown",
        "agi_context: from-pstn",
        "agi_extension: 4000",
        "agi_priority: 2",
        "agi_enhanced: 0.0",
        "agi_accountcode: ",
        "agi_threadid: 140245178660544",
        *(f"agi_arg_{index}: {arg}" for index, arg in enumerate(args, start=1)),
        "",
    ]
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def res_agi_words(line: str) -> list[str]:
    """How res_agi.c parse_args() splits a command line (quotes group, backslash escapes)."""
    words: list[list[str]] = []
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                words.append([])
                whitespace = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            words.append([])
            whitespace = False
        words[-1].append(ch)
        escaped = False
    return ["".join(word) for word in words]


class FakeAsterisk:
    """The Asterisk end of one FastAGI connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received: list[str] = []

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_header(self, script: str = f"ivr?linkedid={LINKEDID}", **kwargs: Any) -> None:
        await self.send(asterisk_header(script, **kwargs))

    async def next_line(self, timeout: float = 5.0) -> str | None:
        """The next command line from the server; ``None`` once the server closed the connection."""
        try:
            raw = await asyncio.wait_for(self.reader.readline(), timeout)
        except ConnectionResetError:
            return None
        if not raw:
            return None
        assert raw.endswith(b"\n"), f"server sent a partial line {raw!r}"
        line = raw.decode("utf-8").removesuffix("\n")
        self.received.append(line)
        return line

    async def play(self, script: Sequence[Step]) -> list[str]:
        """Answers the expected commands in order; returns the command lines as received."""
        commands: list[str] = []
        for prefix, replies in script:
            line = await self.next_line()
            assert line is not None, f"connection closed while Asterisk waited for {prefix!r}"
            assert line.startswith(prefix), f"expected {prefix!r}, got {line!r}"
            commands.append(line)
            for reply in [replies] if isinstance(replies, str) else replies:
                self.writer.write(f"{reply}\n".encode())
            await self.writer.drain()
        return commands

    async def expect_closed(self, timeout: float = 5.0) -> None:
        """The server must close the connection without sending another command."""
        line = await self.next_line(timeout)
        assert line is None, f"unexpected command {line!r}"

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def fake_asterisk(port: int) -> AsyncIterator[FakeAsterisk]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    channel = FakeAsterisk(reader, writer)
    try:
        yield channel
    finally:
        await channel.close()


async def run_call(port: int, script: Sequence[Step], network_script: str = f"ivr?linkedid={LINKEDID}") -> list[str]:
    """A whole call: header, the scripted commands, then the server hangs up with nothing more to say."""
    async with fake_asterisk(port) as channel:
        await channel.send_header(network_script)
        commands = await channel.play(script)
        await channel.expect_closed()
        return commands


@dataclass
class RecordingObserver:
    started: list[str] = field(default_factory=list)
    ended: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def session_started(self, session: AgiSession) -> None:
        self.started.append(session.uniqueid)

    def session_ended(self, session: AgiSession, outcome: str, seconds: float) -> None:
        assert seconds >= 0
        self.ended.append((session.uniqueid, outcome))

    def session_rejected(self, reason: str) -> None:
        self.rejected.append(reason)

    @property
    def outcomes(self) -> list[str]:
        return [outcome for _uid, outcome in self.ended]


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """The server reports a session's end after closing the socket, so the test waits for it."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


StartServer = Callable[..., Awaitable[tuple[FastAgiServer, RecordingObserver]]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    servers: list[FastAgiServer] = []

    async def start(
        routes: dict[str, Handler], access: AccessPolicy | None = None, observer: Any = None, **limits: Any
    ) -> tuple[FastAgiServer, RecordingObserver]:
        observer = observer or RecordingObserver()
        server = FastAgiServer(routes, "127.0.0.1", 0, ServerLimits(**limits), observer, access)
        await server.start()
        servers.append(server)
        assert server.listening
        assert server.port != 0
        return server, observer

    yield start
    for server in servers:
        await server.stop(grace=1.0)


async def answer_and_hang_up(session: AgiSession) -> None:
    await session.answer()


ANSWER_ONLY: list[Step] = [("ANSWER", "200 result=0")]


# -- whole sessions -------------------------------------------------------------------------------------


async def test_caller_answers_menu_and_choice_is_stored(start_server: StartServer) -> None:
    seen: dict[str, Any] = {}

    async def ivr(session: AgiSession) -> None:
        seen["linkedid"] = session.linkedid
        seen["args"] = session.env.args
        await session.answer()
        seen["choice"] = await session.get_data("callcenter/welcome", 5000, 4)
        await session.set_variable("CC_IVR_CHOICE", seen["choice"].digits)

    server, observer = await start_server({"ivr": ivr})
    async with fake_asterisk(server.port) as channel:
        await channel.send_header(args=["en", "vip"])
        commands = await channel.play(
            [
                ("ANSWER", "200 result=0"),
                ('GET DATA "callcenter/welcome" 5000 4', "200 result=0123"),
                ("SET VARIABLE", "200 result=1"),
            ]
        )
        await channel.expect_closed()

    assert commands == [
        "ANSWER",
        'GET DATA "callcenter/welcome" 5000 4',
        'SET VARIABLE "CC_IVR_CHOICE" "0123"',
    ]
    assert seen == {
        "linkedid": LINKEDID,
        "args": ("en", "vip"),
        "choice": DataResult("0123", timed_out=False),
    }
    await eventually(lambda: len(observer.ended) == 1)
    assert observer.started == [UNIQUEID]
    assert observer.ended == [(UNIQUEID, "completed")]
    assert observer.rejected == []
    assert server.active_sessions == 0


async def test_get_data_timeout_without_digits(start_server: StartServer) -> None:
    results: list[DataResult] = []

    async def ivr(session: AgiSession) -> None:
        results.append(await session.get_data("callcenter/welcome", 3000, 4))

    server, _observer = await start_server({"ivr": ivr})
    await run_call(server.port, [("GET DATA", "200 result= (timeout)")])
    assert results == [DataResult("", timed_out=True)]


async def test_script_query_string_does_not_affect_routing(start_server: StartServer) -> None:
    calls: list[tuple[str, dict[str, str]]] = []

    def route(name: str) -> Handler:
        async def handler(session: AgiSession) -> None:
            calls.append((name, session.env.params))
            await session.answer()

        return handler

    server, observer = await start_server({"ivr": route("ivr"), "survey": route("survey")})
    await run_call(server.port, ANSWER_ONLY, network_script="ivr?x=1")
    await run_call(server.port, ANSWER_ONLY, network_script="survey")
    await run_call(server.port, ANSWER_ONLY, network_script="/ivr/?x=2&y=")

    assert calls == [("ivr", {"x": "1"}), ("survey", {}), ("ivr", {"x": "2", "y": ""})]
    await eventually(lambda: len(observer.ended) == 3)
    assert observer.outcomes == ["completed"] * 3


async def test_unknown_route_closes_without_a_command(start_server: StartServer) -> None:
    called: list[AgiSession] = []

    async def ivr(session: AgiSession) -> None:
        called.append(session)

    server, observer = await start_server({"ivr": ivr})
    async with fake_asterisk(server.port) as channel:
        await channel.send_header("nosuchroute?linkedid=1")
        await channel.expect_closed(timeout=2.0)
        assert channel.received == []

    assert called == []
    await eventually(lambda: observer.rejected == ["route"])
    assert observer.started == []
    assert observer.ended == []
    assert server.active_sessions == 0


# -- hangups ----------------------------------------------------------------------------------------------


async def test_hangup_line_before_the_response_ends_the_session_cleanly(start_server: StartServer) -> None:
    seen: list[BaseException] = []

    async def ivr(session: AgiSession) -> None:
        await session.answer()
        try:
            await session.stream_file("callcenter/welcome", "1234")
        except AgiHangup as exc:
            seen.append(exc)
            raise

    server, observer = await start_server({"ivr": ivr})
    # No CHANNEL STATUS probe: the HANGUP line already said the channel is gone.
    commands = await run_call(
        server.port,
        [("ANSWER", "200 result=0"), ("STREAM FILE", ["HANGUP", "200 result=-1 endpos=0"])],
    )

    assert commands[1] == 'STREAM FILE "callcenter/welcome" "1234"'
    assert len(seen) == 1
    await eventually(lambda: len(observer.ended) == 1)
    assert observer.ended == [(UNIQUEID, "hangup")]


async def test_after_hangup_line_live_only_commands_are_not_sent(start_server: StartServer) -> None:
    seen: list[str] = []

    async def ivr(session: AgiSession) -> None:
        await session.answer()
        try:
            await session.stream_file("callcenter/welcome")
        except AgiHangup:
            seen.append("hangup")
        # Dead-safe commands still go out so the flow can tidy up.
        await session.set_variable("CC_IVR_CHOICE", "none")

    server, observer = await start_server({"ivr": ivr})
    commands = await run_call(
        server.port,
        [("ANSWER", ["HANGUP", "200 result=0"]), ("SET VARIABLE", "200 result=1")],
    )

    assert commands == ["ANSWER", 'SET VARIABLE "CC_IVR_CHOICE" "none"']
    assert seen == ["hangup"]
    await eventually(lambda: len(observer.ended) == 1)
    assert observer.outcomes == ["hangup"]


async def test_511_is_a_hangup(start_server: StartServer) -> None:
    seen: list[BaseException] = []

    async def ivr(session: AgiSession) -> None:
        try:
            await session.stream_file("callcenter/welcome")
        except AgiHangup as exc:
            seen.append(exc)
            raise

    server, observer = await start_server({"ivr": ivr})
    await run_call(server.port, [("STREAM FILE", DEAD)])

    assert len(seen) == 1
    assert isinstance(seen[0], AgiDeadChannel)
    await eventually(lambda: len(observer.ended) == 1)
    assert observer.outcomes == ["hangup"]


async def test_flow_that_catches_511_still_ends_as_hangup(start_server: StartServer) -> None:
    async def ivr(session: AgiSession) -> None:
        with contextlib.suppress(AgiHangup):
            await session.answer()
        with contextlib.suppress(AgiHangup):
            await session.stream_file("callcenter/welcome")  # refused locally: the channel is dead
        await session.verbose("caller left")

    server, observer = await start_server({"ivr": ivr})
    commands = await run_call(server.port, [("ANSWER", DEAD), ("VERBOSE", "200 result=1")])

    assert commands == ["ANSWER", 'VERBOSE "caller left" 1']
    await eventually(lambda: len(observer.ended) == 1)
    assert observer.outcomes == ["hangup"]


async def test_failed_prompt_on_live_channel_is_a_command_failure(start_server: StartServer) -> None:
    seen: list[BaseException] = []

    async def ivr(session: AgiSession) -> None:
        try:
            await session.stream_file("callcenter/missing")
        except AgiCommandFailed as exc:
            seen.append(exc)

    server, observer = await start_server({"ivr": ivr})
    await run_call(server.port, [("STREAM FILE", "200 result=-1 endpos=0"), ("CHANNEL STATUS", "200 result=6")])

    assert len(seen) == 1
    assert not isinstance(seen[0], AgiHangup)
    assert "STREAM FILE" in str(seen[0])
    await eventually(lambda: len(observer.ended) == 1)
    assert observer.outcomes == ["completed"]


async def test_failed_prompt_on_dead_channel_is_a_hangup(start_server: StartServer) -> None:
    seen: list[BaseException] = []

    async def ivr(session: AgiSession) -> None:
        try:
            await session.stream_file("callcenter/welcome")
        except AgiHangup as exc:
            seen.append(exc)
            raise

    server, observer = await start_server({"ivr": ivr})
    await run_call(server.port, [("STREAM FILE", "200 result=-1 endpos=0"), ("CHANNEL STATUS", DEAD)])

    assert len(seen) == 1
    assert not isinstance(seen[0], AgiCommandFailed)
    await eventually(lambda: len(observer.ended) == 1)
    assert observer.outcomes == ["hangup"]


async def test_520_usage_block_raises_usage_error_and_session_stays_in_step(
    start_server: StartServer,
) -> None:
    seen: list[AgiUsageError] = []

    async def ivr(session: AgiSession) -> None:
        try:
            await session.command("STREAM FILE", "callcenter/welcome")
        except AgiUsageError as exc:
            seen.append(exc)
        await session.verbose("still in step")

    usage = [
        "520-Invalid command syntax.  Proper usage follows:",
        " Usage: STREAM FILE <filename> <escape digits> [sample offset]",
        "Send the given file, allowing playback to be interrupted by the given digits, if any.",
        "520 End of proper usage.",
    ]
    server, observer = await start_server({"ivr": ivr})
    await run_call(server.port, [("STREAM FILE", usage), ("VERBOSE", "200 result=1")])

    assert len(seen) == 1
    assert seen[0].code == 520
    assert seen[0].usage == "\n".join(usage[1:3])
    await eventually(lambda: len(observer.ended) == 1)
    assert observer.outcomes == ["completed"]


# -- broken headers -------------------------------------------------------------------------------------


async def test_truncated_header_then_eof_is_dropped(start_server: StartServer) -> None:
    server, observer = await start_server({"ivr": answer_and_hang_up})
    async with fake_asterisk(server.port) as channel:
        await channel.send(asterisk_header()[:150])
        channel.writer.write_eof()
        await channel.expect_closed()

    await eventually(lambda: observer.rejected == ["header"])
    await run_call(server.port, ANSWER_ONLY)
    await eventually(lambda: observer.outcomes == ["completed"])


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:4573\r\n\r\n",
        b"agi_network: yes\nagi_calleridname: " + b"A" * 20_000 + b"\n\n",
        b"agi_network: yes\nagi_channel: PJSIP/x\n\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n\n",
    ],
    ids=["http", "over-long-line", "no-script", "tls-hello"],
)
async def test_garbage_header_is_dropped(start_server: StartServer, garbage: bytes) -> None:
    server, observer = await start_server({"ivr": answer_and_hang_up})
    async with fake_asterisk(server.port) as channel:
        await channel.send(garbage)
        await channel.expect_closed()
        assert channel.received == []

    await eventually(lambda: observer.rejected == ["header"])
    assert observer.started == []
    await run_call(server.port, ANSWER_ONLY)
    await eventually(lambda: observer.outcomes == ["completed"])


async def test_silent_header_is_dropped_after_read_timeout(start_server: StartServer) -> None:
    server, observer = await start_server({"ivr": answer_and_hang_up}, read_timeout=0.2)
    async with fake_asterisk(server.port) as silent:
        await silent.send(b"agi_network: yes\n")
        started = time.monotonic()
        # Another call is served while the silent one is still pending.
        await run_call(server.port, ANSWER_ONLY)
        await silent.expect_closed(timeout=3.0)
        waited = time.monotonic() - started

    assert 0.1 <= waited < 3.0
    await eventually(lambda: observer.rejected == ["header"] and observer.outcomes == ["completed"])
    assert server.active_sessions == 0


async def test_many_half_headers_do_not_stall_the_event_loop(start_server: StartServer) -> None:
    server, observer = await start_server({"ivr": answer_and_hang_up})
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        interval = 0.01
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(interval)
            lags.append(time.monotonic() - before - interval)

    async def half_header() -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(asterisk_header()[:60])
        await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    ticking = asyncio.create_task(ticker())
    try:
        await asyncio.gather(*(half_header() for _ in range(50)))
        await eventually(lambda: len(observer.rejected) == 50)
        await run_call(server.port, ANSWER_ONLY)
    finally:
        stop.set()
        await ticking

    assert observer.rejected == ["header"] * 50
    assert lags
    assert max(lags) < 0.5
    await eventually(lambda: observer.outcomes == ["completed"])
    assert server.active_sessions == 0


# -- limits and failures --------------------------------------------------------------------------------


async def test_over_the_session_limit_a_call_is_refused_and_logged(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()

    async def ivr(session: AgiSession) -> None:
        await session.answer()
        await release.wait()

    server, observer = await start_server({"ivr": ivr}, max_sessions=2)
    caplog.set_level(logging.WARNING, logger="callcenter.agi")
    async with fake_asterisk(server.port) as first, fake_asterisk(server.port) as second:
        for channel in (first, second):
            await channel.send_header()
            await channel.play(ANSWER_ONLY)
        assert server.active_sessions == 2

        async with fake_asterisk(server.port) as third:
            await third.expect_closed(timeout=1.0)
        assert observer.rejected == ["limit"]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "callcenter.agi"]
        assert any("max_sessions=2" in r.getMessage() for r in warnings)

        release.set()
        await first.expect_closed()
        await second.expect_closed()

    await eventually(lambda: server.active_sessions == 0 and len(observer.ended) == 2)
    assert observer.outcomes == ["completed", "completed"]
    # Room again: the next call is served.
    await run_call(server.port, ANSWER_ONLY)
    await eventually(lambda: len(observer.ended) == 3)


async def test_handler_error_sends_the_caller_to_the_fallback(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def ivr(session: AgiSession) -> None:
        await session.answer()
        raise RuntimeError("flow bug")

    server, observer = await start_server({"ivr": ivr})
    commands = await run_call(server.port, [("ANSWER", "200 result=0"), ("SET VARIABLE", "200 result=1")])

    assert res_agi_words(commands[1]) == ["SET", "VARIABLE", VAR_ACTION, ACTION_FALLBACK]
    assert res_agi_words(commands[1]) == ["SET", "VARIABLE", "CC_ACTION", "fallback"]
    await eventually(lambda: len(observer.ended) == 1)
    assert observer.outcomes == ["error"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)


async def test_handler_error_before_any_command_still_sets_fallback(start_server: StartServer) -> None:
    async def ivr(session: AgiSession) -> None:
        raise KeyError("missing config")

    server, observer = await start_server({"ivr": ivr})
    commands = await run_call(server.port, [("SET VARIABLE", "200 result=1")])
    assert res_agi_words(commands[0]) == ["SET", "VARIABLE", "CC_ACTION", "fallback"]
    await eventually(lambda: observer.outcomes == ["error"])


async def test_stop_does_not_wait_forever_for_a_stuck_session(start_server: StartServer) -> None:
    cancelled = asyncio.Event()

    async def ivr(session: AgiSession) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server, observer = await start_server({"ivr": ivr})
    async with fake_asterisk(server.port) as channel:
        await channel.send_header()
        await eventually(lambda: observer.started == [UNIQUEID])
        await asyncio.wait_for(server.stop(grace=0.2), 3.0)
        await channel.expect_closed()

    assert cancelled.is_set()
    assert not server.listening
    assert server.active_sessions == 0


# -- logging ----------------------------------------------------------------------------------------------


async def test_log_records_inside_a_call_name_uniqueid_and_linkedid(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    flow_log = logging.getLogger("ivr_flows.test")

    async def ivr(session: AgiSession) -> None:
        await session.answer()
        flow_log.info("caller %s reached the menu", session.env.callerid)

    caplog.set_level(logging.INFO)
    context_filter = CallContextFilter()
    caplog.handler.addFilter(context_filter)
    try:
        server, observer = await start_server({"ivr": ivr})
        await run_call(server.port, ANSWER_ONLY)
        await eventually(lambda: len(observer.ended) == 1)
        flow_log.info("outside any call")
    finally:
        caplog.handler.removeFilter(context_filter)

    inside = [r for r in caplog.records if r.getMessage() == "caller 5551234 reached the menu"]
    assert len(inside) == 1
    assert getattr(inside[0], "call", None) == f" [uniqueid={UNIQUEID} linkedid={LINKEDID}]"
    formatted = logging.Formatter(LOG_FORMAT).format(inside[0])
    assert f"uniqueid={UNIQUEID}" in formatted
    assert f"linkedid={LINKEDID}" in formatted

    outside = [r for r in caplog.records if r.getMessage() == "outside any call"]
    assert len(outside) == 1
    assert getattr(outside[0], "call", None) == ""


# -- review fixes: out-of-step sessions, voicemail hangup, header bounds --------------------------------


async def test_a_command_without_an_answer_closes_the_session_instead_of_reading_a_late_answer(
    start_server: StartServer,
) -> None:
    seen: list[BaseException] = []

    async def ivr(session: AgiSession) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                await session.get_data("callcenter/welcome", 5000, 1)
        try:
            await session.set_variable("CC_ACTION", "queue")
        except Exception as exc:
            seen.append(exc)
            raise

    server, observer = await start_server({"ivr": ivr})
    async with fake_asterisk(server.port) as channel:
        await channel.send_header()
        line = await channel.next_line()
        assert line is not None
        assert line.startswith("GET DATA")
        await asyncio.sleep(0.4)
        # The late answer to GET DATA must never be taken as SET VARIABLE's answer: the server hangs up.
        await channel.send(b"200 result=5\n")
        await channel.expect_closed()

    await eventually(lambda: len(observer.ended) == 1)
    assert len(seen) == 1
    assert isinstance(seen[0], AgiConnectionLost)
    assert observer.outcomes == ["connection_lost"]


async def test_a_voicemail_ended_by_hangup_returns_what_was_recorded(start_server: StartServer) -> None:
    results: list[RecordResult] = []

    async def voicemail(session: AgiSession) -> None:
        results.append(await session.record_file("vm/1", "wav", "#", 60_000, silence_seconds=5))

    server, observer = await start_server({"ivr": voicemail})
    commands = await run_call(server.port, [("RECORD FILE", ["200 result=-1 (hangup) endpos=48000", "HANGUP"])])

    assert commands == ['RECORD FILE "vm/1" "wav" "#" 60000 0 "BEEP" "s=5"']
    assert results == [RecordResult(digit=None, endpos=48000, reason="hangup")]
    await eventually(lambda: len(observer.ended) == 1)
    assert observer.outcomes == ["hangup"]


async def test_a_repeated_environment_variable_is_refused(start_server: StartServer) -> None:
    server, observer = await start_server({"ivr": answer_and_hang_up})
    header = asterisk_header().replace(b"agi_callerid: 5551234\n", b"agi_callerid: 5551234\nagi_network_script: x\n")
    async with fake_asterisk(server.port) as channel:
        await channel.send(header)
        await channel.expect_closed()
    await eventually(lambda: observer.rejected == ["header"])
    assert observer.started == []


async def test_an_oversized_trickled_header_is_cut_off_cheaply(start_server: StartServer) -> None:
    server, observer = await start_server({"ivr": answer_and_hang_up}, max_header_bytes=8192)
    line = b"agi_padding_" + b"x" * 100 + b": y\n"
    started = time.process_time()
    async with fake_asterisk(server.port) as channel:
        with contextlib.suppress(ConnectionError):
            for _ in range(200):
                await channel.send(line)
        await channel.expect_closed()
    assert time.process_time() - started < 2.0
    await eventually(lambda: observer.rejected == ["header"])
    assert server.active_sessions == 0
