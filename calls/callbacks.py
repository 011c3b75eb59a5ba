"""Callbacks: the engine rings the agent's own phone and, once the agent answers, dials the customer.

``POST /api/v1/callbacks`` sends one AMI Originate of ``PJSIP/<agent's extension>`` into the ``cc-callback``
context with the customer's number (checked here: digits and a leading ``+`` only, so it can never smuggle Dial
options or other targets) and a generated channel id, which becomes the call's linkedid. The call record is an
outbound one, with the customer's number and the agent, linked to the service record it was made for; the
bus carries ``CallbackStarted`` for whoever wants to follow callbacks (nothing subscribes yet).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

from callcenter import dialplan
from callcenter.ami import actions
from callcenter.ami.connection import AmiConnection
from callcenter.ami.exceptions import AmiError
from callcenter.auth.services import AuthService, Principal
from callcenter.bus import Bus, event_fields
from callcenter.config import Config
from callcenter.model import AgentStatus, LiveModel
from callcenter.web.errors import Conflict, InvalidInput, Unavailable
from calls.events import CallbackStarted
from calls.service import CallRecorder

NUMBER = re.compile(r"^\+?[0-9]{3,20}$")
RING_AGENT_MS = 30_000


def check_number(raw: str) -> str:
    number = re.sub(r"[\s().-]", "", raw)
    if not NUMBER.match(number):
        raise InvalidInput(
            "the number to call back must be 3 to 20 digits, optionally after a +",
            {"fields": {"number": "not a phone number"}},
        )
    return number


class CallbackService:
    def __init__(
        self,
        config: Config,
        bus: Bus,
        auth: AuthService,
        recorder: CallRecorder,
        ami: Callable[[], AmiConnection],
        model: Callable[[], LiveModel],
    ) -> None:
        self._config = config
        self._bus = bus
        self._auth = auth
        self._recorder = recorder
        self._ami = ami
        self._model = model

    async def start(
        self,
        who: Principal,
        number: str,
        *,
        service_record_id: int | None = None,
        customer_id: int | None = None,
        remote: str | None = None,
    ) -> dict[str, Any]:
        number = check_number(number)
        if not who.extension:
            raise Conflict("you have no phone extension to call from", {"user": who.username})
        interface = f"PJSIP/{who.extension}"
        seat = self._model().agents.get(interface)
        if seat is not None and seat.status in (AgentStatus.ON_CALL, AgentStatus.RINGING):
            raise Conflict("your phone is busy with a call", {"state": str(seat.status)})
        callback_id = "cb-" + secrets.token_hex(8)
        # Asterisk takes the channel id as the agent leg's uniqueid, and so as the call's linkedid.
        linkedid = f"{callback_id}-a"
        self._recorder.mark_outbound(
            linkedid, number=number, agent=interface, callback_id=callback_id, service_record_id=service_record_id
        )
        limit_ms = self._config.calls.callback_max_seconds * 1000
        try:
            await self._ami().send(
                actions.originate(
                    interface,
                    context=dialplan.CONTEXT_CALLBACK,
                    exten="s",
                    timeout_ms=RING_AGENT_MS,
                    caller_id=f'"Callback" <{number}>',
                    channel_id=linkedid,
                    variables={
                        dialplan.VAR_CALLBACK_ID: callback_id,
                        dialplan.VAR_CALLBACK_NUMBER: number,
                        dialplan.VAR_CALLBACK_LIMIT: str(limit_ms),
                    },
                )
            )
        except AmiError as exc:
            self._recorder.forget_outbound(linkedid)
            raise Unavailable(f"Asterisk did not place the callback: {exc}", {"number": number}) from exc
        started = CallbackStarted(
            callback_id=callback_id,
            linkedid=linkedid,
            number=number,
            agent=interface,
            user=who.username,
            service_record_id=service_record_id,
            customer_id=customer_id,
        )
        self._bus.publish(started)
        await self._auth.audit(
            "call.callback",
            actor=who.username,
            target=number,
            remote=remote,
            details={"callback": callback_id, "service_record": service_record_id},
        )
        return event_fields(started)
