"""The FastAGI server: one asyncio task per call, routed by ``agi_network_script``.

When the server refuses a call (over the concurrency limit, an unknown route, a broken header) it closes the
socket; Asterisk then sets AGISTATUS=FAILURE and the dialplan's fallback queues the caller, so no call is
lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from callcenter.agi.exceptions import AgiConnectionLost, AgiError, AgiHangup, AgiProtocolError
from callcenter.agi.session import AgiSession, LineReader, read_environment
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
    max_line: int = 16384


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
        self._server = await asyncio.start_server(
            self._accept, self._host, self._port, limit=self._limits.max_line, reuse_address=True
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

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._active >= self._limits.max_sessions:
            self._refuse_over_limit(writer)
            return
        self._active += 1
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refuse_over_limit(self, writer: asyncio.StreamWriter) -> None:
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
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = time.monotonic()
        outcome = "error"
        session: AgiSession | None = None
        observed = False
        lines = LineReader(reader, self._limits.read_timeout)
        try:
            try:
                # One deadline for the whole header too: a peer trickling lines cannot hold a slot for long.
                async with asyncio.timeout(self._limits.read_timeout):
                    env = await read_environment(lines, self._limits.max_header_lines)
            except TimeoutError:
                self._observer.session_rejected("header")
                log.warning(
                    "FastAGI: dropped a connection whose header took longer than %.0f s",
                    self._limits.read_timeout,
                )
                return
            except AgiError as exc:
                self._observer.session_rejected("header")
                log.warning("FastAGI: dropped a connection with a bad header: %s", exc)
                return
            session = AgiSession(env, lines, writer, command_timeout=self._limits.command_timeout)
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
        finally:
            self._active -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2.0)
            if session is not None and observed:
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
