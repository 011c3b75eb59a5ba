"""What the seats offer other packages to read: who sits at which seat now, and the login and pause intervals.

Read interfaces only, in plain values: :mod:`seats.reads` implements them over the seat tables, and the composition
root hands them to the packages that need them (the supervisor, the recordings). Nothing here imports more than
the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Seat:
    """An agent logged in to a seat now."""

    interface: str  # PJSIP/1001
    user_id: int


@dataclass(frozen=True, slots=True)
class SeatInterval:
    """One login or pause of one agent at one seat; an open one has no ``ended_at``."""

    user_id: int
    username: str
    interface: str
    kind: str  # login | pause
    reason: str | None  # a pause's reason
    started_at: datetime
    ended_at: datetime | None


class SeatDirectory(Protocol):
    """Who is logged in where, now. A seat is the person logged in on it: an extension says who is on a phone
    only when nobody is logged in there (extensions get reassigned; a seat keeps its holder until logout)."""

    async def seated(self) -> Sequence[Seat]:
        """Every seat with an agent logged in, by interface."""
        ...

    async def user_at(self, interface: str) -> int | None:
        """The user logged in to that seat, if any."""
        ...

    async def seat_of(self, user_id: int) -> str | None:
        """The interface of the seat the user is logged in to, if any."""
        ...

    async def person_at(self, interface: str) -> int | None:
        """The user on that phone now: whoever is logged in on its seat; with nobody logged in, the active user
        whose extension it is, unless that user is logged in on another seat (then nobody known is)."""
        ...

    async def phone_of(self, user_id: int) -> str | None:
        """The phone the user is on now: their seat when logged in; else their extension's phone, unless someone
        else is logged in on it (then none)."""
        ...


class SeatHistory(Protocol):
    """Every login and pause, kept after they end."""

    async def intervals(self, start: datetime, end: datetime) -> Sequence[SeatInterval]:
        """The intervals that overlap [start, end) (open ones included), by start, then in the order written."""
        ...
