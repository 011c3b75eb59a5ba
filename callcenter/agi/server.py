"""The FastAGI server: one asyncio task per call, routed by ``agi_network_script``.

When the server refuses a call (over the concurrency limit, an unknown route, a broken header, a peer that is not
Asterisk, a wrong secret) it closes the socket without setting CC_ACTION. Asterisk ends the AGI with
AGISTATUS=SUCCESS (FAILURE only when it could not connect at all), and the dialplan obeys nothing but an explicit
`queue` or `hangup`: everything else goes to
the fallback that queues the caller, so no call is lost.

Who may talk to the server (see docs/security.md): only peers in ``AccessPolicy.allowed_peers`` (closed at once
otherwise), and, when a shared secret is set, only sessions whose AGI URL carries it (``?...&secret=...``,
compared in constant time and removed from the environment before any route sees it). A peer's connections that
sit silent in the header phase are capped per peer: past ``max_pending_per_peer`` the oldest that have been
silent for ``header_grace`` are closed to make room, and at ``max_sessions`` the oldest silent one of any peer
is, so idle sockets cannot make the server refuse a real call. Asterisk sends its whole environment as soon as it
connects, so a real call is never the silent one; a burst of real calls arriving together is never cut by the
per-peer cap (only connections silent past the grace are closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
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
    # Seconds a new connection has to send its whole environment; None: read_timeout.
    header_timeout: float | None = None
    # Connections of one peer that may sit in the header phase past header_grace; beyond, the oldest are closed.
    max_pending_per_peer: int = 32
    # Asterisk writes its environment right after connecting: a connection silent this long is not Asterisk at work.
    header_grace: float = 0.5


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK_PEERS: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))


def parse_peers(peers: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or networks (``127.0.0.1``, ``10.0.0.0/24``) as networks; ValueError names a bad one."""
    return tuple(ipaddress.ip_network(peer, strict=False) for peer in peers)


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Who is Asterisk: the peers allowed to connect, and the secret their AGI URL must carry (None: no secret)."""

    allowed_peers: tuple[Network, ...] = LOOPBACK_PEERS
    secret: str | None = field(default=None, repr=False)

    def allows(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allowed_peers)

    def secret_matches(self, given: str | None) -> bool:
        if self.secret is None:
            return True
        # compare_digest: the time taken does not tell how much of a guess was right.
        return given is not None and hmac.compare_digest(given.encode("utf-8"), self.secret.encode("utf-8"))


class FastAgiServer:
    def __init__(
        self,
        routes: Mapping[str, Handler],
        host: str,
        port: int,
        limits: ServerLimits | None = None,
        observer: SessionObserver | None = None,
        access: AccessPolicy | None = None,
    ) -> None:
        self._routes = dict(routes)
        self._host = host
        self._port = port
        self._limits = limits or ServerLimits()
        self._access = access or AccessPolicy()
        # Connections still in their header phase, per peer address, with the loop time each arrived at
        # (insertion order is arrival order, so the first is the oldest).
        self._pending: dict[str, dict[AgiConnection, float]] = {}
        self._burst_logs: dict[str, tuple[float, int]] = {}
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
            header_timeout=self._limits.header_timeout or self._limits.read_timeout,
            max_header_lines=self._limits.max_header_lines,
            max_line=self._limits.max_line,
            max_header_bytes=self._limits.max_header_bytes,
        )

    # ConnectionOwner: called by AgiConnection from the event loop.

    def connection_admitted(self, connection: AgiConnection) -> bool:
        host = connection.peer_host
        if not self._access.allows(host):
            self._observer.session_rejected("peer")
            self._burst_log(
                "peer", "FastAGI: refused %d connection(s) from peers not in agi.allowed_peers (last: %s)", host
            )
            return False
        now = asyncio.get_running_loop().time()
        pending = self._pending.setdefault(host, {})
        while len(pending) >= self._limits.max_pending_per_peer and self._evict_oldest(pending, now):
            pass
        if self._active >= self._limits.max_sessions:
            oldest = min(
                (peer_pending for peer_pending in self._pending.values() if peer_pending),
                key=lambda peer_pending: next(iter(peer_pending.values())),
                default=None,
            )
            if oldest is None or not self._evict_oldest(oldest, now):
                self._refuse_over_limit()
                return False
        self._active += 1
        self._connections.add(connection)
        # Looked up again: an eviction above drops a peer's dict once it is empty.
        self._pending.setdefault(host, {})[connection] = now
        return True

    def _evict_oldest(self, pending: dict[AgiConnection, float], now: float) -> bool:
        """Closes the peer's oldest connection in the header phase if it has been silent past the grace."""
        oldest, since = next(iter(pending.items()))
        if now - since < self._limits.header_grace:
            return False
        self._observer.session_rejected("idle")
        self._burst_log(
            "idle", "FastAGI: closed %d connection(s) silent in the header phase to make room (last: %s)", oldest.peer
        )
        oldest.evict()
        self._release(oldest)
        return True

    def header_ready(self, connection: AgiConnection, env: AgiEnvironment) -> None:
        self._forget_pending(connection)
        try:
            env, given = protocol.take_secret(env)
        except AgiProtocolError as exc:
            self._refuse_secret(connection, str(exc))
            return
        if not self._access.secret_matches(given):
            self._refuse_secret(connection, "no secret" if given is None else "a wrong secret")
            return
        task = asyncio.get_running_loop().create_task(self._serve(connection, env))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refuse_secret(self, connection: AgiConnection, why: str) -> None:
        self._release(connection)
        self._observer.session_rejected("secret")
        # Never the secret itself, only that it did not match.
        self._burst_log(
            "secret",
            "FastAGI: refused %d session(s) whose AGI URL had no or a wrong secret (last: %s)",
            f"{connection.peer}, {why}",
        )

    def header_failed(self, connection: AgiConnection, error: AgiError) -> None:
        self._release(connection)
        self._observer.session_rejected("header")
        log.warning("FastAGI: dropped a connection from %s with a bad header: %s", connection.peer, error)

    def _forget_pending(self, connection: AgiConnection) -> None:
        host = connection.peer_host
        pending = self._pending.get(host)
        if pending is not None and pending.pop(connection, None) is not None and not pending:
            del self._pending[host]

    def _release(self, connection: AgiConnection) -> None:
        self._forget_pending(connection)
        if connection in self._connections:
            self._connections.discard(connection)
            self._active -= 1
        connection.close()

    def _burst_log(self, kind: str, message: str, last: str) -> None:
        """One warning per kind per 10 s, counting what happened since, instead of one line per connection."""
        now = time.monotonic()
        logged_at, count = self._burst_logs.get(kind, (float("-inf"), 0))
        count += 1
        if now - logged_at >= 10.0:
            log.warning(message, count, last)
            self._burst_logs[kind] = (now, 0)
        else:
            self._burst_logs[kind] = (logged_at, count)

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
