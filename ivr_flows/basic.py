"""The hotline's first route until the YAML flow engine takes over: welcome, one key, then the queue.

It answers, plays the welcome prompt while listening for one key, publishes what the caller chose, and tells
the dialplan to queue the caller to the general queue.
"""

from __future__ import annotations

import logging

from callcenter import dialplan
from callcenter.agi.session import AgiSession
from callcenter.bus import Bus

log = logging.getLogger("ivr_flows.basic")


class BasicIvr:
    def __init__(self, bus: Bus, general_queue: str, prompt: str = dialplan.PROMPT_WELCOME, timeout_ms: int = 5000):
        self._bus = bus
        self._queue = general_queue
        self._prompt = prompt
        self._timeout_ms = timeout_ms

    async def __call__(self, session: AgiSession) -> None:
        env = session.env
        self._bus.publish(
            "ivr.started",
            uniqueid=session.uniqueid,
            linkedid=session.linkedid,
            caller_number=env.callerid,
            caller_name=env.calleridname,
            did=env.params.get("did", env.extension),
        )
        await session.answer()
        result = await session.get_data(self._prompt, self._timeout_ms, 1)
        log.info("caller chose %r", result.digits)
        self._bus.publish("ivr.choice", uniqueid=session.uniqueid, linkedid=session.linkedid, digits=result.digits)
        if result.digits:
            await session.set_variable(dialplan.VAR_IVR_CHOICE, result.digits)
        await session.set_variable(dialplan.VAR_QUEUE, self._queue)
        await session.set_variable(dialplan.VAR_ACTION, dialplan.ACTION_QUEUE)
