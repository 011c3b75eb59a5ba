"""The call features as a plugin (:class:`callcenter.plugin.Plugin`): one record per call, the expert handoff
and callbacks.

The call recorder starts before the AMI connection, so that it sees every call the first resync shows; after that
first resync it reconciles what it snapshotted before a restart with Asterisk's channel event log.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from callcenter.events import LiveResynced
from callcenter.plugin import Core
from calls.callbacks import CallbackService
from calls.handoff import HandoffService
from calls.http import call_routes
from calls.keys import CALLBACKS, CALLS, HANDOFF
from calls.service import CallRecorder
from seats.ports import SeatDirectory


class CallsPlugin:
    name = "calls"

    def __init__(self, core: Core, *, seats: SeatDirectory) -> None:
        """``seats``: who is on which phone (the seats' port, given by the composition root), for the handoff."""
        config, live = core.config, core.live
        self._bus = core.bus
        self.recorder = CallRecorder(
            core.database,
            core.bus,
            lambda: live.model,
            cel_log=config.cel_log,
            expert_queue=config.queues.expert,
            horizon_file=config.data_dir / "cel-horizon",
            journal_dir=config.data_dir,
            reconcile_interval=config.calls.reconcile_interval,
        )
        self.handoff = HandoffService(
            core.database,
            core.bus,
            core.auth,
            config,
            lambda: live.connection,
            lambda: live.model,
            seats=seats,
            keep=self.recorder.keep,
        )
        self.callbacks = CallbackService(
            config, core.bus, core.auth, self.recorder, lambda: live.connection, lambda: live.model
        )
        self._unsubscribe: Callable[[], None] | None = None

    def install(self, app: web.Application) -> None:
        app[CALLS] = self.recorder
        app[HANDOFF] = self.handoff
        app[CALLBACKS] = self.callbacks
        app.add_routes(call_routes)

    async def start(self) -> None:
        await self.recorder.start()
        self.handoff.start()
        self._unsubscribe = self._bus.subscribe(LiveResynced, self._after_resync)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.handoff.close()
        await self.recorder.close()

    async def _after_resync(self, event: LiveResynced) -> None:
        if event.resyncs == 1:
            await self.recorder.reconcile()
