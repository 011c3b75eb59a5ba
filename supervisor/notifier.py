"""Sends the live board to the supervisors' pages: a ``board`` websocket frame when something changed.

Every domain event that can change the board (a seat's state, a call offered, answered or ended, a queue's
callers, a resync, a call record written) marks the board changed. The board is then rebuilt at most once per
``interval`` (the first change after a quiet spell at once, later ones together at the end of the interval) and
only while some page with ``seats.read`` is connected; the hub then sends each page at most one ``board`` frame
per interval, the newest. A frame also goes out every ``refresh`` seconds when nothing changed, so that the
times in state and the waits keep moving on pages that do not count them up themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from callcenter.auth.permissions import Permission
from callcenter.bus import Bus
from callcenter.events import (
    AgentStateChanged,
    CallAnswered,
    CallEnded,
    CallOffered,
    CallTransferred,
    LiveResynced,
    QueueChanged,
)
from callcenter.model import AgentStatus
from callcenter.web.ws import Hub
from calls.events import CallRecorded
from supervisor.board import DIRECTORY_REFRESH, BoardService

log = logging.getLogger("callcenter.supervisor")

BOARD_FRAME = "board"
CHANGES: tuple[type, ...] = (
    AgentStateChanged,
    CallOffered,
    CallAnswered,
    CallTransferred,
    CallEnded,
    QueueChanged,
    LiveResynced,
)


class BoardNotifier:
    def __init__(
        self,
        board: BoardService,
        hub: Hub,
        bus: Bus,
        *,
        interval: float = 1.0,
        refresh: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._board = board
        self._hub = hub
        self._bus = bus
        self.interval = interval
        self._refresh = refresh
        self._clock = clock
        self._built_at = -interval
        self._pending = False
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._ticker: asyncio.Task[None] | None = None
        self.builds = 0

    def start(self) -> None:
        self._unsubscribe = [self._bus.subscribe(kind, self._changed) for kind in CHANGES]
        self._unsubscribe.append(self._bus.subscribe(CallRecorded, self._recorded))
        self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="board-refresh")

    async def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self._handle is not None:
            self._handle.cancel()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker

    def _changed(self, event: object) -> None:
        self._board.touch()
        if isinstance(event, LiveResynced) or (
            isinstance(event, AgentStateChanged) and AgentStatus.LOGGED_OUT in (event.old, event.new)
        ):
            # A seat logged in or out (or Asterisk was asked again): names and teams may have changed.
            self._board.refresh_directory()
        self.schedule()

    def _recorded(self, event: CallRecorded) -> None:
        if self._board.record(event.call):
            self._board.touch()
            self.schedule()

    def schedule(self) -> None:
        """Builds and sends the board now or at the end of the current interval; one build per interval."""
        if self._pending:
            return
        self._pending = True
        loop = asyncio.get_running_loop()
        wait = self._built_at + self.interval - self._clock()
        self._handle = loop.call_soon(self._push) if wait <= 0 else loop.call_later(wait, self._push)

    def _push(self) -> None:
        self._pending = False
        self._handle = None
        if not self._hub.recipients(permission=Permission.SEATS_READ):
            return
        self._built_at = self._clock()
        self.builds += 1
        self._hub.send(BOARD_FRAME, self._board.snapshot(), permission=Permission.SEATS_READ, coalesce=self.interval)

    async def _tick(self) -> None:
        since_directory = 0.0
        while True:
            await asyncio.sleep(self._refresh)
            if self._clock() - self._built_at >= self._refresh:
                self.schedule()
            since_directory += self._refresh
            if since_directory >= DIRECTORY_REFRESH.total_seconds():
                since_directory = 0.0
                self._board.refresh_directory()
