"""The engine's AMI connection: login, actions matched by ActionID, checked pings, reconnects, bounded events.

Written on asyncio's Protocol API rather than on streams. Bytes are parsed inside ``data_received`` and each
message is routed there and then: a reply completes its action's future, a list event joins its action's result,
any other event goes into the bounded queue. No reader task sits between the socket and the parser, and the
"queue full: drop the oldest" decision is a synchronous step of routing, so it can never interleave with another
read. Three tasks exist while the connection is open, all started by :meth:`AmiConnection.start` and all stopped
by :meth:`AmiConnection.close`: the supervisor (connect, log in, ping, back off, reconnect), the dispatcher (the
only caller of ``on_event``), and, after each login, the ``on_connect`` callback (the live model's resync).

Rules that panoramisk's Manager breaks and this one keeps (see docs/decisions.md):

- every action has a deadline (``AmiTimeout``), a list action's deadline covering its whole list;
- replies are matched by ActionID, never by order;
- the ping's reply is checked, and no reply within ``ping_timeout`` kills the connection, so a half-open TCP
  connection is noticed within ``ping_interval + ping_timeout`` (15 s by default);
- reconnects back off exponentially with full jitter up to 5 s (Asterisk is on the same host: a longer wait only
  keeps the engine blind), and a failed login backs off like any other failure;
- nothing is ever sent twice: when the connection drops, every action in flight fails (a non-idempotent one
  with ``AmiActionUnsafeAfterReconnect``, an idempotent one with ``AmiConnectionLost``) and it is up to the
  caller to decide; FullyBooted is only an event;
- an action with CR, LF or NUL in a header, or a line over 1024 bytes, is refused before anything is written.

Two guards against a peer that floods or misbehaves (docs/decisions.md):

- no event is handed on before the Login response has been read: what a connection sends before it (a hostile
  or buggy peer; nothing Asterisk itself sends) is dropped, counted in ``AmiStats.events_before_login`` and
  logged once per connection;
- the dispatcher gives the loop back after every ``DISPATCH_BATCH`` events, so a flood of events cannot starve
  the web server, the FastAGI server or the pings of this very connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from callcenter.ami import actions
from callcenter.ami.actions import AmiAction
from callcenter.ami.exceptions import (
    AmiActionError,
    AmiActionUnsafeAfterReconnect,
    AmiConnectionLost,
    AmiError,
    AmiLoginError,
    AmiProtocolError,
    AmiTimeout,
)
from callcenter.ami.message import MAX_HEADERS, AmiMessage, AmiParser, AmiResult, build_action

if TYPE_CHECKING:
    from callcenter.config import AmiConfig

log = logging.getLogger("callcenter.ami")

EventHandler = Callable[[AmiMessage], Awaitable[None] | None]
ConnectHandler = Callable[[], Awaitable[None]]
OverflowHandler = Callable[[], None]

# Beyond this much unsent data Asterisk is not reading: refuse new actions rather than buffer without end.
_WRITE_BUFFER_LIMIT = 1 << 20

# Events handed to on_event between two yields to the loop. At the pipeline's ~10 µs an event, a batch holds the
# loop for a few milliseconds; the yield itself costs well under a microsecond an event at this size (bench/ami.py).
DISPATCH_BATCH = 256


@dataclass(slots=True)
class AmiStats:
    """Counters for /metrics. ``reconnects`` counts logins after the first one."""

    connects: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    login_failures: int = 0
    events: int = 0
    dropped: int = 0
    protocol_errors: int = 0
    actions: int = 0
    action_timeouts: int = 0
    ping_failures: int = 0
    unmatched_replies: int = 0
    events_before_login: int = 0


class _Pending:
    __slots__ = ("action", "action_id", "collecting", "events", "future", "response")

    def __init__(self, action: AmiAction, action_id: str, future: asyncio.Future[AmiResult]) -> None:
        self.action = action
        self.action_id = action_id
        self.future = future
        self.response: AmiMessage | None = None
        self.events: list[AmiMessage] = []
        self.collecting = False


def _expire(pending: _Pending, timeout: float, stats: AmiStats) -> None:
    if not pending.future.done():
        stats.action_timeouts += 1
        pending.future.set_exception(AmiTimeout(f"no answer to {pending.action.name} within {timeout:.1f} s"))


class _EventQueue:
    """The bounded queue between routing and the dispatcher: a deque and the dispatcher's wake-up future.

    asyncio.Queue would do the same with several Python calls per event (full, put, get, qsize, its waiter
    lists): about a third of the inbound path at 100k events/s (bench/ami.py). There is one consumer, the
    dispatcher; a full queue drops its oldest event.
    """

    __slots__ = ("_waiter", "items", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.items: deque[AmiMessage] = deque()
        self.maxsize = maxsize
        self._waiter: asyncio.Future[None] | None = None

    def put(self, message: AmiMessage) -> bool:
        """Appends ``message``; True when the oldest event had to be dropped for it."""
        items = self.items
        dropped = len(items) >= self.maxsize
        if dropped:
            items.popleft()
        items.append(message)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return dropped

    def put_all(self, messages: list[AmiMessage]) -> int:
        """Appends ``messages`` in order; how many of the oldest events were dropped for them (as ``put`` each)."""
        items = self.items
        items.extend(messages)
        dropped = len(items) - self.maxsize
        if dropped > 0:
            for _ in range(dropped):
                items.popleft()
        else:
            dropped = 0
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return dropped

    async def wait(self) -> None:
        """Returns once an event is queued."""
        while not self.items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None


class _Session(asyncio.Protocol):
    """One TCP connection to Asterisk: parses what arrives and keeps the actions waiting for their answers."""

    def __init__(self, owner: AmiConnection, parser: AmiParser) -> None:
        self._owner = owner
        self._parser = parser
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._pending: dict[str, _Pending] = {}
        self.banner_seen: asyncio.Future[None] = self._loop.create_future()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self.dead = False
        self.reason = ""
        # The Login's ActionID, and whether its successful answer has been read: until then no event is trusted.
        self.login_id = ""
        self.logged_in = False
        self._dropped_before_login = False

    # -- asyncio.Protocol -----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they are transports all the same.
        self._transport = cast(asyncio.Transport, transport)
        if self.dead:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.dead:
            return
        try:
            messages = self._parser.feed(data)
        except AmiProtocolError as exc:
            self._owner._protocol_error(exc)
            if not exc.recoverable:
                self.fail(f"protocol error: {exc}")
                return
            messages = list(exc.messages)
        if not self.banner_seen.done() and self._parser.banner is not None:
            self.banner_seen.set_result(None)
        if not self.logged_in:
            messages = self._before_login(messages)
        # Most of the stream is events that answer no action: they go to the queue together, in order, without
        # going through _route one by one.
        owner = self._owner
        plain: list[AmiMessage] = []
        for message in messages:
            headers = message.lowered
            if "event" in headers and "actionid" not in headers and "response" not in headers:
                plain.append(message)
                continue
            if plain:
                owner._enqueue_all(plain)
                plain = []
            self._route(message)
        if plain:
            owner._enqueue_all(plain)

    def _before_login(self, messages: list[AmiMessage]) -> list[AmiMessage]:
        """Routes the replies that come before the Login's answer and drops the events; returns what follows it.

        Asterisk itself sends nothing but the banner before a login is answered (its FullyBooted comes after the
        answer), so an event here comes from a peer that is not to be trusted, or a bug: it must not reach the
        live model. Events after the answer in the same read are kept, in order.
        """
        for index, message in enumerate(messages):
            if self.logged_in:
                return messages[index:]
            if message.is_response:
                self._route(message)
                if message.ok and self.login_id and message.action_id == self.login_id:
                    self.logged_in = True
                continue
            self._owner.stats.events_before_login += 1
            if not self._dropped_before_login:
                self._dropped_before_login = True
                log.warning(
                    "AMI peer sent %s before answering the Login: dropped, as is every event until the answer",
                    (message.event or "a message")[:64],
                )
        return []

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(f"closed by Asterisk ({exc})" if exc else "closed by Asterisk")

    # -- routing --------------------------------------------------------------------------------------------

    def _route(self, message: AmiMessage) -> None:
        if message.is_response:
            pending = self._pending.get(message.action_id)
            if pending is None:
                # Usually the late answer to an action that timed out.
                self._owner.stats.unmatched_replies += 1
                log.debug("AMI reply for no waiting action (ActionID %r)", message.action_id[:64])
                return
            if pending.future.done():
                return
            if not message.ok:
                pending.future.set_exception(AmiActionError(pending.action.name, message))
            elif message.event_list.lower() == "start":
                pending.response = message
                pending.collecting = True
            else:
                pending.future.set_result(AmiResult(message))
            return
        if message.is_event:
            action_id = message.action_id
            if action_id:
                pending = self._pending.get(action_id)
                if pending is not None and pending.collecting and pending.response is not None:
                    if message.event_list.lower() in ("complete", "cancelled"):
                        if not pending.future.done():
                            pending.future.set_result(AmiResult(pending.response, tuple(pending.events), message))
                    else:
                        pending.events.append(message)
                    return
            self._owner._enqueue(message)
            return
        self._owner.stats.protocol_errors += 1
        log.warning("AMI message that is neither a reply nor an event dropped (%d headers)", len(message))

    # -- for the connection ---------------------------------------------------------------------------------

    @property
    def banner_text(self) -> str:
        return self._parser.banner or ""

    async def request(self, action: AmiAction, action_id: str, data: bytes, limit: float) -> AmiResult:
        """Writes one action (``data``, already built and checked) and waits for its answer."""
        transport = self._transport
        if self.dead or transport is None or transport.is_closing():
            raise AmiConnectionLost(f"not connected: {action.name} not sent")
        if transport.get_write_buffer_size() > _WRITE_BUFFER_LIMIT:
            raise AmiConnectionLost(f"Asterisk is not reading: {action.name} not sent")
        future: asyncio.Future[AmiResult] = self._loop.create_future()
        pending = _Pending(action, action_id, future)
        self._pending[action_id] = pending
        timer = self._loop.call_later(limit, _expire, pending, limit, self._owner.stats)
        try:
            transport.write(data)
            self._owner.stats.actions += 1
            return await future
        finally:
            timer.cancel()
            if self._pending.get(action_id) is pending:
                del self._pending[action_id]

    def fail(self, reason: str) -> None:
        """Ends the session now: the socket is aborted and every action in flight fails, none is ever resent."""
        if self.dead:
            return
        self.dead = True
        self.reason = reason
        if self._transport is not None:
            self._transport.abort()
        pending, self._pending = self._pending, {}
        for item in pending.values():
            if item.future.done():
                continue
            if item.action.idempotent:
                error: AmiError = AmiConnectionLost(
                    f"connection lost before {item.action.name} was answered ({reason})"
                )
            else:
                error = AmiActionUnsafeAfterReconnect(item.action.name, item.action_id, reason)
            item.future.set_exception(error)
        if not self.banner_seen.done():
            self.banner_seen.set_result(None)
        if not self.closed.done():
            self.closed.set_result(None)


# Asterisk reads lines of at most 1024 bytes, but the events it writes have no such bound: a caller's SIP
# display name arrives as CallerIDName. A tighter inbound cap would let a long name hide a call from the engine.
INBOUND_MAX_LINE = 8192


class AmiConnection:
    """The engine's one AMI connection; see the module docstring for what it guarantees.

    ``on_event`` gets every event that is not part of an action's list, in order, from one task (it may be sync
    or async; an exception is logged and the next event follows). ``on_connect`` is awaited in its own task after
    each successful login (the place to rebuild the live model). ``on_overflow`` is called once per burst of lost
    events (the queue was full, or a malformed message was dropped): the live model must then be rebuilt; the
    :attr:`needs_resync` flag says the same until :meth:`clear_needs_resync`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        action_timeout: float = 10.0,
        ping_interval: float = 10.0,
        ping_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        backoff_min: float = 0.5,
        backoff_max: float = 5.0,
        queue_size: int = 10000,
        on_event: EventHandler | None = None,
        on_connect: ConnectHandler | None = None,
        on_overflow: OverflowHandler | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_line: int = INBOUND_MAX_LINE,
        max_headers: int = MAX_HEADERS,
    ) -> None:
        if min(action_timeout, ping_interval, ping_timeout, connect_timeout, backoff_min) <= 0:
            raise ValueError("timeouts, the ping interval and backoff_min must be positive")
        if backoff_max < backoff_min or queue_size < 1:
            raise ValueError("backoff_max must be >= backoff_min and queue_size >= 1")
        self._host = host
        self._port = port
        self._login = actions.login(username, secret)
        self._action_timeout = action_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._connect_timeout = connect_timeout
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._queue_size = queue_size
        self._on_event = on_event
        self._on_connect = on_connect
        self._on_overflow = on_overflow
        self._clock = clock
        self._rng = rng
        self._sleep = sleep
        self._max_line = max_line
        self._max_headers = max_headers
        self._id_prefix = f"cc-{secrets.token_hex(4)}-"
        self._id_counter = 0
        self.stats = AmiStats()
        self.banner = ""
        self.last_error: AmiError | OSError | None = None
        self.connected_since: float | None = None
        self._session: _Session | None = None
        self._queue: _EventQueue | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._waiters: set[asyncio.Future[None]] = set()
        self._login_refused: AmiLoginError | None = None
        self._closing = False
        self._overflowing = False
        self._needs_resync = False

    @classmethod
    def from_config(cls, config: AmiConfig, secret: str, **options: object) -> AmiConnection:
        """Built from the ``[ami]`` section; ``secret`` is :func:`callcenter.secrets.ami_secret`'s answer."""
        return cls(
            config.host,
            config.port,
            config.username,
            secret,
            action_timeout=config.action_timeout,
            **options,  # type: ignore[arg-type]
        )

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Starts connecting in the background; :meth:`wait_connected` waits for the first login."""
        if self._supervisor is not None:
            raise RuntimeError("AmiConnection already started")
        self._closing = False
        if self._on_event is not None:
            self._queue = _EventQueue(self._queue_size)
            self._spawn(self._dispatch(self._on_event), "ami-dispatcher")
        self._supervisor = self._spawn(self._run(), "ami-supervisor")

    async def close(self, *, logoff: bool = True) -> None:
        """Logs off (briefly, when connected), then stops every task this connection started."""
        self._closing = True
        session = self._session
        if logoff and session is not None and not session.dead:
            with contextlib.suppress(AmiError):
                await self._request(session, actions.logoff(), min(self._action_timeout, 1.0))
        if session is not None:
            session.fail("connection closed by the engine")
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._supervisor = None
        self._queue = None
        self._notify()

    async def __aenter__(self) -> AmiConnection:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- state ----------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Logged in and not known to be dead."""
        session = self._session
        return session is not None and not session.dead

    def drop(self, reason: str = "dropped on request") -> None:
        """Aborts the current connection as a network failure would; the supervisor reconnects with its backoff.

        Actions in flight fail as they would on a real loss. For operators (a stuck session) and for the tests
        that prove the live model survives a lost connection.
        """
        if self._session is not None:
            self._session.fail(reason)

    @property
    def needs_resync(self) -> bool:
        """Events were lost since the last :meth:`clear_needs_resync`: the live model is not to be trusted."""
        return self._needs_resync

    def clear_needs_resync(self) -> None:
        self._needs_resync = False

    @property
    def queue_depth(self) -> int:
        return 0 if self._queue is None else len(self._queue.items)

    async def wait_connected(self, timeout: float) -> None:  # noqa: ASYNC109 - the caller's bound on the wait
        """Returns once logged in. Raises AmiLoginError at once if the last login was refused (the connection
        keeps retrying with backoff), AmiTimeout if not connected within ``timeout``, AmiConnectionLost if closed.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.connected:
                return
            if self._login_refused is not None:
                raise AmiLoginError(str(self._login_refused))
            if self._closing or self._supervisor is None:
                raise AmiConnectionLost("the AMI connection is not running")
            remaining = deadline - loop.time()
            if remaining <= 0:
                detail = f" (last error: {self.last_error})" if self.last_error is not None else ""
                raise AmiTimeout(f"not connected to AMI within {timeout:.1f} s{detail}")
            waiter = loop.create_future()
            self._waiters.add(waiter)
            try:
                async with asyncio.timeout(remaining):
                    await waiter
            except TimeoutError:
                pass
            finally:
                self._waiters.discard(waiter)

    # -- actions --------------------------------------------------------------------------------------------

    async def send(self, action: AmiAction, *, timeout: float | None = None) -> AmiResult:  # noqa: ASYNC109
        """Sends one action and returns its answer (with its events, for a list action).

        Raises AmiInjectionError (nothing written), AmiConnectionLost (not connected, or dropped before the answer
        of an idempotent action), AmiActionUnsafeAfterReconnect (dropped before the answer of a non-idempotent
        action: it may have run and is not resent), AmiTimeout, AmiActionError (``Response: Error``).
        """
        action_id = self._next_id()
        # Built (and so checked) before looking at the connection: a bad header is the caller's error, whatever
        # the connection's state, and nothing of it is ever written.
        data = build_action(action.name, action_id, action.headers)
        session = self._session
        if session is None or session.dead:
            raise AmiConnectionLost(f"not connected to AMI: {action.name} not sent")
        if timeout is None:
            timeout = action.timeout if action.timeout is not None else self._action_timeout
        return await session.request(action, action_id, data, timeout)

    # -- internals ------------------------------------------------------------------------------------------

    def _next_id(self) -> str:
        self._id_counter += 1
        return f"{self._id_prefix}{self._id_counter}"

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("AMI task %s failed", task.get_name(), exc_info=task.exception())

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform between 0 and an exponentially growing cap."""
        ceiling = min(self._backoff_max, self._backoff_min * 2.0 ** min(attempt, 32))
        return self._rng() * ceiling

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            started = self._clock()
            try:
                session = await self._open()
            except AmiLoginError as exc:
                self.stats.login_failures += 1
                self.last_error = self._login_refused = exc
                log.error("AMI login to %s:%d refused: %s", self._host, self._port, exc)
                self._notify()
            except (AmiError, OSError) as exc:
                self.stats.connect_failures += 1
                self.last_error = exc
                log.warning("AMI connection to %s:%d failed: %s", self._host, self._port, exc)
            else:
                await self._serve(session)
                # A session that stayed up longer than the longest wait resets the backoff; one that dies right
                # after its login (Asterisk refusing sessions, say) keeps backing off instead of looping.
                if self._clock() - started >= self._backoff_max:
                    attempt = 0
            if self._closing:
                break
            delay = self._backoff(attempt)
            attempt += 1
            log.info("AMI reconnecting in %.2f s", delay)
            await self._sleep(delay)

    async def _open(self) -> _Session:
        loop = asyncio.get_running_loop()
        session = _Session(self, AmiParser(max_line=self._max_line, max_headers=self._max_headers))
        try:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await loop.create_connection(lambda: session, self._host, self._port)
                    await session.banner_seen
            except TimeoutError:
                raise AmiTimeout(
                    f"no AMI banner from {self._host}:{self._port} within {self._connect_timeout:.1f} s"
                ) from None
            if session.dead:
                raise AmiConnectionLost(f"connection closed before the banner: {session.reason}")
            login_id = session.login_id = self._next_id()
            data = build_action(self._login.name, login_id, self._login.headers)
            try:
                await session.request(self._login, login_id, data, self._action_timeout)
            except AmiActionError as exc:
                raise AmiLoginError(f"user {self._login.get('Username')!r}: {exc.message}") from None
        except BaseException:
            session.fail("connection attempt abandoned")
            raise
        self.banner = session.banner_text
        return session

    async def _request(self, session: _Session, action: AmiAction, limit: float) -> AmiResult:
        action_id = self._next_id()
        return await session.request(action, action_id, build_action(action.name, action_id, action.headers), limit)

    async def _serve(self, session: _Session) -> None:
        self.stats.connects += 1
        if self.stats.connects > 1:
            self.stats.reconnects += 1
        self._session = session
        self._login_refused = None
        self.last_error = None
        self.connected_since = self._clock()
        log.info("AMI connected to %s:%d (%s)", self._host, self._port, self.banner)
        self._notify()
        resync: asyncio.Task[None] | None = None
        if self._on_connect is not None:
            resync = self._spawn(self._call_on_connect(self._on_connect), "ami-on-connect")
        ping = actions.ping()
        try:
            while not session.dead:
                await asyncio.wait([session.closed], timeout=self._ping_interval)
                if session.dead:
                    break
                try:
                    result = await self._request(session, ping, self._ping_timeout)
                except AmiTimeout:
                    self.stats.ping_failures += 1
                    session.fail(f"no answer to Ping within {self._ping_timeout:.1f} s")
                    break
                except AmiError as exc:
                    self.stats.ping_failures += 1
                    session.fail(f"Ping failed: {exc}")
                    break
                if not _is_pong(result.response):
                    self.stats.ping_failures += 1
                    session.fail("Ping answered without Pong")
                    break
        finally:
            session.fail("connection closed by the engine")
            self._session = None
            self.connected_since = None
            if resync is not None:
                resync.cancel()
            self._notify()
        self.last_error = AmiConnectionLost(session.reason)
        if not self._closing:
            log.warning("AMI connection to %s:%d lost: %s", self._host, self._port, session.reason)

    async def _call_on_connect(self, handler: ConnectHandler) -> None:
        try:
            await handler()
        except AmiError as exc:
            log.warning("AMI on_connect did not finish: %s", exc)
        except Exception:
            log.exception("AMI on_connect failed")

    async def _dispatch(self, handler: EventHandler) -> None:
        queue = self._queue
        assert queue is not None
        items = queue.items
        popleft = items.popleft
        isawaitable = inspect.isawaitable
        while True:
            if not items:
                await queue.wait()
            # A bounded batch, then the loop's turn: the queue can hold far more than the loop should wait for.
            # The producer never shortens the deque (a full queue drops one for each one it adds), so the count
            # taken here is still there when each popleft runs, even across an awaited handler.
            for _ in range(min(len(items), DISPATCH_BATCH)):
                event = popleft()
                try:
                    result = handler(event)
                    if result is not None and isawaitable(result):
                        await result
                except Exception:
                    log.exception("AMI event handler failed on %s", event.event or "?")
            if items:
                await asyncio.sleep(0)
            elif self._overflowing:
                self._overflowing = False
                log.warning("AMI event queue drained; %d events dropped so far", self.stats.dropped)

    def _enqueue(self, message: AmiMessage) -> None:
        self.stats.events += 1
        queue = self._queue
        if queue is not None and queue.put(message):
            self._overflowed(1)

    def _enqueue_all(self, messages: list[AmiMessage]) -> None:
        self.stats.events += len(messages)
        queue = self._queue
        if queue is not None:
            dropped = queue.put_all(messages)
            if dropped:
                self._overflowed(dropped)

    def _overflowed(self, dropped: int) -> None:
        self.stats.dropped += dropped
        if not self._overflowing:
            self._overflowing = True
            log.warning(
                "AMI event queue full (%d): dropping the oldest events; the live model needs a resync",
                self._queue_size,
            )
            self._lost_events()

    def _protocol_error(self, error: AmiProtocolError) -> None:
        self.stats.protocol_errors += 1
        log.warning("AMI protocol error: %s", error)
        if error.recoverable:
            # A dropped message may have been an event the live model needed.
            self._lost_events()

    def _lost_events(self) -> None:
        self._needs_resync = True
        if self._on_overflow is not None:
            try:
                self._on_overflow()
            except Exception:
                log.exception("AMI on_overflow failed")


def _is_pong(response: AmiMessage) -> bool:
    # Asterisk 22: "Response: Success" and "Ping: Pong"; Asterisk before 1.6 answered "Response: Pong".
    status = response.response.lower()
    return (status == "success" and response.get("Ping").lower() == "pong") or status == "pong"
