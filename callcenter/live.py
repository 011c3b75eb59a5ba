"""The live model kept current: AMI events folded by the pure reducer, rebuilt on every (re)connect.

This is the only place that owns the AMI connection's event stream. Each domain event the reducer yields
(:mod:`callcenter.events`: ``CallOffered``, ``AgentStateChanged``, ...) is published on the bus as it is, for the
screen-pop, the recordings, the call records and the supervisor board.

The model is bounded: once it holds ``max_channels`` channels (``ami.max_channels``), an event that would add
one more is not folded, and the model is rebuilt from Asterisk's own listings instead, which hold only the
channels that exist. A peer that invents channels (ever new Uniqueids that never hang up) cannot grow the
engine's memory, nor the cost of each event (every fold copies the channel mapping), without end.
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

# The events whose reducer handlers add a channel for a Uniqueid the model does not have yet (the reducer's
# channels and resync modules; tests/unit/test_live_bound.py checks the list against the reducer).
CHANNEL_EVENTS = frozenset({"Newchannel", "Newstate", "NewCallerid", "BridgeEnter", "CoreShowChannel"})

DEFAULT_MAX_CHANNELS = 20_000


class LiveService:
    def __init__(
        self,
        connection_factory: Callable[..., AmiConnection],
        bus: Bus,
        *,
        wrapup: dict[str, float] | None = None,
        clock: Callable[[], float] = time.time,
        tick_interval: float = 1.0,
        max_channels: int = DEFAULT_MAX_CHANNELS,
    ) -> None:
        if max_channels < 1:
            raise ValueError("max_channels must be >= 1")
        self._bus = bus
        self.max_channels = max_channels
        # New channels not folded because the model was full, since the start (for /metrics).
        self.channels_refused = 0
        self._over_bound = False
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
        if len(self.model.channels) >= self.max_channels:
            if self._refused(message):
                return
        elif self._over_bound:
            self._over_bound = False
            log.info("live model back under its bound of %d channels", self.max_channels)
        self.model, events = apply(self.model, message, self._clock())
        self._publish(events)
        if self.model.resync_needed:
            self._schedule_resync("Asterisk restarted")

    def _refused(self, message: AmiMessage) -> bool:
        """At the bound: True (and a resync asked for, once per burst) when ``message`` would add a channel."""
        if message.event not in CHANNEL_EVENTS or message.lowered.get("uniqueid", "") in self.model.channels:
            return False
        self.channels_refused += 1
        if not self._over_bound:
            # One warning and one resync per burst: the burst lasts until the model is under the bound again.
            self._over_bound = True
            log.warning(
                "live model full (%d channels, ami.max_channels): new channels are not folded until it is "
                "rebuilt from Asterisk's listings; if Asterisk really has this many, raise ami.max_channels",
                self.max_channels,
            )
            self._schedule_resync("channel bound reached")
        return True

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
            # From here on a new request needs a resync of its own: this one's listings may predate its cause.
            self._resync_pending = False
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
