"""The calls' :class:`calls.ports.Callbacks`: callbacks another package places for one of its users.

It hands the call to the callback service (``calls.callbacks``), which checks the number, the user's phone and
its state, places the Originate, marks the call outbound and audits it; this only adapts the user, given as plain
values, to the caller the service expects and the result to the port's value.
"""

from __future__ import annotations

from datetime import UTC, datetime

from callcenter.auth.services import Principal
from calls.callbacks import CallbackService
from calls.ports import PlacedCallback


class CallbackPort:
    def __init__(self, callbacks: CallbackService) -> None:
        self._callbacks = callbacks

    async def place(
        self,
        *,
        user_id: int,
        username: str,
        extension: str | None,
        number: str,
        service_record_id: int | None = None,
        customer_id: int | None = None,
        remote: str | None = None,
    ) -> PlacedCallback:
        # The service reads only who the user is and which phone is theirs; the caller has checked what they may do.
        who = Principal(
            user_id=user_id,
            username=username,
            display_name=username,
            roles=frozenset(),
            permissions=frozenset(),
            teams=(),
            extension=extension,
            expires_at=datetime.now(UTC),
        )
        started = await self._callbacks.start(
            who, number, service_record_id=service_record_id, customer_id=customer_id, remote=remote
        )
        return PlacedCallback(
            callback_id=str(started["callback_id"]),
            linkedid=str(started["linkedid"]),
            number=str(started["number"]),
            agent=str(started["agent"]),
        )
