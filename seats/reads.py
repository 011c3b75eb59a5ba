"""The seats' read interfaces (:mod:`seats.ports`) over the seat tables, one short session a read.

Who sits where is read from the database as a whole listing (a few hundred rows at most) with the active users'
extensions. A listing serves for ``max_age`` seconds (a call asks several times: the pop, the seat's state
frames, the recording's owner) or until :meth:`SeatReads.forget`, which the seat service calls at every login and
logout; an extension given to someone else shows within ``max_age``. While the database is unavailable the last
listing answers, however old, so that what a call needs of a seat (whose is the recording, who is listened to)
does not wait for the database (issue 15).

A seat is the person logged in on it (issue 16): an extension names the person on a phone only while nobody is
logged in there and its owner is logged in nowhere else."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select

from callcenter.auth.directory import UserDirectory
from callcenter.db import Database, DatabaseUnavailable
from seats.models import AgentInterval, AgentSeat
from seats.ports import Seat, SeatInterval
from seats.services import interface_of

# Seconds a listing serves: an extension given to someone else (no seat login or logout) shows within this.
LISTING_MAX_AGE = 2.0


@dataclass(frozen=True, slots=True)
class _Listing:
    seats: tuple[Seat, ...]
    owners: dict[str, int]  # interface -> the active user whose extension it is
    read_at: float


class SeatReads:
    """:class:`seats.ports.SeatDirectory` and :class:`seats.ports.SeatHistory` over ``agent_seats`` and
    ``agent_intervals``."""

    def __init__(
        self, database: Database, *, max_age: float = LISTING_MAX_AGE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._database = database
        self._users = UserDirectory(database)
        self._max_age = max_age
        self._clock = clock
        self._last: _Listing | None = None
        self._fresh = False

    def forget(self) -> None:
        """The next question reads the database again (a seat was logged in or out); the last listing stays for
        an outage."""
        self._fresh = False

    async def _listing(self) -> _Listing:
        last = self._last
        if last is not None and self._fresh and self._clock() - last.read_at < self._max_age:
            return last
        try:
            async with self._database.session() as session:
                rows = (
                    await session.execute(select(AgentSeat.interface, AgentSeat.user_id).order_by(AgentSeat.interface))
                ).all()
            owners = await self._users.extension_owners()
        except DatabaseUnavailable:
            if self._last is None:
                raise
            return self._last
        self._last = _Listing(
            tuple(Seat(interface, user_id) for interface, user_id in rows),
            {interface_of(extension): user_id for extension, user_id in owners.items()},
            self._clock(),
        )
        self._fresh = True
        return self._last

    async def seated(self) -> list[Seat]:
        return list((await self._listing()).seats)

    async def user_at(self, interface: str) -> int | None:
        return next((seat.user_id for seat in await self.seated() if seat.interface == interface), None)

    async def seat_of(self, user_id: int) -> str | None:
        return next((seat.interface for seat in await self.seated() if seat.user_id == user_id), None)

    async def person_at(self, interface: str) -> int | None:
        listing = await self._listing()
        seated = {seat.interface: seat.user_id for seat in listing.seats}
        if interface in seated:
            return seated[interface]
        owner = listing.owners.get(interface)
        return None if owner is None or owner in seated.values() else owner

    async def phone_of(self, user_id: int) -> str | None:
        listing = await self._listing()
        seated = {seat.user_id: seat.interface for seat in listing.seats}
        if user_id in seated:
            return seated[user_id]
        phone = next((interface for interface, owner in listing.owners.items() if owner == user_id), None)
        return None if phone is None or any(seat.interface == phone for seat in listing.seats) else phone

    async def intervals(self, start: datetime, end: datetime) -> list[SeatInterval]:
        query = (
            select(
                AgentInterval.user_id,
                AgentInterval.username,
                AgentInterval.interface,
                AgentInterval.kind,
                AgentInterval.reason,
                AgentInterval.started_at,
                AgentInterval.ended_at,
            )
            .where(
                AgentInterval.started_at < end,
                or_(AgentInterval.ended_at.is_(None), AgentInterval.ended_at > start),
            )
            .order_by(AgentInterval.started_at, AgentInterval.id)
        )
        async with self._database.session() as session:
            rows = (await session.execute(query)).all()
        return [SeatInterval(*row) for row in rows]
