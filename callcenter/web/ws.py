"""The websocket ``/api/v1/ws``: events for the logged-in user's open pages, filtered by identity and role.

Feature packages send through :class:`Hub` (their notifiers), never to sockets: ``send`` picks the recipients
(one user, the holders of a permission, or everyone logged in) and queues one JSON frame per recipient. Each
connection has a bounded queue and its own writer task, so one slow page never holds up the others: a page that
falls too far behind is closed (1013, "try again later") and reconnects. ``coalesce`` keeps only the newest
frame of a type per connection and sends it at most once per interval (the supervisor board's changes).

Opening the socket with the session cookie is checked like an unsafe request (same origin): a page of another
site could otherwise open it with the user's cookie and read their screen-pops.

A socket lives no longer than the session it was opened with. The token is checked once, at the upgrade; after
that the hub listens to the auth service's notices (:mod:`callcenter.auth.sessions`) and closes the socket, its
queued frames dropped, when that session is logged out or its user disabled (4401, and the page goes to the
login), and when the user loses a permission they held (4403: the page reconnects and is sent what it may now
see). A timer closes it when the session expires (4401). Nothing is read from the database per frame; only a
change made by another process (a second engine, the CLI, SQL by hand), which sends no notice here, is found by
asking about every open socket's session in one query every ``revalidate_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from callcenter.auth.middleware import SESSION_TOKEN, bearer_token, check_same_origin, principal
from callcenter.auth.permissions import Permission, Role, permissions_for, requires
from callcenter.auth.services import AuthService, Principal, session_key
from callcenter.auth.sessions import SessionEnd
from callcenter.db import DatabaseError
from callcenter.keys import AUTH, HUB

log = logging.getLogger("callcenter.ws")

QUEUE_FRAMES = 512
MAX_CLIENT_MESSAGE = 4096
HEARTBEAT_SECONDS = 30.0
# Close codes of the private range (4000-4999), after the HTTP statuses they mirror: the session is over (log in
# again), or a permission the page relied on was withdrawn (reconnect and see what is left).
CLOSE_SESSION_ENDED = 4401
CLOSE_PERMISSION_WITHDRAWN = 4403
REVALIDATE_SECONDS = 60.0


def frame(event_type: str, data: dict[str, Any], at: datetime | None = None) -> str:
    body = {"type": event_type, "at": (at or datetime.now(UTC)).isoformat(), **data}
    return json.dumps(body, default=str, ensure_ascii=False)


class Client:
    def __init__(
        self, who: Principal, socket: web.WebSocketResponse, *, queue_frames: int, token_key: str = ""
    ) -> None:
        self.who = who
        self.socket = socket
        # The session the socket was opened with (its key, not the token): its end ends the socket.
        self.token_key = token_key
        self.writer: asyncio.Task[None] | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.queue: asyncio.Queue[str] = asyncio.Queue(queue_frames)
        self.dropped = False
        # Coalesced frames: the newest per type, and when that type was last sent.
        self.latest: dict[str, str] = {}
        self.sent_at: dict[str, float] = {}
        self.flush_pending: set[str] = set()

    def offer(self, text: str) -> bool:
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped = True
            return False
        return True


class Hub:
    def __init__(
        self,
        *,
        queue_frames: int = QUEUE_FRAMES,
        clock: Callable[[], float] = time.monotonic,
        revalidate_seconds: float = REVALIDATE_SECONDS,
    ) -> None:
        self._clients: set[Client] = set()
        self._revalidate_seconds = revalidate_seconds
        self._revalidator: asyncio.Task[None] | None = None
        self._queue_frames = queue_frames
        self._clock = clock
        self.sent = 0
        self.closed_slow = 0
        # Sockets closed because their session ended or a permission was withdrawn, by reason.
        self.closed_sessions: dict[str, int] = {}
        # The auth service whose notices this hub hears: the one that admitted its first socket.
        self._auth: AuthService | None = None
        self._unwatch: Callable[[], None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def connections(self) -> int:
        return len(self._clients)

    def recipients(
        self, *, user_id: int | None = None, permission: Permission | None = None, extension: str | None = None
    ) -> list[Client]:
        chosen = []
        for client in self._clients:
            if user_id is not None and client.who.user_id != user_id:
                continue
            if extension is not None and client.who.extension != extension:
                continue
            if permission is not None and not client.who.has(permission):
                continue
            chosen.append(client)
        return chosen

    def send(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        user_id: int | None = None,
        permission: Permission | None = None,
        extension: str | None = None,
        coalesce: float | None = None,
    ) -> int:
        """Queues the event for every matching connection; returns how many got it (now or, coalesced, soon)."""
        targets = self.recipients(user_id=user_id, permission=permission, extension=extension)
        if not targets:
            return 0
        text = frame(event_type, data)
        count = 0
        for client in targets:
            if coalesce is None:
                if client.offer(text):
                    count += 1
                else:
                    self._close_slow(client)
                continue
            client.latest[event_type] = text
            count += 1
            self._schedule_flush(client, event_type, coalesce)
        self.sent += count
        return count

    def _schedule_flush(self, client: Client, event_type: str, interval: float) -> None:
        if event_type in client.flush_pending:
            return
        wait = client.sent_at.get(event_type, -interval) + interval - self._clock()
        client.flush_pending.add(event_type)
        loop = asyncio.get_running_loop()
        if wait <= 0:
            loop.call_soon(self._flush, client, event_type)
        else:
            loop.call_later(wait, self._flush, client, event_type)

    def _flush(self, client: Client, event_type: str) -> None:
        client.flush_pending.discard(event_type)
        text = client.latest.pop(event_type, None)
        if text is None or client not in self._clients:
            return
        client.sent_at[event_type] = self._clock()
        if not client.offer(text):
            self._close_slow(client)

    def _close_slow(self, client: Client) -> None:
        if client in self._clients:
            self._clients.discard(client)
            self.closed_slow += 1
            log.warning("websocket of %s closed: it fell %d frames behind", client.who.username, self._queue_frames)
            self._close_soon(client, WSCloseCode.TRY_AGAIN_LATER, "too slow; reconnect")

    def _listen_to(self, auth: AuthService) -> None:
        if self._auth is auth:
            return
        if self._unwatch is not None:
            self._unwatch()
        self._auth = auth
        self._unwatch = auth.notices.watch(self)
        if self._revalidator is None and self._revalidate_seconds > 0:
            self._revalidator = asyncio.get_running_loop().create_task(self._revalidate_forever(), name="ws-revalidate")

    async def _revalidate_forever(self) -> None:
        while True:
            await asyncio.sleep(self._revalidate_seconds)
            try:
                await self.revalidate()
            except DatabaseError:
                log.warning("could not check the websockets' sessions again; next time", exc_info=True)

    async def revalidate(self) -> None:
        """Closes the sockets whose session is over, or whose user lost a permission, by the database's word now."""
        auth = self._auth
        opened = list(self._clients)
        if auth is None or not opened:
            return
        live = await auth.live_sessions({client.token_key for client in opened})
        for client in opened:
            if client not in self._clients:
                continue
            roles = live.get(client.token_key)
            if roles is None:
                self._end(client, SessionEnd.ENDED)
                continue
            self._follow_roles(client, roles)

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        who = principal(request)
        if bearer_token(request) is None:
            check_same_origin(request)
        auth = request.config_dict[AUTH]
        self._listen_to(auth)
        token = request[SESSION_TOKEN]
        socket = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS, max_msg_size=MAX_CLIENT_MESSAGE)
        await socket.prepare(request)
        client = Client(who, socket, queue_frames=self._queue_frames, token_key=session_key(token))
        self._clients.add(client)
        loop = asyncio.get_running_loop()
        client.writer = loop.create_task(self._write(client), name=f"ws-{who.username}")
        client.expiry = loop.call_later(auth.seconds_left(who), self._end, client, SessionEnd.EXPIRED)
        client.offer(frame("hello", {"user": who.username, "permissions": sorted(who.permissions)}))
        try:
            # A logout or a change of the user between the check at the upgrade and joining the hub sent its
            # notice before this socket could hear it: one more check closes that window.
            try:
                current: Principal | None = await auth.authenticate(token)
            except DatabaseError:
                # The notices still reach this socket; only the narrow window stays open while the database is out.
                log.warning("could not check the session of a new websocket again; keeping it", exc_info=True)
                current = who
            if current is None:
                self._end(client, SessionEnd.LOGGED_OUT)
            elif who.permissions - current.permissions:
                self._end(client, SessionEnd.PERMISSIONS_CHANGED)
            else:
                client.who = current
            async for message in socket:
                if message.type is WSMsgType.TEXT and message.data.strip() == '{"type":"ping"}':
                    client.offer(frame("pong", {}))
                elif message.type is WSMsgType.ERROR:
                    break
        finally:
            self._clients.discard(client)
            if client.expiry is not None:
                client.expiry.cancel()
            client.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client.writer
        return socket

    # SessionWatcher: the auth service's notices

    def session_ended(self, token_key: str, reason: SessionEnd) -> None:
        for client in [client for client in self._clients if client.token_key == token_key]:
            self._end(client, reason)

    def user_changed(self, user_id: int, roles: frozenset[Role] | None) -> None:
        for client in [client for client in self._clients if client.who.user_id == user_id]:
            if roles is None:
                self._end(client, SessionEnd.USER_DISABLED)
                continue
            self._follow_roles(client, roles)

    def _follow_roles(self, client: Client, roles: frozenset[Role]) -> None:
        permissions = permissions_for(roles)
        if client.who.permissions - permissions:
            self._end(client, SessionEnd.PERMISSIONS_CHANGED)
        elif permissions != client.who.permissions or roles != client.who.roles:
            # Only gained: the socket stays, and what is sent to it follows the new permissions.
            client.who = replace(client.who, roles=roles, permissions=permissions)

    def _end(self, client: Client, reason: SessionEnd) -> None:
        """Closes a socket whose session (or part of it) ended: nothing more is queued or written to it."""
        if client not in self._clients:
            return
        self._clients.discard(client)
        if client.expiry is not None:
            client.expiry.cancel()
        if client.writer is not None:
            # Frames still queued were meant for a session that is over.
            client.writer.cancel()
        code = CLOSE_PERMISSION_WITHDRAWN if reason is SessionEnd.PERMISSIONS_CHANGED else CLOSE_SESSION_ENDED
        self.closed_sessions[reason.value] = self.closed_sessions.get(reason.value, 0) + 1
        log.info("websocket of %s closed: %s", client.who.username, reason.value)
        self._close_soon(client, code, reason.value)

    def _close_soon(self, client: Client, code: int, message: str) -> None:
        task = asyncio.get_running_loop().create_task(self._close_socket(client, code, message))
        # Held until done: the loop keeps only a weak reference to a task.
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close_socket(client: Client, code: int, message: str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await client.socket.close(code=code, message=message.encode())

    async def _write(self, client: Client) -> None:
        while True:
            text = await client.queue.get()
            try:
                await client.socket.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    async def close(self) -> None:
        if self._revalidator is not None:
            self._revalidator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._revalidator
            self._revalidator = None
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
            self._auth = None
        for client in list(self._clients):
            with contextlib.suppress(Exception):
                await client.socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        self._clients.clear()


ws_routes = web.RouteTableDef()


@ws_routes.get("/api/v1/ws")
@requires()
async def websocket(request: web.Request) -> web.WebSocketResponse:
    return await request.config_dict[HUB].serve(request)
