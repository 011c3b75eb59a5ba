"""The live model kept current: AMI events folded by the pure reducer, rebuilt on every (re)connect.

This is the only place that owns the AMI connection's event stream. Each domain event the reducer yields
(:mod:`callcenter.events`: ``CallOffered``, ``AgentStateChanged``, ...) is published on the bus as it is, for the
screen-pop, the recordings, the call records and the supervisor board.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from callcenter.ami import actions
from callcenter.ami.connection import AmiConnection
from callcenter.ami.exceptions import AmiError
from callcenter.ami.message import AmiMessage
from callcenter.ami.reducer import apply, rebuild, tick
from callcenter.bus import Bus
from callcenter.events import AsteriskUserEvent, ChanSpyChanged, DomainEvent, LiveResynced
from callcenter.model import LiveModel

log = logging.getLogger("callcenter.live")


class LiveService:
    def __init__(
        self,
        connection_factory: Callable[..., AmiConnection],
        bus: Bus,
        *,
        wrapup: dict[str, float] | None = None,
        clock: Callable[[], float] = time.time,
        tick_interval: float = 1.0,
    ) -> None:
        self._bus = bus
        self._clock = clock
        self._tick_interval = tick_interval
        self.model = LiveModel(wrapup=dict(wrapup or {}))
        self.resyncs = 0
        self.connection = connection_factory(
            on_event=self._on_event, on_connect=self._on_connect, on_overflow=self._on_overflow
        )
        self._ticker: asyncio.Task[None] | None = None
        self._resync_lock = asyncio.Lock()
        self._resync_pending = False

    async def start(self) -> None:
        await self.connection.start()
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever(), name="live-ticker")

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self.connection.close()

    def _publish(self, events: Iterable[DomainEvent]) -> None:
        for event in events:
            self._bus.publish(event)

    def _on_event(self, message: AmiMessage) -> None:
        if message.event == "UserEvent":
            # Dialplan signals (the expert handoff's outcome...) for whoever listens; the model ignores them.
            self._bus.publish(AsteriskUserEvent(name=message.get("UserEvent"), headers=message.to_dict()))
        elif message.event in ("ChanSpyStart", "ChanSpyStop"):
            self._bus.publish(ChanSpyChanged(name=message.event, headers=message.to_dict()))
        self.model, events = apply(self.model, message, self._clock())
        self._publish(events)
        if self.model.resync_needed:
            self._schedule_resync("Asterisk restarted")

    async def _on_connect(self) -> None:
        await self.resync("connected")

    def _on_overflow(self) -> None:
        self._schedule_resync("events were lost")

    def _schedule_resync(self, reason: str) -> None:
        if self._resync_pending:
            return
        self._resync_pending = True
        task = asyncio.get_running_loop().create_task(self.resync(reason))
        task.add_done_callback(lambda _task: setattr(self, "_resync_pending", False))

    async def resync(self, reason: str) -> None:
        """Rebuilds the model from Asterisk's own listings; calls that ended meanwhile are closed."""
        async with self._resync_lock:
            try:
                results = [
                    await self.connection.send(actions.core_show_channels()),
                    await self.connection.send(actions.queue_status()),
                    await self.connection.send(actions.queue_summary()),
                ]
            except AmiError as exc:
                log.warning("resync (%s) failed: %s; it is tried again on the next connect", reason, exc)
                return
            self.model, events = rebuild(self.model, results, self._clock())
            self.connection.clear_needs_resync()
            self.resyncs += 1
            self._bus.publish(LiveResynced(reason=reason, resyncs=self.resyncs))
            log.info(
                "live model rebuilt (%s): %d calls, %d channels",
                reason,
                len(self.model.calls),
                len(self.model.channels),
            )
            self._publish(events)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._tick_interval)
            self.model, events = tick(self.model, self._clock())
            self._publish(events)
