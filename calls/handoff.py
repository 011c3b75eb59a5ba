"""The expert handoff: an agent hands the caller, with notes, to the expert queue.

The caller's channel is sent (AMI Redirect) to the ``cc-expert`` dialplan context, which queues it in the expert
queue with a priority above every caller who has not waited yet; the agent's leg ends and goes to wrap-up. If
no expert answers in time the dialplan offers an expert voicemail or a callback and tells the engine which
(a UserEvent); the caller is never dropped and never sent back to the general queue. The notes stay in the
engine (the database and the bus): only the handoff's generated id goes to Asterisk.

A handoff does not wait for the database (issue 15): the handoffs this engine made are held in memory, and a row the
database cannot take (the handoff, its answer, its voicemail or callback) is kept in the call recorder's journal
(``keep``) and written when the database is back; the events go out at once, from memory.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from callcenter import dialplan
from callcenter.ami import actions
from callcenter.ami.connection import AmiConnection
from callcenter.ami.exceptions import AmiError
from callcenter.auth.services import AuthService, Principal
from callcenter.bus import Bus, event_fields
from callcenter.config import Config
from callcenter.db import Database, DatabaseUnavailable
from callcenter.events import AsteriskUserEvent, CallAnswered
from callcenter.model import AgentStatus, LiveModel
from callcenter.web.errors import Conflict, Forbidden, NotFound, Unavailable
from calls.events import ExpertOutcome, ExpertRequested
from calls.models import ExpertHandoff
from seats.ports import SeatDirectory

log = logging.getLogger("callcenter.calls.handoff")

NOTES_MAX = 4000
USER_EVENT = "CCExpert"
# Handoffs remembered for a database outage (the recent ones: a handoff's outcome comes within minutes).
REMEMBERED = 5000
# The fields of a handoff row, as kept in memory and in the journal (times in ISO 8601).
_FIELDS = (
    "id",
    "linkedid",
    "from_user",
    "from_interface",
    "notes",
    "requested_at",
    "expert",
    "answered_at",
    "outcome",
    "voicemail_path",
)
Keep = Callable[[str, dict[str, Any]], Awaitable[None]]


def row_of(data: dict[str, Any]) -> ExpertHandoff:
    """A handoff row (not attached to any session) from its kept form."""
    values: dict[str, Any] = {name: data.get(name) for name in _FIELDS}
    for name in ("requested_at", "answered_at"):
        text = values[name]
        if isinstance(text, str):
            values[name] = datetime.fromisoformat(text)
    return ExpertHandoff(**values)


def _kept(row: ExpertHandoff) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in _FIELDS}
    return {name: value.isoformat() if isinstance(value, datetime) else value for name, value in values.items()}


def new_handoff_id() -> str:
    return "ho-" + secrets.token_hex(8)


def voicemail_stem(recordings_dir: Path, at: datetime) -> tuple[str, Path]:
    """A fresh voicemail id and its path without extension, in the recordings store's dated layout."""
    recording_id = "rec-" + secrets.token_hex(16)
    return recording_id, recordings_dir / "voicemail" / f"{at:%Y}" / f"{at:%m}" / f"{at:%d}" / recording_id


class HandoffService:
    def __init__(
        self,
        database: Database,
        bus: Bus,
        auth: AuthService,
        config: Config,
        ami: Callable[[], AmiConnection],
        model: Callable[[], LiveModel],
        *,
        seats: SeatDirectory,
        keep: Keep | None = None,
    ) -> None:
        """``seats`` (the seats' port, given by the composition root) says which phone the asking agent is on:
        a seat is the person logged in on it, not whoever has its extension."""
        self._database = database
        self._seats = seats
        self._keep = keep
        self._made: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._bus = bus
        self._auth = auth
        self._config = config
        self._ami = ami
        self._model = model
        self._unsubscribe: list[Callable[[], None]] = []
        # Calls whose handoff is being made now: a double click must not redirect the caller twice.
        self._in_flight: set[str] = set()

    def start(self) -> None:
        self._unsubscribe = [
            self._bus.subscribe(CallAnswered, self._on_answered),
            self._bus.subscribe(AsteriskUserEvent, self._on_user_event),
        ]

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    async def transfer_to_expert(
        self, who: Principal, linkedid: str, notes: str, *, remote: str | None
    ) -> dict[str, Any]:
        interface = await self._seats.phone_of(who.user_id) or ""
        model = self._model()
        call = model.calls.get(linkedid)
        if call is None:
            raise NotFound("no such live call", {"linkedid": linkedid[:64]})
        seat = model.agents.get(interface)
        on_it = seat is not None and seat.linkedid == linkedid and seat.status is AgentStatus.ON_CALL
        if not on_it:
            raise Forbidden("only the agent on the call can hand it to an expert", {"linkedid": linkedid[:64]})
        if any(segment.queue == self._config.queues.expert for segment in call.segments):
            raise Conflict("this call has been handed to an expert already", {"linkedid": linkedid})
        caller = model.channels.get(call.legs[0]) if call.legs else None
        if caller is None:
            raise Conflict("the caller's channel is gone", {"linkedid": linkedid})
        if linkedid in self._in_flight:
            raise Conflict("this call is being handed to an expert already", {"linkedid": linkedid})
        self._in_flight.add(linkedid)
        try:
            return await self._hand_over(who, linkedid, caller.name, interface, notes, remote)
        finally:
            self._in_flight.discard(linkedid)

    async def _hand_over(
        self, who: Principal, linkedid: str, channel: str, interface: str, notes: str, remote: str | None
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        handoff_id = new_handoff_id()
        recording_id, stem = voicemail_stem(self._config.recordings_dir, now)
        row = ExpertHandoff(
            id=handoff_id,
            linkedid=linkedid,
            from_user=who.username,
            from_interface=interface,
            notes=notes,
            requested_at=now,
            expert=None,
            answered_at=None,
            outcome="waiting",
            voicemail_path=str(stem) + ".wav",
        )
        kept = _kept(row)
        try:
            async with self._database.session() as session:
                waiting = await session.scalar(
                    select(ExpertHandoff.id).where(
                        ExpertHandoff.linkedid == linkedid, ExpertHandoff.outcome == "waiting"
                    )
                )
                if waiting is not None:
                    raise Conflict("this call is being handed to an expert already", {"handoff": waiting})
                session.add(row)
        except DatabaseUnavailable:
            if self._keep is None:
                raise
            pending = self._waiting(linkedid)
            if pending is not None:
                raise Conflict("this call is being handed to an expert already", {"handoff": pending["id"]}) from None
            await self._keep(f"handoff:{handoff_id}", {"kind": "handoff", "row": kept})
        self._remember(kept)
        variables = {
            dialplan.VAR_HANDOFF: handoff_id,
            dialplan.VAR_EXPERT_PRIORITY: str(self._config.calls.expert_priority),
            dialplan.VAR_EXPERT_TIMEOUT: str(self._config.calls.expert_timeout),
            dialplan.VAR_EXPERT_VOICEMAIL: str(stem),
        }
        try:
            for name, value in variables.items():
                await self._ami().send(actions.setvar(name, value, channel))
            await self._ami().send(actions.redirect(channel, context=dialplan.CONTEXT_EXPERT, exten="s"))
        except AmiError as exc:
            await self._set_outcome(handoff_id, "failed")
            raise Unavailable(f"Asterisk did not take the handoff: {exc}", {"linkedid": linkedid}) from exc
        requested = ExpertRequested(
            linkedid=linkedid,
            handoff_id=handoff_id,
            from_user=who.username,
            from_interface=interface,
            notes=notes,
            requested_at=now.isoformat(),
            voicemail_recording_id=recording_id,
        )
        self._bus.publish(requested)
        try:
            await self._auth.audit(
                "call.expert_handoff",
                actor=who.username,
                target=linkedid,
                remote=remote,
                details={"handoff": handoff_id, "notes_length": len(notes)},
            )
        except DatabaseUnavailable:
            # The caller is with the expert queue already; the log keeps what the audit log could not.
            log.warning("audit call.expert_handoff by %s of %s (%s) not written: database unavailable",
                        who.username, linkedid, handoff_id)  # fmt: skip
        return {**event_fields(requested), "outcome": "waiting"}

    async def notes_for(self, linkedid: str) -> list[dict[str, Any]]:
        async with self._database.session() as session:
            rows = (
                await session.scalars(
                    select(ExpertHandoff).where(ExpertHandoff.linkedid == linkedid).order_by(ExpertHandoff.requested_at)
                )
            ).all()
        return [
            {
                "handoff_id": row.id,
                "from_user": row.from_user,
                "notes": row.notes,
                "requested_at": row.requested_at.isoformat(),
                "expert": row.expert,
                "outcome": row.outcome,
            }
            for row in rows
        ]

    def _remember(self, kept: dict[str, Any]) -> None:
        self._made[str(kept["id"])] = kept
        self._made.move_to_end(str(kept["id"]))
        while len(self._made) > REMEMBERED:
            self._made.popitem(last=False)

    def _waiting(self, linkedid: str) -> dict[str, Any] | None:
        return next(
            (kept for kept in self._made.values() if kept["linkedid"] == linkedid and kept["outcome"] == "waiting"),
            None,
        )

    async def _kept_change(self, kept: dict[str, Any] | None, outcome: str, **changes: Any) -> ExpertHandoff | None:
        """The database is down: the change goes to the journal and the handoff is answered from memory."""
        if kept is None or self._keep is None:
            return None
        kept = {**kept, "outcome": outcome, **changes}
        kept = {name: value.isoformat() if isinstance(value, datetime) else value for name, value in kept.items()}
        self._remember(kept)
        await self._keep(f"handoff:{kept['id']}", {"kind": "handoff", "row": kept})
        return row_of(kept)

    async def _set_outcome(self, handoff_id: str, outcome: str, **changes: Any) -> ExpertHandoff | None:
        try:
            async with self._database.session() as session:
                row = await session.get(ExpertHandoff, handoff_id)
                if row is None:
                    return None
                row.outcome = outcome
                for name, value in changes.items():
                    setattr(row, name, value)
                self._remember(_kept(row))
                return row
        except DatabaseUnavailable:
            kept = await self._kept_change(self._made.get(handoff_id), outcome, **changes)
            if kept is None:
                raise
            return kept

    async def _on_answered(self, event: CallAnswered) -> None:
        if event.queue != self._config.queues.expert:
            return
        linkedid = event.linkedid
        now = datetime.now(UTC)
        try:
            async with self._database.session() as session:
                row = await session.scalar(
                    select(ExpertHandoff).where(ExpertHandoff.linkedid == linkedid, ExpertHandoff.outcome == "waiting")
                )
                if row is None:
                    return
                row.outcome, row.expert, row.answered_at = "answered", event.agent, now
                handoff_id = row.id
                self._remember(_kept(row))
        except DatabaseUnavailable:
            kept = await self._kept_change(self._waiting(linkedid), "answered", expert=event.agent, answered_at=now)
            if kept is None:
                raise
            handoff_id = kept.id
        self._bus.publish(
            ExpertOutcome(linkedid=linkedid, handoff_id=handoff_id, outcome="answered", expert=event.agent)
        )

    async def _on_user_event(self, event: AsteriskUserEvent) -> None:
        if event.name != USER_EVENT:
            return
        headers = event.headers
        handoff_id = str(headers.get("Handoff", ""))
        outcome = str(headers.get("Outcome", ""))
        if outcome not in ("voicemail", "callback") or not handoff_id.startswith("ho-"):
            log.warning("ignoring expert user event %r/%r", handoff_id[:40], outcome[:20])
            return
        row = await self._set_outcome(handoff_id, outcome)
        if row is None:
            return
        self._bus.publish(
            ExpertOutcome(
                linkedid=row.linkedid,
                handoff_id=handoff_id,
                outcome=outcome,
                caller_number=str(headers.get("Callerid", "")),
                voicemail_path=row.voicemail_path if outcome == "voicemail" else None,
                notes=row.notes,
                from_user=row.from_user,
            )
        )
