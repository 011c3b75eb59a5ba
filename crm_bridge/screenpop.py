"""The screen-pop: when a call rings an agent's phone, that agent's open pages get the caller's file.

The agent is the person on the phone (``seats``, the seats' port: whoever is logged in on its seat), never
whoever has its extension: extensions get reassigned while a seat keeps its holder until logout.

Triggered by ``CallOffered`` (AgentCalled: the phone starts ringing), so the file is on screen before the agent
answers. The frame carries every customer owning the calling number (a shared number pops them all; an unknown
one pops a form to create the customer), the last calls from that number and the customer's other numbers, the
open service records, what the caller chose in the IVR and its path, how long they waited, and, on an expert
call, the first agent's notes. Caller-controlled text goes out verbatim as JSON strings; pages render it as text.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from callcenter.bus import Bus, event_fields
from callcenter.db import Database, DatabaseError, DatabaseUnavailable
from callcenter.events import CallEnded, CallOffered
from callcenter.model import LiveModel
from callcenter.web.ws import Hub
from calls.events import ExpertRequested
from calls.ports import CallHistory
from crm_bridge.popquery import HISTORY as HISTORY
from crm_bridge.popquery import PopReader
from crm_bridge.services import CrmService
from ivr_flows.events import IvrEnded
from seats.ports import SeatDirectory

log = logging.getLogger("crm_bridge.screenpop")

_MEMORY = 5000


class _Recent(OrderedDict[str, dict[str, Any]]):
    def put(self, key: str, value: dict[str, Any]) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > _MEMORY:
            self.popitem(last=False)


class ScreenPop:
    def __init__(
        self,
        crm: CrmService,
        database: Database,
        bus: Bus,
        hub: Hub,
        model: Callable[[], LiveModel],
        *,
        history: CallHistory,
        seats: SeatDirectory,
        expert_queue: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._crm = crm
        self._seats = seats
        # The files on the raw driver (crm_bridge.popquery), the last calls from the calls' port (``history``).
        self.reader = PopReader(database, crm.customers.rules, history)
        self._bus = bus
        self._hub = hub
        self._model = model
        self._expert_queue = expert_queue
        self._clock = clock
        self._ivr = _Recent()
        self._handoffs = _Recent()
        self._unsubscribe: list[Callable[[], None]] = []
        self.popped = 0
        # When the last pop's frame was queued (for the benchmark and the metrics).
        self.last_latency: float | None = None

    def start(self) -> None:
        self._unsubscribe = [
            self._bus.subscribe(CallOffered, self._on_offered),
            self._bus.subscribe(IvrEnded, self._remember(self._ivr)),
            self._bus.subscribe(ExpertRequested, self._remember(self._handoffs)),
            self._bus.subscribe(CallEnded, self._forget),
        ]

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    @staticmethod
    def _remember(store: _Recent) -> Callable[[IvrEnded | ExpertRequested], None]:
        def keep(event: IvrEnded | ExpertRequested) -> None:
            if event.linkedid:
                store.put(event.linkedid, event_fields(event))

        return keep

    def _forget(self, event: CallEnded) -> None:
        # Nobody is offered a call that is over: what its IVR and a handoff said goes with it.
        self._ivr.pop(event.call.linkedid, None)
        self._handoffs.pop(event.call.linkedid, None)

    def held(self) -> int:
        """How many calls' IVR results and handoffs are kept for their pops."""
        return len(self._ivr.keys() | self._handoffs.keys())

    async def _on_offered(self, event: CallOffered) -> None:
        started = time.perf_counter()
        agent = event.agent
        if not agent.startswith("PJSIP/"):
            return
        try:
            person = await self._seats.person_at(agent)
        except DatabaseError as exc:
            log.warning("no screen-pop for %s: who is on that phone cannot be read: %s", agent, exc)
            return
        if person is None:
            log.info("no screen-pop for %s: nobody known is on that phone", agent)
            return
        try:
            payload = await self.build(event.linkedid, event.queue)
        except DatabaseUnavailable as exc:
            # An outage is said once by the database itself; each pop without the CRM is an info line.
            log.info("screen-pop for %s without the CRM: %s", agent, exc)
            payload = self._without_crm(event.linkedid)
        except DatabaseError as exc:
            log.warning("screen-pop for %s without the CRM: %s", agent, exc)
            payload = self._without_crm(event.linkedid)
        payload["agent"] = agent
        self._hub.send("screen_pop", payload, user_id=person)
        self.popped += 1
        self.last_latency = time.perf_counter() - started

    def _without_crm(self, linkedid: str) -> dict[str, Any]:
        """The frame when the CRM cannot be read: still who is calling (as given, like all caller text)."""
        call = self._model().calls.get(linkedid)
        return {
            "linkedid": linkedid,
            "crm_unavailable": True,
            "caller": {
                "number": call.caller_number if call else "",
                "name": call.caller_name if call else "",
                "did": call.did if call else "",
            },
        }

    async def build(self, linkedid: str, queue: str) -> dict[str, Any]:
        """The screen-pop of one call (also served by the API for a page opened mid-call)."""
        call = self._model().calls.get(linkedid)
        number = call.caller_number if call else ""
        name = call.caller_name if call else ""
        found = await self.reader.read(number)
        files, history = found.files, found.history
        ivr = self._ivr.get(linkedid) or {}
        handoff = self._handoffs.get(linkedid)
        waited = None
        if call is not None and call.segments:
            waited = max(0.0, self._clock() - call.segments[-1].entered)
        elif call is not None and call.queued_at is not None:
            waited = max(0.0, self._clock() - call.queued_at)
        return {
            "linkedid": linkedid,
            "queue": queue,
            "expert_call": queue == self._expert_queue,
            "caller": {"number": number, "name": name, "did": call.did if call else ""},
            "customers": [file.as_json() for file in files],
            "unknown_caller": not files,
            "new_customer": None if files else {"number": number, "name": name},
            "history": history,
            "ivr": {
                "flow": ivr.get("flow"),
                "choice": ivr.get("choice"),
                "language": ivr.get("language"),
                "path": [
                    {"node": step.get("node"), "step": step.get("step"), "digits": step.get("digits")}
                    for step in ivr.get("path") or ()
                    if isinstance(step, dict)
                ],
            },
            "waited": waited,
            "handoff": None
            if handoff is None
            else {
                "from_user": handoff.get("from_user"),
                "notes": handoff.get("notes"),
                "requested_at": handoff.get("requested_at"),
            },
        }
