"""Seats: an agent logs in to queues on their own phone, pauses with a reason, unpauses and logs out.

Each change goes to Asterisk first (QueueAdd, QueuePause, QueueRemove over AMI) and is stored once Asterisk has
taken it: the seat row (who is logged in where, so a restarted engine knows) and the login and pause intervals
the workload statistics are computed from. Every change is audited. Asterisk keeps the queue membership itself
(persistentmembers); :meth:`SeatService.restore` puts back any membership it lost (an Asterisk restart with an
empty astdb) after each resync of the live model.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from callcenter.ami import actions
from callcenter.ami.connection import AmiConnection
from callcenter.ami.exceptions import AmiActionError, AmiError
from callcenter.auth.permissions import Role
from callcenter.auth.services import AuthService, Principal
from callcenter.config import Config
from callcenter.db import Database
from callcenter.model import AgentState, AgentStatus, LiveModel
from callcenter.web.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from seats.models import AgentInterval, AgentSeat

log = logging.getLogger("callcenter.seats")

MAX_PENALTY = 100


@dataclass(frozen=True, slots=True)
class QueueLogin:
    queue: str
    penalty: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"queue": self.queue, "penalty": self.penalty}


@dataclass(frozen=True, slots=True)
class SeatView:
    user_id: int
    username: str
    interface: str
    extension: str
    queues: tuple[QueueLogin, ...]
    logged_in_at: datetime | None
    paused: bool
    pause_reason: str | None
    state: str
    state_since: float | None
    linkedid: str

    def as_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "username": self.username,
            "interface": self.interface,
            "extension": self.extension,
            "queues": [item.as_json() for item in self.queues],
            "logged_in_at": self.logged_in_at.isoformat() if self.logged_in_at else None,
            "paused": self.paused,
            "pause_reason": self.pause_reason,
            "state": self.state,
            "state_since": self.state_since,
            "linkedid": self.linkedid or None,
        }


def interface_of(extension: str) -> str:
    return f"PJSIP/{extension}"


def _queues_of(row: AgentSeat) -> tuple[QueueLogin, ...]:
    try:
        items = json.loads(row.queues)
        return tuple(QueueLogin(str(item["queue"]), int(item.get("penalty", 0))) for item in items)
    except (ValueError, TypeError, KeyError):
        log.error("seat of user %s has unreadable queues %r", row.user_id, row.queues[:200])
        return ()


class SeatService:
    def __init__(
        self,
        database: Database,
        auth: AuthService,
        config: Config,
        ami: Callable[[], AmiConnection],
        model: Callable[[], LiveModel],
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        """``changed`` is called after each login and logout is written (the seats' reads read again)."""
        self._database = database
        self._changed = changed
        self._auth = auth
        self._queues = config.queues
        self._extensions = {phone.extension for phone in config.sip.phones}
        self._ami = ami
        self._model = model
        self._now = now

    # -- reading --------------------------------------------------------------------------------------------

    def _view(self, user_id: int, username: str, extension: str, row: AgentSeat | None) -> SeatView:
        interface = row.interface if row else interface_of(extension)
        agent: AgentState | None = self._model().agents.get(interface)
        return SeatView(
            user_id=user_id,
            username=username,
            interface=interface,
            extension=row.extension if row else extension,
            queues=_queues_of(row) if row else (),
            logged_in_at=row.logged_in_at if row else None,
            paused=row.paused if row else False,
            pause_reason=row.pause_reason if row else None,
            state=str(agent.status if agent else AgentStatus.LOGGED_OUT),
            state_since=agent.since if agent else None,
            linkedid=agent.linkedid if agent else "",
        )

    async def seat(self, who: Principal) -> SeatView:
        extension = self._extension(who)
        async with self._database.session() as session:
            row = await session.get(AgentSeat, who.user_id)
        return self._view(who.user_id, who.username, extension, row)

    async def seats(self) -> list[SeatView]:
        users = {user.id: user for user in await self._auth.list_users()}
        async with self._database.session() as session:
            rows = (await session.execute(select(AgentSeat).order_by(AgentSeat.interface))).scalars().all()
        return [
            self._view(row.user_id, users[row.user_id].username if row.user_id in users else "?", row.extension, row)
            for row in rows
        ]

    # -- changes --------------------------------------------------------------------------------------------

    def _extension(self, who: Principal) -> str:
        if not who.extension:
            raise Conflict("you have no phone extension; an admin must give you one", {"user": who.username})
        if who.extension not in self._extensions:
            raise Conflict(f"extension {who.extension} is not a configured phone", {"extension": who.extension})
        return who.extension

    def allowed_queues(self, who: Principal) -> set[str]:
        allowed: set[str] = set()
        if Role.AGENT in who.roles or Role.SUPERVISOR in who.roles:
            allowed.add(self._queues.general)
        if Role.EXPERT in who.roles or Role.SUPERVISOR in who.roles:
            allowed.add(self._queues.expert)
        return allowed

    def _check_queues(self, who: Principal, queues: Sequence[QueueLogin]) -> None:
        if not queues:
            raise InvalidInput("name at least one queue", {"fields": {"queues": "empty"}})
        allowed = self.allowed_queues(who)
        seen: set[str] = set()
        for item in queues:
            if item.queue in seen:
                raise InvalidInput(f"queue {item.queue} is named twice", {"fields": {"queues": item.queue}})
            seen.add(item.queue)
            if item.queue not in (self._queues.general, self._queues.expert):
                raise InvalidInput(f"there is no queue {item.queue!r}", {"fields": {"queues": item.queue}})
            if item.queue not in allowed:
                raise Forbidden(f"your roles do not let you take calls from {item.queue}", {"queue": item.queue})
            if not 0 <= item.penalty <= MAX_PENALTY:
                raise InvalidInput(f"penalty must be 0 to {MAX_PENALTY}", {"fields": {"penalty": item.penalty}})

    async def _send(self, action: actions.AmiAction, *, tolerate: Iterable[str] = ()) -> None:
        try:
            await self._ami().send(action)
        except AmiActionError as exc:
            message = str(exc)
            if any(text in message for text in tolerate):
                log.info("%s: %s (already so)", action.name, message)
                return
            raise Conflict(f"Asterisk refused {action.name}: {message}", {"action": action.name}) from exc
        except AmiError as exc:
            raise Unavailable(f"Asterisk is not reachable: {exc}", {"action": action.name}) from exc

    async def login(self, who: Principal, queues: Sequence[QueueLogin], *, remote: str | None = None) -> SeatView:
        extension = self._extension(who)
        self._check_queues(who, queues)
        interface = interface_of(extension)
        now = self._now()
        async with self._database.session() as session:
            row = await session.get(AgentSeat, who.user_id)
            holder = (
                await session.execute(select(AgentSeat).where(AgentSeat.interface == interface))
            ).scalar_one_or_none()
        if holder is not None and holder.user_id != who.user_id:
            raise Conflict(f"seat {interface} is taken by another user", {"interface": interface})
        current = {item.queue: item for item in (_queues_of(row) if row else ())}
        added: list[str] = []
        try:
            for item in queues:
                await self._send(
                    actions.queue_add(
                        item.queue,
                        interface,
                        penalty=item.penalty,
                        paused=bool(row and row.paused),
                        member_name=who.display_name[:60] or who.username,
                        state_interface=interface,
                    ),
                    tolerate=("Already there",),
                )
                if item.queue not in current:
                    added.append(item.queue)
        except (Conflict, Unavailable):
            # All or nothing: memberships this request made are taken back, so no seat exists without a row.
            for queue in added:
                try:
                    await self._ami().send(actions.queue_remove(queue, interface))
                except AmiError as exc:
                    log.warning("could not take back %s from %s after a failed login: %s", interface, queue, exc)
            raise
        merged = {**current, **{item.queue: item for item in queues}}
        queues_json = json.dumps([item.as_json() for item in merged.values()])
        async with self._database.session() as session:
            existing = await session.get(AgentSeat, who.user_id)
            if existing is None:
                session.add(
                    AgentSeat(
                        user_id=who.user_id,
                        interface=interface,
                        extension=extension,
                        queues=queues_json,
                        logged_in_at=now,
                        paused=False,
                        pause_reason=None,
                        paused_at=None,
                    )
                )
                session.add(
                    AgentInterval(
                        user_id=who.user_id,
                        username=who.username,
                        interface=interface,
                        kind="login",
                        queues=queues_json,
                        started_at=now,
                    )
                )
            else:
                existing.queues = queues_json
            row = existing
        self._changed()
        await self._auth.audit(
            "seat.login",
            actor=who.username,
            target=interface,
            remote=remote,
            details={"queues": [item.as_json() for item in queues]},
        )
        return await self.seat(who)

    async def pause(self, who: Principal, reason: str, *, remote: str | None = None) -> SeatView:
        if reason not in self._queues.pause_reasons:
            raise InvalidInput(
                f"unknown pause reason {reason[:40]!r}",
                {"fields": {"reason": "one of " + ", ".join(self._queues.pause_reasons)}},
            )
        row = await self._logged_in(who)
        await self._send(actions.queue_pause(row.interface, True, reason=reason))
        now = self._now()
        async with self._database.session() as session:
            seat = await session.get(AgentSeat, who.user_id)
            if seat is None:
                raise NotFound("you are not logged in to a seat")
            if seat.paused:
                await self._close_open(session, who.user_id, "pause", now)
            seat.paused, seat.pause_reason, seat.paused_at = True, reason, now
            session.add(
                AgentInterval(
                    user_id=who.user_id,
                    username=who.username,
                    interface=seat.interface,
                    kind="pause",
                    reason=reason,
                    started_at=now,
                )
            )
        await self._auth.audit(
            "seat.pause", actor=who.username, target=row.interface, remote=remote, details={"reason": reason}
        )
        return await self.seat(who)

    async def unpause(self, who: Principal, *, remote: str | None = None) -> SeatView:
        row = await self._logged_in(who)
        await self._send(actions.queue_pause(row.interface, False))
        now = self._now()
        async with self._database.session() as session:
            seat = await session.get(AgentSeat, who.user_id)
            if seat is not None:
                seat.paused, seat.pause_reason, seat.paused_at = False, None, None
            await self._close_open(session, who.user_id, "pause", now)
        await self._auth.audit("seat.unpause", actor=who.username, target=row.interface, remote=remote)
        return await self.seat(who)

    async def logout(self, who: Principal, *, remote: str | None = None) -> SeatView:
        row = await self._logged_in(who)
        for item in _queues_of(row):
            await self._send(actions.queue_remove(item.queue, row.interface), tolerate=("Not there",))
        now = self._now()
        async with self._database.session() as session:
            seat = await session.get(AgentSeat, who.user_id)
            if seat is not None:
                await session.delete(seat)
            await self._close_open(session, who.user_id, "pause", now)
            await self._close_open(session, who.user_id, "login", now)
        self._changed()
        await self._auth.audit("seat.logout", actor=who.username, target=row.interface, remote=remote)
        return await self.seat(who)

    async def _logged_in(self, who: Principal) -> AgentSeat:
        async with self._database.session() as session:
            row = await session.get(AgentSeat, who.user_id)
        if row is None:
            raise Conflict("you are not logged in to a seat", {"user": who.username})
        return row

    @staticmethod
    async def _close_open(session: Any, user_id: int, kind: str, now: datetime) -> None:
        await session.execute(
            update(AgentInterval)
            .where(AgentInterval.user_id == user_id, AgentInterval.kind == kind, AgentInterval.ended_at.is_(None))
            .values(ended_at=now)
        )

    # -- after a resync -------------------------------------------------------------------------------------

    async def restore(self) -> int:
        """Puts back the queue memberships Asterisk lost (it restarted with an empty astdb); returns how many.

        The engine's rows say who is logged in; Asterisk's snapshot (the live model, just rebuilt) says who is a
        member. A seat that is a member already is left alone: its pause state is Asterisk's to tell.
        """
        async with self._database.session() as session:
            rows = (await session.execute(select(AgentSeat))).scalars().all()
        model = self._model()
        restored = 0
        for row in rows:
            for item in _queues_of(row):
                queue = model.queues.get(item.queue)
                if queue is not None and row.interface in queue.members:
                    continue
                try:
                    await self._ami().send(
                        actions.queue_add(
                            item.queue,
                            row.interface,
                            penalty=item.penalty,
                            paused=row.paused,
                            state_interface=row.interface,
                        )
                    )
                except AmiError as exc:
                    if "Already there" not in str(exc):
                        log.warning("could not restore %s in %s: %s", row.interface, item.queue, exc)
                    continue
                if row.paused and row.pause_reason:
                    # QueueAdd has no reason; the pause is stated again so the board shows why.
                    with contextlib.suppress(AmiError):
                        await self._ami().send(
                            actions.queue_pause(row.interface, True, queue=item.queue, reason=row.pause_reason)
                        )
                restored += 1
                log.info("seat %s restored in queue %s", row.interface, item.queue)
        return restored
