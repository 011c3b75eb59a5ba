"""The seats' read interfaces (:mod:`seats.ports`) over the seat tables, one short session a read.

Who sits where is read from the database each time, as a whole listing (a few hundred rows at most), and the last
listing is kept: while the database is unavailable the directory answers from it, so that what a call needs of a
seat (whose is the recording, who is listened to) does not wait for the database (issue 15)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select

from callcenter.db import Database, DatabaseUnavailable
from seats.models import AgentInterval, AgentSeat
from seats.ports import Seat, SeatInterval


class SeatReads:
    """:class:`seats.ports.SeatDirectory` and :class:`seats.ports.SeatHistory` over ``agent_seats`` and
    ``agent_intervals``."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._last: list[Seat] | None = None

    async def seated(self) -> list[Seat]:
        try:
            async with self._database.session() as session:
                rows = (
                    await session.execute(select(AgentSeat.interface, AgentSeat.user_id).order_by(AgentSeat.interface))
                ).all()
        except DatabaseUnavailable:
            if self._last is None:
                raise
            return list(self._last)
        self._last = [Seat(interface, user_id) for interface, user_id in rows]
        return list(self._last)

    async def user_at(self, interface: str) -> int | None:
        return next((seat.user_id for seat in await self.seated() if seat.interface == interface), None)

    async def seat_of(self, user_id: int) -> str | None:
        return next((seat.interface for seat in await self.seated() if seat.user_id == user_id), None)

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
