"""Socket-level AMI tests: the test plays Asterisk's manager interface over a real loopback TCP connection."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from callcenter.ami import actions
from callcenter.ami.actions import AmiAction
from callcenter.ami.connection import DISPATCH_BATCH, AmiConnection
from callcenter.ami.exceptions import (
    AmiActionError,
    AmiActionUnsafeAfterReconnect,
    AmiConnectionLost,
    AmiInjectionError,
    AmiLoginError,
    AmiTimeout,
)
from callcenter.ami.message import AmiMessage

USER = "callcenter"
SECRET = "right-secret-0123"

Action = dict[str, str]
Handler = Callable[["FakeClient", Action], Awaitable[None]]


def wire(*pairs: tuple[str, str]) -> bytes:
    return b"".join(f"{key}: {value}\r\n".encode() for key, value in pairs) + b"\r\n"


class FakeClient:
    """One engine connection as the fake Asterisk sees it."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.silent = False
        self.closed = False

    def send(self, *pairs: tuple[str, str]) -> None:
        if not self.closed:
            self.writer.write(wire(*pairs))

    def reply(self, action: Action, *pairs: tuple[str, str], response: str = "Success") -> None:
        self.send(("Response", response), ("ActionID", action["ActionID"]), *pairs)

    def drop(self) -> None:
        self.closed = True
        self.writer.transport.abort()


class FakeAmi:
    """A small AMI server: banner, Login (checked), Ping, Logoff, and whatever handlers a test adds.

    Everything it reads is kept in ``raw`` (to prove what never reached the socket) and every action in ``actions``.
    """

    def __init__(self, *, fully_booted: bool = True) -> None:
        self.fully_booted = fully_booted
        self.raw = bytearray()
        self.actions: list[Action] = []
        self.clients: list[FakeClient] = []
        self.login_attempts: list[float] = []
        self.handlers: dict[str, Handler] = {}
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for client in self.clients:
            client.drop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def named(self, name: str) -> list[Action]:
        return [action for action in self.actions if action.get("Action") == name]

    def emit(self, *pairs: tuple[str, str]) -> None:
        for client in self.clients:
            client.send(*pairs)

    def silence(self) -> None:
        """Half-open: the current connections stay open and read, and never answer again."""
        for client in self.clients:
            client.silent = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        client = FakeClient(writer)
        self.clients.append(client)
        writer.write(b"Asterisk Call Manager/10.0.0\r\n")
        buffer = b""
        try:
            while not client.closed:
                try:
                    data = await reader.read(65536)
                except ConnectionError:
                    break
                if not data:
                    break
                self.raw += data
                buffer += data
                while b"\r\n\r\n" in buffer and not client.closed:
                    block, buffer = buffer.split(b"\r\n\r\n", 1)
                    action = dict(line.split(": ", 1) for line in block.decode().split("\r\n"))  # type: ignore[misc]
                    self.actions.append(action)
                    if not client.silent:
                        await self._answer(client, action)
        finally:
            client.closed = True
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def _answer(self, client: FakeClient, action: Action) -> None:
        name = action.get("Action", "")
        if name in self.handlers:
            await self.handlers[name](client, action)
        elif name == "Login":
            self.login_attempts.append(time.monotonic())
            if (action.get("Username"), action.get("Secret"), action.get("Events")) == (USER, SECRET, "on"):
                client.reply(action, ("Message", "Authentication accepted"))
                if self.fully_booted:
                    client.send(("Event", "FullyBooted"), ("Privilege", "system,all"), ("Status", "Fully Booted"))
            else:
                client.reply(action, ("Message", "Authentication failed"), response="Error")
                client.drop()
        elif name == "Ping":
            client.reply(action, ("Ping", "Pong"), ("Timestamp", "1700000000.000000"))
        elif name == "Logoff":
            client.reply(action, ("Message", "Thanks for all the fish."), response="Goodbye")
            client.drop()
        else:
            client.reply(action, ("Message", "Invalid/unknown command"), response="Error")


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    server = FakeAmi()
    await server.start()
    yield server
    await server.close()


class Recorder:
    def __init__(self) -> None:
        self.events: list[AmiMessage] = []
        self.connects = 0
        self.overflows = 0

    def on_event(self, event: AmiMessage) -> None:
        self.events.append(event)

    async def on_connect(self) -> None:
        self.connects += 1

    def on_overflow(self) -> None:
        self.overflows += 1

    def named(self, name: str) -> list[AmiMessage]:
        return [event for event in self.events if event.event == name]


@contextlib.asynccontextmanager
async def engine(fake: FakeAmi, recorder: Recorder | None = None, **options: Any) -> AsyncIterator[AmiConnection]:
    recorder = recorder or Recorder()
    settings: dict[str, Any] = {
        "action_timeout": 2.0,
        "connect_timeout": 1.0,
        "backoff_min": 0.01,
        "backoff_max": 0.05,
        "on_event": recorder.on_event,
        "on_connect": recorder.on_connect,
        "on_overflow": recorder.on_overflow,
    }
    secret = options.pop("secret", SECRET)
    settings.update(options)
    connection = AmiConnection("127.0.0.1", fake.port, USER, secret, **settings)
    await connection.start()
    try:
        yield connection
    finally:
        await connection.close()


async def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def held(store: list[tuple[FakeClient, Action]]) -> Handler:
    """A handler that keeps the action and answers nothing (the test answers later, or never)."""

    async def handler(client: FakeClient, action: Action) -> None:
        store.append((client, action))

    return handler


# -- login ----------------------------------------------------------------------------------------------------


async def test_logs_in_with_events_on_and_passes_fully_booted_on(fake: FakeAmi) -> None:
    recorder = Recorder()
    async with engine(fake, recorder) as connection:
        await connection.wait_connected(2)
        assert connection.connected
        assert connection.banner == "Asterisk Call Manager/10.0.0"
        (login,) = fake.named("Login")
        assert (login["Username"], login["Secret"], login["Events"]) == (USER, SECRET, "on")
        await eventually(lambda: bool(recorder.named("FullyBooted")) and recorder.connects == 1)
    assert not connection.connected


async def test_a_wrong_secret_is_reported_and_retried_with_growing_backoff(fake: FakeAmi) -> None:
    delays: list[float] = []

    async def recording_sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 5:
            await asyncio.Event().wait()  # the fifth wait lasts until close()

    options = {"backoff_min": 0.5, "backoff_max": 4.0, "rng": lambda: 0.5, "sleep": recording_sleep}
    async with engine(fake, secret="wrong-secret-000", **options) as connection:
        with pytest.raises(AmiLoginError, match="Authentication failed"):
            await connection.wait_connected(2)
        await eventually(lambda: len(delays) >= 5)
        assert not connection.connected
    # Full jitter (here fixed at half) of a ceiling that doubles from backoff_min up to backoff_max.
    assert delays == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert len(fake.login_attempts) == connection.stats.login_failures == 5


async def test_waiting_for_an_unreachable_asterisk_times_out(fake: FakeAmi) -> None:
    await fake.close()
    async with engine(fake) as connection:
        with pytest.raises(AmiTimeout, match="not connected"):
            await connection.wait_connected(0.2)
        assert connection.stats.connect_failures >= 1


# -- actions --------------------------------------------------------------------------------------------------


async def test_replies_are_matched_by_action_id_not_by_order(fake: FakeAmi) -> None:
    waiting: list[tuple[FakeClient, Action]] = []

    async def answer_backwards(client: FakeClient, action: Action) -> None:
        waiting.append((client, action))
        if len(waiting) == 2:
            for peer, request in reversed(waiting):
                peer.reply(request, ("Variable", request["Variable"]), ("Value", f"value of {request['Variable']}"))

    fake.handlers["Getvar"] = answer_backwards
    async with engine(fake) as connection:
        await connection.wait_connected(2)
        first, second = await asyncio.gather(
            connection.send(actions.getvar("FIRST")), connection.send(actions.getvar("SECOND"))
        )
    assert first.get("Value") == "value of FIRST"
    assert second.get("Value") == "value of SECOND"
    ids = [request["ActionID"] for _, request in waiting]
    assert len(set(ids)) == 2
    assert all(i.startswith("cc-") for i in ids)


async def test_an_unanswered_action_times_out_and_its_late_reply_is_ignored(fake: FakeAmi) -> None:
    waiting: list[tuple[FakeClient, Action]] = []
    fake.handlers["Getvar"] = held(waiting)
    recorder = Recorder()
    async with engine(fake, recorder) as connection:
        await connection.wait_connected(2)
        started = time.monotonic()
        with pytest.raises(AmiTimeout, match="Getvar"):
            await connection.send(actions.getvar("CC_ACTION"), timeout=0.1)
        assert 0.09 <= time.monotonic() - started < 1.0
        client, request = waiting[0]
        client.reply(request, ("Value", "late"))
        await eventually(lambda: connection.stats.unmatched_replies == 1)
        assert connection.connected
        assert connection.stats.action_timeouts == 1
        assert all(event.get("Value") != "late" for event in recorder.events)


async def test_an_error_response_raises_with_asterisks_message(fake: FakeAmi) -> None:
    async with engine(fake) as connection:
        await connection.wait_connected(2)
        with pytest.raises(AmiActionError, match="Invalid/unknown command") as caught:
            await connection.send(actions.core_settings())
        assert caught.value.response.response == "Error"


async def test_an_event_list_is_collected_into_one_result(fake: FakeAmi) -> None:
    async def channels(client: FakeClient, action: Action) -> None:
        client.reply(action, ("EventList", "start"), ("Message", "Channels will follow"))
        for name in ("PJSIP/1001-00000001", "PJSIP/pstn-00000002"):
            client.send(("Event", "CoreShowChannel"), ("ActionID", action["ActionID"]), ("Channel", name))
            # An ordinary event in the middle of the list is not part of it.
            client.send(("Event", "Newchannel"), ("Channel", "PJSIP/1002-00000003"))
        client.send(
            ("Event", "CoreShowChannelsComplete"),
            ("ActionID", action["ActionID"]),
            ("EventList", "Complete"),
            ("ListItems", "2"),
        )

    fake.handlers["CoreShowChannels"] = channels
    recorder = Recorder()
    async with engine(fake, recorder) as connection:
        await connection.wait_connected(2)
        result = await connection.send(actions.core_show_channels())
        await eventually(lambda: len(recorder.named("Newchannel")) == 2)
    assert result.message == "Channels will follow"
    assert [event.get("Channel") for event in result.events] == ["PJSIP/1001-00000001", "PJSIP/pstn-00000002"]
    assert result.complete is not None
    assert result.complete.get("ListItems") == "2"
    assert not recorder.named("CoreShowChannel")


# -- a dead connection ----------------------------------------------------------------------------------------


async def test_an_unanswered_ping_forces_a_reconnect_within_interval_plus_timeout(fake: FakeAmi) -> None:
    recorder = Recorder()
    async with engine(fake, recorder, ping_interval=0.15, ping_timeout=0.15) as connection:
        await connection.wait_connected(2)
        await asyncio.sleep(0.2)  # at least one ping answered
        assert connection.stats.ping_failures == 0
        fake.silence()
        silenced = time.monotonic()
        await eventually(lambda: len(fake.login_attempts) == 2 and connection.connected)
        noticed = fake.login_attempts[1] - silenced
        assert noticed < 0.15 + 0.15 + 0.2
        assert connection.stats.ping_failures == 1
        assert connection.stats.reconnects == 1
        await eventually(lambda: len(recorder.named("FullyBooted")) == 2 and recorder.connects == 2)


async def test_a_ping_reply_without_pong_counts_as_a_dead_connection(fake: FakeAmi) -> None:
    async def wrong_pong(client: FakeClient, action: Action) -> None:
        client.reply(action, ("Message", "something else"))

    fake.handlers["Ping"] = wrong_pong
    async with engine(fake, ping_interval=0.05, ping_timeout=0.5) as connection:
        await connection.wait_connected(2)
        await eventually(lambda: len(fake.login_attempts) >= 2)
        assert connection.stats.ping_failures >= 1
        assert connection.stats.action_timeouts == 0


async def test_a_drop_mid_action_fails_it_and_nothing_is_ever_resent(fake: FakeAmi) -> None:
    waiting: list[tuple[FakeClient, Action]] = []
    fake.handlers["Getvar"] = held(waiting)

    async def drop_on_originate(client: FakeClient, action: Action) -> None:
        client.drop()

    fake.handlers["Originate"] = drop_on_originate
    recorder = Recorder()
    async with engine(fake, recorder) as connection:
        await connection.wait_connected(2)
        read = asyncio.ensure_future(connection.send(actions.getvar("CC_ACTION", "PJSIP/1001-00000001")))
        await eventually(lambda: len(waiting) == 1)
        with pytest.raises(AmiActionUnsafeAfterReconnect, match="not resent"):
            await connection.send(actions.originate("PJSIP/1001", context="spy", exten="s"))
        with pytest.raises(AmiConnectionLost):
            await read
        await connection.wait_connected(2)
        # A round trip on the new connection: anything resent would have reached the server before its answer.
        await connection.send(actions.ping())
        await eventually(lambda: recorder.connects == 2)
    assert len(fake.named("Originate")) == 1
    assert len(fake.named("Getvar")) == 1
    assert len(fake.named("Login")) == 2


async def test_sending_while_disconnected_fails_at_once(fake: FakeAmi) -> None:
    connection = AmiConnection("127.0.0.1", fake.port, USER, SECRET)
    with pytest.raises(AmiConnectionLost, match="not connected"):
        await connection.send(actions.ping())


# -- injection ------------------------------------------------------------------------------------------------


async def test_a_crlf_value_never_reaches_the_socket(fake: FakeAmi) -> None:
    async with engine(fake) as connection:
        await connection.wait_connected(2)
        smuggled = AmiAction("Setvar", (("Variable", "CC_NOTE"), ("Value", "x\r\nAction: Hangup")), idempotent=False)
        with pytest.raises(AmiInjectionError):
            await connection.send(smuggled)
        with pytest.raises(ValueError, match="CR, LF"):
            await connection.send(AmiAction("Setvar", (("Value", "x\nChannel: PJSIP/1001"),)))
        await connection.send(actions.ping())
    assert b"Hangup" not in fake.raw
    assert b"CC_NOTE" not in fake.raw
    assert {action["Action"] for action in fake.actions} <= {"Login", "Ping", "Logoff"}


# -- events ---------------------------------------------------------------------------------------------------


async def test_a_full_event_queue_drops_the_oldest_and_asks_for_a_resync(fake: FakeAmi) -> None:
    gate = asyncio.Event()
    seen: list[str] = []
    overflows: list[int] = []

    async def slow_consumer(event: AmiMessage) -> None:
        seen.append(event.get("Seq"))
        await gate.wait()

    async with engine(
        fake, on_event=slow_consumer, on_overflow=lambda: overflows.append(1), queue_size=3
    ) as connection:
        await connection.wait_connected(2)
        fake.emit(("Event", "UserEvent"), ("Seq", "0"))  # after FullyBooted, which the consumer now holds
        await eventually(lambda: connection.queue_depth == 1)
        for seq in range(1, 11):
            fake.emit(("Event", "UserEvent"), ("Seq", str(seq)))
        await eventually(lambda: connection.stats.dropped == 8)
        assert connection.needs_resync
        gate.set()
        await eventually(lambda: len(seen) == 4)
        assert connection.queue_depth == 0
        assert overflows == [1]
        connection.clear_needs_resync()
        assert not connection.needs_resync
    # FullyBooted was being handled; "0" to "7" were dropped, the three newest kept.
    assert seen == ["", "8", "9", "10"]


async def test_a_malformed_message_is_dropped_and_the_connection_stays(fake: FakeAmi) -> None:
    recorder = Recorder()
    async with engine(fake, recorder) as connection:
        await connection.wait_connected(2)
        fake.emit(("Event", "Newchannel"), ("CallerIDName", "x" * 9000))
        fake.emit(("Event", "Hangup"), ("Channel", "PJSIP/1001-00000001"))
        await eventually(lambda: bool(recorder.named("Hangup")))
        assert connection.connected
        assert connection.needs_resync
        assert recorder.overflows == 1
        assert connection.stats.protocol_errors == 1
        assert not recorder.named("Newchannel")


async def test_an_event_handler_that_raises_does_not_stop_the_next_events(fake: FakeAmi) -> None:
    seen: list[str] = []

    def flaky(event: AmiMessage) -> None:
        seen.append(event.event)
        if event.event == "FullyBooted":
            raise RuntimeError("boom")

    async with engine(fake, on_event=flaky) as connection:
        await connection.wait_connected(2)
        fake.emit(("Event", "Hangup"))
        await eventually(lambda: seen == ["FullyBooted", "Hangup"])


# -- lifecycle ------------------------------------------------------------------------------------------------


async def test_close_logs_off_and_leaves_no_task_behind(fake: FakeAmi) -> None:
    before = asyncio.all_tasks()

    async def slow_resync() -> None:
        await asyncio.sleep(30)

    async with engine(fake, on_connect=slow_resync, ping_interval=0.05) as connection:
        await connection.wait_connected(2)
        await asyncio.sleep(0.1)
        assert {task.get_name() for task in asyncio.all_tasks() - before} >= {
            "ami-supervisor",
            "ami-dispatcher",
            "ami-on-connect",
        }
    assert len(fake.named("Logoff")) == 1
    assert not connection.connected
    await fake.close()
    assert asyncio.all_tasks() - before == set()
    with pytest.raises(AmiConnectionLost):
        await connection.wait_connected(0.1)


async def test_a_long_caller_name_still_reaches_the_engine(fake: FakeAmi) -> None:
    # Asterisk's events are not bound by its own 1024-byte read limit; a 2 KB SIP display name is a real call.
    recorder = Recorder()
    async with engine(fake, recorder) as connection:
        await connection.wait_connected(2)
        fake.emit(("Event", "Newchannel"), ("CallerIDName", "x" * 2000))
        await eventually(lambda: bool(recorder.named("Newchannel")))
        assert recorder.named("Newchannel")[0].get("CallerIDName") == "x" * 2000
        assert not connection.needs_resync


# -- a peer that floods or misbehaves -------------------------------------------------------------------------


async def test_a_flood_of_events_leaves_the_loop_to_other_tasks(fake: FakeAmi) -> None:
    # 200,000 events written as fast as the socket takes them, all queued before the dispatcher gets to them (the
    # first event's handler waits for that), as when a flood outruns the handler. A coroutine that wakes on every
    # loop iteration (as the web server's and FastAGI's callbacks would) notes how many events had been handed on
    # each time it runs: between two of its wake-ups the dispatcher may hand on at most one batch. Counts only,
    # no clock readings: the machine is shared.
    flood = 200_000
    handled = 0
    wakeups: list[int] = []

    async def until_queued() -> None:
        while connection.queue_depth < flood:
            await asyncio.sleep(0.001)

    def on_event(event: AmiMessage) -> Awaitable[None] | None:
        nonlocal handled
        if event.event == "UserEvent":
            return until_queued()
        handled += 1
        return None

    async def ticker() -> None:
        while handled < flood:
            wakeups.append(handled)
            await asyncio.sleep(0)
        wakeups.append(handled)

    event = wire(("Event", "Newstate"), ("Privilege", "call,all"), ("Channel", "PJSIP/pstn-00000001"))
    async with engine(fake, on_event=on_event, queue_size=flood + 10) as connection:
        await connection.wait_connected(2)
        await eventually(lambda: handled == 1)  # FullyBooted
        handled = 0
        ticking = asyncio.ensure_future(ticker())
        fake.clients[0].writer.write(wire(("Event", "UserEvent"), ("UserEvent", "flood")) + event * flood)
        await asyncio.wait_for(ticking, 60)
        assert connection.stats.dropped == 0
    assert handled == flood
    gaps = [later - earlier for earlier, later in itertools.pairwise(wakeups)]
    assert max(gaps) <= DISPATCH_BATCH
    assert len([count for count in wakeups if 0 < count < flood]) >= flood // DISPATCH_BATCH - 1


async def test_events_sent_before_the_login_is_answered_are_dropped(
    fake: FakeAmi, caplog: pytest.LogCaptureFixture
) -> None:
    async def hostile_login(client: FakeClient, action: Action) -> None:
        # One write: forged events, the Login's answer, then what a logged-in session gets.
        client.writer.write(
            wire(("Event", "Newchannel"), ("Uniqueid", "forged-1"), ("Channel", "PJSIP/x-1"))
            + wire(("Event", "Hangup"), ("Uniqueid", "forged-2"))
            + wire(("Event", "CoreShowChannel"), ("ActionID", "forged"), ("Uniqueid", "forged-3"))
            + wire(("Response", "Success"), ("ActionID", action["ActionID"]), ("Message", "Authentication accepted"))
            + wire(("Event", "FullyBooted"), ("Status", "Fully Booted"))
        )

    fake.handlers["Login"] = hostile_login
    recorder = Recorder()
    with caplog.at_level("WARNING", logger="callcenter.ami"):
        async with engine(fake, recorder) as connection:
            await connection.wait_connected(2)
            fake.emit(("Event", "Hangup"), ("Uniqueid", "real-1"))
            await eventually(lambda: bool(recorder.named("Hangup")))
            assert connection.stats.events_before_login == 3
            assert connection.stats.events == 2
            assert not connection.needs_resync
    assert [event.event for event in recorder.events] == ["FullyBooted", "Hangup"]
    assert recorder.named("Hangup")[0].get("Uniqueid") == "real-1"
    warnings = [record for record in caplog.records if "before answering the Login" in record.getMessage()]
    assert len(warnings) == 1


async def test_events_before_a_refused_login_never_reach_the_engine(fake: FakeAmi) -> None:
    async def refuse(client: FakeClient, action: Action) -> None:
        client.send(("Event", "Newchannel"), ("Uniqueid", "forged-1"))
        client.reply(action, ("Message", "Authentication failed"), response="Error")
        client.send(("Event", "Newchannel"), ("Uniqueid", "forged-2"))

    fake.handlers["Login"] = refuse
    recorder = Recorder()
    async with engine(fake, recorder) as connection:
        with pytest.raises(AmiLoginError):
            await connection.wait_connected(2)
        await eventually(lambda: connection.stats.events_before_login >= 2)
    assert recorder.events == []
    assert recorder.connects == 0
