"""The FastAGI server: one asyncio task per call, routed by ``agi_network_script``.

When the server refuses a call (over the concurrency limit, an unknown route, a broken header) it closes the
socket without setting CC_ACTION. Asterisk ends the AGI with AGISTATUS=SUCCESS (FAILURE only when it could not
connect at all), and the dialplan obeys nothing but an explicit `queue` or `hangup`: everything else goes to
the fallback that queues the caller, so no call is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from callcenter.agi import protocol
from callcenter.agi.connection import AgiConnection
from callcenter.agi.exceptions import AgiConnectionLost, AgiError, AgiHangup, AgiProtocolError
from callcenter.agi.protocol import AgiEnvironment
from callcenter.agi.session import AgiSession
from callcenter.calllog import call_context
from callcenter.dialplan import ACTION_FALLBACK, VAR_ACTION

log = logging.getLogger("callcenter.agi")

Handler = Callable[[AgiSession], Awaitable[None]]


class SessionObserver(Protocol):
    """Told about every session's start and end (metrics, the bus)."""

    def session_started(self, session: AgiSession) -> None: ...

    def session_ended(self, session: AgiSession, outcome: str, seconds: float) -> None: ...

    def session_rejected(self, reason: str) -> None: ...


class _NullObserver:
    def session_started(self, session: AgiSession) -> None:
        return None

    def session_ended(self, session: AgiSession, outcome: str, seconds: float) -> None:
        return None

    def session_rejected(self, reason: str) -> None:
        return None


@dataclass(frozen=True, slots=True)
class ServerLimits:
    read_timeout: float = 30.0
    command_timeout: float = 120.0
    max_sessions: int = 500
    max_header_lines: int = 200
    # Lines longer than this are a protocol error, never buffered without bound.
    max_line: int = protocol.MAX_LINE
    # The whole environment block; Asterisk's is about 2 KB. Bounds the work a trickling peer can cause.
    max_header_bytes: int = 65536
    # The kernel's accept queue: a burst of new calls larger than this waits a SYN retransmit (1 s).
    backlog: int = 1024


class FastAgiServer:
    def __init__(
        self,
        routes: Mapping[str, Handler],
        host: str,
        port: int,
        limits: ServerLimits | None = None,
        observer: SessionObserver | None = None,
    ) -> None:
        self._routes = dict(routes)
        self._host = host
        self._port = port
        self._limits = limits or ServerLimits()
        self._observer: SessionObserver = observer or _NullObserver()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[AgiConnection] = set()
        self._active = 0
        # -inf, not 0.0: time.monotonic() can be under 10 s on a freshly booted host.
        self._last_limit_log = float("-inf")
        self._refused_since_log = 0

    @property
    def active_sessions(self) -> int:
        return self._active

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def port(self) -> int:
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    def add_route(self, name: str, handler: Handler) -> None:
        self._routes[name] = handler

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_connection,
            self._host,
            self._port,
            reuse_address=True,
            backlog=max(self._limits.backlog, self._limits.max_sessions),
        )
        log.info("FastAGI listening on %s:%s (routes: %s)", self._host, self.port, ", ".join(sorted(self._routes)))

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is not None:
            self._server.close()
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for connection in list(self._connections):
            connection.close()
        if self._server is not None:
            # Since Python 3.12.1 wait_closed() also waits for every open connection, so it comes after
            # the sessions are finished or cancelled, or a session stuck on Asterisk would block stop().
            await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> FastAgiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _new_connection(self) -> AgiConnection:
        return AgiConnection(
            self,
            header_timeout=self._limits.read_timeout,
            max_header_lines=self._limits.max_header_lines,
            max_line=self._limits.max_line,
            max_header_bytes=self._limits.max_header_bytes,
        )

    # ConnectionOwner: called by AgiConnection from the event loop.

    def connection_admitted(self, connection: AgiConnection) -> bool:
        if self._active >= self._limits.max_sessions:
            self._refuse_over_limit()
            return False
        self._active += 1
        self._connections.add(connection)
        return True

    def header_ready(self, connection: AgiConnection, env: AgiEnvironment) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(connection, env))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def header_failed(self, connection: AgiConnection, error: AgiError) -> None:
        self._release(connection)
        self._observer.session_rejected("header")
        log.warning("FastAGI: dropped a connection from %s with a bad header: %s", connection.peer, error)

    def _release(self, connection: AgiConnection) -> None:
        if connection in self._connections:
            self._connections.discard(connection)
            self._active -= 1
        connection.close()

    def _refuse_over_limit(self) -> None:
        self._refused_since_log += 1
        self._observer.session_rejected("limit")
        now = time.monotonic()
        # One clear line per burst instead of one per refused call.
        if now - self._last_limit_log >= 10.0:
            log.warning(
                "FastAGI session limit reached (%d active, max_sessions=%d): refused %d call(s); "
                "they go to the dialplan fallback queue. Raise agi.max_sessions if this host can take more.",
                self._active,
                self._limits.max_sessions,
                self._refused_since_log,
            )
            self._last_limit_log = now
            self._refused_since_log = 0

    async def _serve(self, connection: AgiConnection, env: AgiEnvironment) -> None:
        started = time.monotonic()
        outcome = "error"
        observed = False
        session = AgiSession(
            env, connection, read_timeout=self._limits.read_timeout, command_timeout=self._limits.command_timeout
        )
        token = call_context.set((env.uniqueid, env.linkedid))
        try:
            handler = self._routes.get(env.script)
            if handler is None:
                self._observer.session_rejected("route")
                log.warning("FastAGI: no route %r; the call goes to the dialplan fallback", env.script[:64])
                return
            self._observer.session_started(session)
            observed = True
            outcome = await self._run(handler, session)
        finally:
            call_context.reset(token)
            self._release(connection)
            if observed:
                self._observer.session_ended(session, outcome, time.monotonic() - started)

    async def _run(self, handler: Handler, session: AgiSession) -> str:
        try:
            await handler(session)
        except AgiHangup:
            log.info("caller hung up")
            return "hangup"
        except AgiProtocolError as exc:
            log.warning("protocol error, session dropped: %s", exc)
            return "protocol_error"
        except AgiConnectionLost as exc:
            log.warning("connection lost: %s", exc)
            return "connection_lost"
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("route %r failed; sending the caller to the fallback queue", session.env.script)
            await self._fallback(session)
            return "error"
        return "hangup" if session.hung_up else "completed"

    async def _fallback(self, session: AgiSession) -> None:
        # The handler broke: tell the dialplan to queue the caller rather than drop them.
        with contextlib.suppress(AgiError, ValueError):
            await session.set_variable(VAR_ACTION, ACTION_FALLBACK)
