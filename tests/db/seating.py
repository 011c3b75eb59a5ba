"""A user logged in on a seat, as a seat login writes it (``agent_seats``), for the tests of who is on a phone.

tests/db is on sys.path (pytest's prepend import mode): the tests import this module by its name.
"""

from __future__ import annotations

from datetime import UTC, datetime

from callcenter.db import Database
from seats.models import AgentSeat


async def sit(database: Database, user_id: int, interface: str) -> None:
    """``user_id`` logged in on ``interface`` (no queue: who sits where is all these tests need)."""
    async with database.session() as session:
        session.add(
            AgentSeat(
                user_id=user_id,
                interface=interface,
                extension=interface.removeprefix("PJSIP/"),
                queues="[]",
                logged_in_at=datetime(2030, 1, 1, tzinfo=UTC),
                paused=False,
            )
        )
