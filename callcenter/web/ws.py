"""The websocket ``/api/v1/ws``: events for the logged-in user's open pages, filtered by identity and role.

Feature packages send through :class:`Hub` (their notifiers), never to sockets: ``send`` picks the recipients
(one user, the holders of a permission, or everyone logged in) and queues one JSON frame per recipient. Each
connection has a bounded queue and its own writer task, so one slow page never holds up the others: a page that
falls too far behind is closed (1013, "try again later") and reconnects. ``coalesce`` keeps only the newest
frame of a type per connection and sends it at most once per interval (the supervisor board's changes).

Opening the socket with the session cookie is checked like an unsafe request (same origin): a page of another
site could otherwise open it with the user's cookie and read their screen-pops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from callcenter.auth.middleware import bearer_token, check_same_origin, principal
from callcenter.auth.permissions import Permission, requires
from callcenter.auth.services import Principal
from callcenter.events import AgentStateChanged
from callcenter.keys import HUB

log = logging.getLogger("callcenter.ws")

QUEUE_FRAMES = 512
MAX_CLIENT_MESSAGE = 4096
HEARTBEAT_SECONDS = 30.0


def frame(event_type: str, data: dict[str, Any], at: datetime | None = None) -> str:
    body = {"type": event_type, "at": (at or datetime.now(UTC)).isoformat(), **data}
    return json.dumps(body, default=str, ensure_ascii=False)


class Client:
    def __init__(self, who: Principal, socket: web.WebSocketResponse, *, queue_frames: int) -> None:
        self.who = who
        self.socket = socket
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
    def __init__(self, *, queue_frames: int = QUEUE_FRAMES, clock: Callable[[], float] = time.monotonic) -> None:
        self._clients: set[Client] = set()
        self._queue_frames = queue_frames
        self._clock = clock
        self.sent = 0
        self.closed_slow = 0

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
            asyncio.get_running_loop().create_task(
                client.socket.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow; reconnect")
            )

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        who = principal(request)
        if bearer_token(request) is None:
            check_same_origin(request)
        socket = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS, max_msg_size=MAX_CLIENT_MESSAGE)
        await socket.prepare(request)
        client = Client(who, socket, queue_frames=self._queue_frames)
        self._clients.add(client)
        writer = asyncio.get_running_loop().create_task(self._write(client), name=f"ws-{who.username}")
        client.offer(frame("hello", {"user": who.username, "permissions": sorted(who.permissions)}))
        try:
            async for message in socket:
                if message.type is WSMsgType.TEXT and message.data.strip() == '{"type":"ping"}':
                    client.offer(frame("pong", {}))
                elif message.type is WSMsgType.ERROR:
                    break
        finally:
            self._clients.discard(client)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return socket

    async def _write(self, client: Client) -> None:
        while True:
            text = await client.queue.get()
            try:
                await client.socket.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    async def close(self) -> None:
        for client in list(self._clients):
            with contextlib.suppress(Exception):
                await client.socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        self._clients.clear()


ws_routes = web.RouteTableDef()


@ws_routes.get("/api/v1/ws")
@requires()
async def websocket(request: web.Request) -> web.WebSocketResponse:
    return await request.config_dict[HUB].serve(request)


def seat_notifier(hub: Hub) -> Callable[[AgentStateChanged], None]:
    """Tells an agent's own pages when their seat changes state (``AgentStateChanged`` on the bus)."""

    def notify(event: AgentStateChanged) -> None:
        interface = event.agent
        if not interface.startswith("PJSIP/"):
            return
        hub.send(
            "agent_state",
            {"agent": interface, "state": str(event.new), "since": event.since, "reason": event.reason},
            extension=interface.removeprefix("PJSIP/"),
        )

    return notify
