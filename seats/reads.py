"""The seats' read interfaces (:mod:`seats.ports`) over the seat tables, one short session a read."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select

from callcenter.db import Database
from seats.models import AgentInterval, AgentSeat
from seats.ports import Seat, SeatInterval


class SeatReads:
    """:class:`seats.ports.SeatDirectory` and :class:`seats.ports.SeatHistory` over ``agent_seats`` and
    ``agent_intervals``."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def seated(self) -> list[Seat]:
        async with self._database.session() as session:
            rows = (
                await session.execute(select(AgentSeat.interface, AgentSeat.user_id).order_by(AgentSeat.interface))
            ).all()
        return [Seat(interface, user_id) for interface, user_id in rows]

    async def user_at(self, interface: str) -> int | None:
        async with self._database.session() as session:
            user: int | None = await session.scalar(select(AgentSeat.user_id).where(AgentSeat.interface == interface))
        return user

    async def seat_of(self, user_id: int) -> str | None:
        async with self._database.session() as session:
            interface: str | None = await session.scalar(
                select(AgentSeat.interface).where(AgentSeat.user_id == user_id)
            )
        return interface

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
