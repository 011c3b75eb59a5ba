"""What a call needs of the database is held in memory (issue 15, item 3), on SQLite and PostgreSQL: while the
database is down, a caller's tier (the queue priority) and who sits at a seat are answered from what was read last."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher

from callcenter.auth.permissions import Role
from callcenter.auth.services import AuthService
from callcenter.config import AuthConfig
from callcenter.db import DatabaseUnavailable
from crm_bridge.schemas import CustomerIn, PhoneIn
from crm_bridge.services import CrmService
from seats.models import AgentSeat
from seats.ports import Seat
from seats.reads import SeatReads
from tests.db import test_crm_outbox
from tests.db.test_ports import _seat

switchable = test_crm_outbox.switchable


async def test_a_callers_tier_is_known_while_the_database_is_down(
    switchable: test_crm_outbox.Switchable, tmp_path: Path
) -> None:
    crm = CrmService(switchable.database)
    for name, tier, number in (
        ("Vip", "vip", "+86 138 0013 8000"),
        ("Gold", "gold", "+86 138 0013 8001"),
        ("Plain", "standard", "+86 138 0013 8002"),
    ):
        await crm.customers.create(CustomerIn(name=name, tier=tier, phones=[PhoneIn(number=number)]))
    # Loaded ahead: the tiers that raise a priority. Asked once: the standard caller.
    assert await crm.customers.remember_tiers() == 2
    assert await crm.customers.best_tier("13800138002") == "standard"
    await switchable.down()
    try:
        assert await crm.customers.best_tier("13800138000") == "vip"
        assert await crm.customers.best_tier("+8613800138001") == "gold"
        assert await crm.customers.best_tier("013800138002") == "standard"
        # A number never seen gets the default priority, not an error.
        assert await crm.customers.best_tier("13900000000") is None
    finally:
        await switchable.up()


async def test_who_sits_at_a_seat_is_known_while_the_database_is_down(switchable: test_crm_outbox.Switchable) -> None:
    database = switchable.database
    auth = AuthService(
        database, AuthConfig(), password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    ann = await auth.create_user("ann", "a long enough password", roles=[Role.AGENT], extension="1001")
    # Every question goes to the database (no listing kept for a moment): the outage's answers are the memory's.
    seats = SeatReads(database, max_age=0.0)
    await switchable.down()
    try:
        with pytest.raises(DatabaseUnavailable):
            await seats.user_at("PJSIP/1001")  # nothing read yet: nothing to answer from
    finally:
        await switchable.up()
    async with database.session() as session:
        session.add(_seat(ann.id, "1001"))
    assert await seats.seated() == [Seat("PJSIP/1001", ann.id)]
    await switchable.down()
    try:
        assert await seats.user_at("PJSIP/1001") == ann.id
        assert await seats.seat_of(ann.id) == "PJSIP/1001"
        assert await seats.user_at("PJSIP/1002") is None
    finally:
        await switchable.up()
    async with database.session() as session:
        row = await session.get(AgentSeat, ann.id)
        assert row is not None
        await session.delete(row)
    # Back: the database's answer, not the memory's.
    assert await seats.user_at("PJSIP/1001") is None
