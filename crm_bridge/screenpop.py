"""The screen-pop: when a call rings an agent's phone, that agent's open pages get the caller's file.

Triggered by ``call.offered`` (AgentCalled: the phone starts ringing), so the file is on screen before the agent
answers. The frame carries every customer owning the calling number (a shared number pops them all; an unknown
one pops a form to create the customer), the last calls from that number and the customer's other numbers, the
open service records, what the caller chose in the IVR and its path, how long they waited, and, on an expert
call, the first agent's notes. Caller-controlled text goes out verbatim as JSON strings; pages render it as text.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select

from callcenter.bus import Bus, Event
from callcenter.calls.models import CallRecord
from callcenter.calls.records import caller_tail
from callcenter.db import Database, DatabaseError
from callcenter.model import LiveModel
from callcenter.web.ws import Hub
from crm_bridge.services import CrmService, CustomerFile

log = logging.getLogger("crm_bridge.screenpop")

HISTORY = 10
_MEMORY = 5000


class _Recent(OrderedDict[str, dict[str, Any]]):
    def put(self, key: str, value: dict[str, Any]) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > _MEMORY:
            self.popitem(last=False)


def _numbers(files: Iterable[CustomerFile], calling: str) -> list[str]:
    found = {calling} if calling else set()
    for file in files:
        found.update(phone.number for phone in file.customer.phones)
    return sorted(found)[:50]


def _history_row(row: CallRecord) -> dict[str, Any]:
    return {
        "linkedid": row.linkedid,
        "started_at": row.started_at.isoformat(),
        "caller_number": row.caller_number,
        "outcome": row.outcome,
        "choice": row.ivr_choice,
        "agent": row.agent,
        "expert": row.expert,
        "talk_time": row.talk_time,
        "notes": row.handoff_notes,
    }


class ScreenPop:
    def __init__(
        self,
        crm: CrmService,
        database: Database,
        bus: Bus,
        hub: Hub,
        model: Callable[[], LiveModel],
        *,
        expert_queue: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._crm = crm
        self._database = database
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
            self._bus.subscribe("call.offered", self._on_offered),
            self._bus.subscribe("ivr.ended", self._remember(self._ivr)),
            self._bus.subscribe("call.expert_requested", self._remember(self._handoffs)),
        ]

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    @staticmethod
    def _remember(store: _Recent) -> Callable[[Event], None]:
        def keep(event: Event) -> None:
            linkedid = str(event.data.get("linkedid") or "")
            if linkedid:
                store.put(linkedid, dict(event.data))

        return keep

    async def _on_offered(self, event: Event) -> None:
        started = time.perf_counter()
        agent = str(event.data.get("agent") or "")
        if not agent.startswith("PJSIP/"):
            return
        try:
            payload = await self.build(str(event.data.get("linkedid") or ""), str(event.data.get("queue") or ""))
        except DatabaseError as exc:
            log.warning("screen-pop for %s without the CRM: %s", agent, exc)
            payload = {"linkedid": event.data.get("linkedid"), "crm_unavailable": True}
        payload["agent"] = agent
        self._hub.send("screen_pop", payload, extension=agent.removeprefix("PJSIP/"))
        self.popped += 1
        self.last_latency = time.perf_counter() - started

    async def build(self, linkedid: str, queue: str) -> dict[str, Any]:
        """The screen-pop of one call (also served by the API for a page opened mid-call)."""
        call = self._model().calls.get(linkedid)
        number = call.caller_number if call else ""
        name = call.caller_name if call else ""
        files, history = await self._lookup(number)
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

    async def _lookup(self, number: str) -> tuple[list[CustomerFile], list[dict[str, Any]]]:
        if not number:
            return [], []
        files = await self._crm.files_by_number(number)
        numbers = _numbers(files, number)
        tails = sorted({tail for tail in map(caller_tail, numbers) if tail})
        if not tails:
            return files, []
        keys = {key for key in map(self._crm.phone_key, numbers) if key}
        async with self._database.session() as session:
            rows = (
                await session.scalars(
                    select(CallRecord)
                    .where(CallRecord.caller_tail.in_(tails))
                    .order_by(CallRecord.started_at.desc())
                    .limit(HISTORY * 5)
                )
            ).all()
        # The tail finds candidates; the CRM's numbering rules say which are the same number.
        same = [row for row in rows if row.caller_number in numbers or self._crm.phone_key(row.caller_number) in keys]
        return files, [_history_row(row) for row in same[:HISTORY]]
