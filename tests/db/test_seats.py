"""Seats: login to queues, pause with a reason, unpause, logout and restore, on SQLite and PostgreSQL.

Asterisk is played by a fake AMI connection that records the actions and can be told to refuse them or to be
down; the live model is one the test builds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import pytest
from sqlalchemy import select

from callcenter.ami.actions import AmiAction
from callcenter.ami.exceptions import AmiActionError, AmiConnectionLost, AmiError
from callcenter.ami.message import AmiMessage, AmiResult
from callcenter.auth.permissions import Role
from callcenter.auth.services import AuthService, Principal
from callcenter.config import Config
from callcenter.db import Database
from callcenter.model import AgentState, AgentStatus, LiveModel, QueueMember, QueueState
from callcenter.web.errors import Conflict, Forbidden, InvalidInput, Unavailable
from seats.models import AgentInterval, AgentSeat
from seats.services import QueueLogin, SeatService

PASSWORD = "correct horse battery"
GENERAL = Config().queues.general
EXPERT = Config().queues.expert


class FakeClock(Protocol):
    """tests/db/conftest.py's ``clock`` fixture: a datetime the test moves by hand."""

    now: datetime

    def __call__(self) -> datetime: ...

    def advance(self, seconds: float) -> None: ...


@dataclass
class FakeAmi:
    """Stands in for AmiConnection: records every action; ``failures`` are raised in order, one per send."""

    sent: list[AmiAction] = field(default_factory=list)
    failures: list[AmiError | None] = field(default_factory=list)

    async def send(self, action: AmiAction) -> AmiResult:
        self.sent.append(action)
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        return AmiResult(AmiMessage.of(("Response", "Success"), ("Message", "ok")))

    def names(self) -> list[str]:
        return [action.name for action in self.sent]


def refused(action: str, message: str) -> AmiActionError:
    return AmiActionError(action, AmiMessage.of(("Response", "Error"), ("Message", message)))


@dataclass
class Live:
    model: LiveModel = field(default_factory=LiveModel)


@dataclass
class World:
    seats: SeatService
    auth: AuthService
    ami: FakeAmi
    live: Live
    clock: FakeClock
    database: Database

    async def user(self, name: str, roles: list[Role], extension: str | None, display: str | None = None) -> Principal:
        await self.auth.create_user(name, PASSWORD, roles=roles, extension=extension, display_name=display)
        _, who = await self.auth.login(name, PASSWORD)
        return who

    async def seat_row(self, user_id: int) -> AgentSeat | None:
        async with self.database.session() as session:
            return await session.get(AgentSeat, user_id)

    async def intervals(self, user_id: int) -> list[AgentInterval]:
        async with self.database.session() as session:
            query = select(AgentInterval).where(AgentInterval.user_id == user_id).order_by(AgentInterval.id)
            return list((await session.scalars(query)).all())

    async def audit(self, action: str) -> list[Any]:
        items, _ = await self.auth.list_audit(action=action)
        return items


@pytest.fixture
def world(database: Database, service: AuthService, clock: FakeClock) -> World:
    ami = FakeAmi()
    live = Live()
    seats = SeatService(database, service, Config(), lambda: ami, lambda: live.model, now=clock)
    return World(seats, service, ami, live, clock, database)


async def test_login_adds_the_member_stores_the_seat_opens_an_interval_and_audits(world: World) -> None:
    ann = await world.user("ann", [Role.AGENT], "1001", display="Ann Agent")
    world.live.model = LiveModel(
        agents={"PJSIP/1001": AgentState("PJSIP/1001", AgentStatus.AVAILABLE, since=42.0, queues=frozenset({GENERAL}))}
    )
    view = await world.seats.login(ann, [QueueLogin(GENERAL, penalty=3)], remote="10.0.0.9")

    (action,) = world.ami.sent
    assert action.name == "QueueAdd"
    assert dict(action.headers) == {
        "Queue": GENERAL,
        "Interface": "PJSIP/1001",
        "Penalty": "3",
        "Paused": "false",
        "MemberName": "Ann Agent",
        "StateInterface": "PJSIP/1001",
    }
    row = await world.seat_row(ann.user_id)
    assert row is not None
    assert (row.interface, row.extension, row.paused) == ("PJSIP/1001", "1001", False)
    assert json.loads(row.queues) == [{"queue": GENERAL, "penalty": 3}]
    assert row.logged_in_at == world.clock.now
    (interval,) = await world.intervals(ann.user_id)
    assert (interval.kind, interval.interface, interval.username) == ("login", "PJSIP/1001", "ann")
    assert interval.started_at == world.clock.now
    assert interval.ended_at is None
    (entry,) = await world.audit("seat.login")
    assert (entry.actor, entry.target, entry.remote_addr) == ("ann", "PJSIP/1001", "10.0.0.9")
    assert entry.details == {"queues": [{"queue": GENERAL, "penalty": 3}]}
    assert view.queues == (QueueLogin(GENERAL, 3),)
    assert (view.state, view.state_since, view.logged_in_at) == ("available", 42.0, world.clock.now)


async def test_a_second_login_adds_a_queue_without_a_second_interval(world: World) -> None:
    sue = await world.user("sue", [Role.SUPERVISOR], "3001")
    await world.seats.login(sue, [QueueLogin(GENERAL)])
    world.clock.advance(30)
    view = await world.seats.login(sue, [QueueLogin(EXPERT, penalty=1)])
    assert [action.get("Queue") for action in world.ami.sent] == [GENERAL, EXPERT]
    assert view.queues == (QueueLogin(GENERAL, 0), QueueLogin(EXPERT, 1))
    assert [interval.kind for interval in await world.intervals(sue.user_id)] == ["login"]
    row = await world.seat_row(sue.user_id)
    assert row is not None
    assert row.logged_in_at == world.clock.now - timedelta(seconds=30)


async def test_a_member_asterisk_has_already_is_taken_as_logged_in(world: World) -> None:
    ann = await world.user("ann", [Role.AGENT], "1001")
    world.ami.failures = [refused("QueueAdd", "Unable to add interface: Already there")]
    await world.seats.login(ann, [QueueLogin(GENERAL)])
    assert await world.seat_row(ann.user_id) is not None


async def test_a_queue_the_role_does_not_allow_is_forbidden(world: World) -> None:
    ann = await world.user("ann", [Role.AGENT], "1001")
    with pytest.raises(Forbidden) as caught:
        await world.seats.login(ann, [QueueLogin(EXPERT)])
    assert caught.value.details == {"queue": EXPERT}
    eve = await world.user("eve", [Role.EXPERT], "2001")
    with pytest.raises(Forbidden):
        await world.seats.login(eve, [QueueLogin(GENERAL)])
    assert world.ami.sent == []
    assert await world.seat_row(ann.user_id) is None
    assert await world.seat_row(eve.user_id) is None


async def test_an_unknown_queue_a_repeated_one_or_none_is_invalid(world: World) -> None:
    ann = await world.user("ann", [Role.AGENT], "1001")
    for queues in (
        [QueueLogin("nowhere")],
        [QueueLogin(GENERAL), QueueLogin(GENERAL)],
        [],
        [QueueLogin(GENERAL, penalty=101)],
    ):
        with pytest.raises(InvalidInput):
            await world.seats.login(ann, queues)
    assert world.ami.sent == []
    assert await world.intervals(ann.user_id) == []


async def test_a_user_without_a_configured_phone_cannot_log_in(world: World) -> None:
    nox = await world.user("nox", [Role.AGENT], None)
    with pytest.raises(Conflict) as caught:
        await world.seats.login(nox, [QueueLogin(GENERAL)])
    assert "extension" in caught.value.message
    odd = await world.user("odd", [Role.AGENT], "1999")
    with pytest.raises(Conflict):
        await world.seats.login(odd, [QueueLogin(GENERAL)])
    assert world.ami.sent == []


async def test_an_unknown_pause_reason_is_invalid_and_nothing_is_sent(world: World) -> None:
    ann = await world.user("ann", [Role.AGENT], "1001")
    await world.seats.login(ann, [QueueLogin(GENERAL)])
    world.ami.sent.clear()
    with pytest.raises(InvalidInput):
        await world.seats.pause(ann, "nap\r\nAction: Originate")
    assert world.ami.sent == []
    assert [interval.kind for interval in await world.intervals(ann.user_id)] == ["login"]


async def test_pause_and_unpause_open_and_close_intervals(world: World) -> None:
    ann = await world.user("ann", [Role.AGENT], "1001")
    await world.seats.login(ann, [QueueLogin(GENERAL)])
    world.ami.sent.clear()
    start = world.clock.now

    world.clock.advance(60)
    view = await world.seats.pause(ann, "lunch")
    assert (view.paused, view.pause_reason) == (True, "lunch")
    (action,) = world.ami.sent
    assert dict(action.headers) == {"Interface": "PJSIP/1001", "Paused": "true", "Reason": "lunch"}

    world.clock.advance(600)
    await world.seats.pause(ann, "meeting")  # a new reason closes the lunch and opens the meeting
    world.clock.advance(300)
    view = await world.seats.unpause(ann)
    assert (view.paused, view.pause_reason) == (False, None)
    assert dict(world.ami.sent[-1].headers) == {"Interface": "PJSIP/1001", "Paused": "false"}

    login, lunch, meeting = await world.intervals(ann.user_id)
    assert (login.kind, login.started_at, login.ended_at) == ("login", start, None)
    assert (lunch.kind, lunch.reason) == ("pause", "lunch")
    assert (lunch.started_at, lunch.ended_at) == (start + _s(60), start + _s(660))
    assert (meeting.reason, meeting.started_at, meeting.ended_at) == ("meeting", start + _s(660), start + _s(960))
    row = await world.seat_row(ann.user_id)
    assert row is not None
    assert (row.paused, row.pause_reason, row.paused_at) == (False, None, None)
    assert [len(await world.audit(name)) for name in ("seat.pause", "seat.unpause")] == [2, 1]


def _s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


async def test_logout_removes_every_membership_closes_intervals_and_deletes_the_seat(world: World) -> None:
    sue = await world.user("sue", [Role.SUPERVISOR], "3001")
    await world.seats.login(sue, [QueueLogin(GENERAL), QueueLogin(EXPERT)])
    await world.seats.pause(sue, "break")
    world.ami.sent.clear()
    world.clock.advance(120)
    # Asterisk lost one membership already: "Not there" is not an error.
    world.ami.failures = [None, refused("QueueRemove", "Unable to remove interface: Not there")]
    view = await world.seats.logout(sue)

    assert [(action.name, action.get("Queue"), action.get("Interface")) for action in world.ami.sent] == [
        ("QueueRemove", GENERAL, "PJSIP/3001"),
        ("QueueRemove", EXPERT, "PJSIP/3001"),
    ]
    assert await world.seat_row(sue.user_id) is None
    intervals = await world.intervals(sue.user_id)
    assert [interval.kind for interval in intervals] == ["login", "pause"]
    assert all(interval.ended_at == world.clock.now for interval in intervals)
    assert (view.queues, view.logged_in_at, view.paused) == ((), None, False)
    (entry,) = await world.audit("seat.logout")
    assert entry.target == "PJSIP/3001"
    with pytest.raises(Conflict):
        await world.seats.logout(sue)


async def test_asterisk_refusing_is_a_conflict_and_nothing_is_stored(world: World) -> None:
    ann = await world.user("ann", [Role.AGENT], "1001")
    world.ami.failures = [refused("QueueAdd", "Unable to add interface to queue: No such queue")]
    with pytest.raises(Conflict) as caught:
        await world.seats.login(ann, [QueueLogin(GENERAL)])
    assert "No such queue" in caught.value.message
    assert await world.seat_row(ann.user_id) is None
    assert await world.intervals(ann.user_id) == []
    assert await world.audit("seat.login") == []


async def test_asterisk_unreachable_is_unavailable_and_nothing_is_stored(world: World) -> None:
    ann = await world.user("ann", [Role.AGENT], "1001")
    world.ami.failures = [AmiConnectionLost("not connected")]
    with pytest.raises(Unavailable):
        await world.seats.login(ann, [QueueLogin(GENERAL)])
    assert await world.seat_row(ann.user_id) is None
    await world.seats.login(ann, [QueueLogin(GENERAL)])
    world.ami.failures = [AmiConnectionLost("not connected")]
    with pytest.raises(Unavailable):
        await world.seats.pause(ann, "break")
    row = await world.seat_row(ann.user_id)
    assert row is not None
    assert row.paused is False
    assert [interval.kind for interval in await world.intervals(ann.user_id)] == ["login"]


async def test_restore_re_adds_only_the_memberships_asterisk_lost(world: World) -> None:
    ann = await world.user("ann", [Role.AGENT], "1001")
    sue = await world.user("sue", [Role.SUPERVISOR], "3001")
    await world.seats.login(ann, [QueueLogin(GENERAL, penalty=2)])
    await world.seats.login(sue, [QueueLogin(GENERAL), QueueLogin(EXPERT, penalty=5)])
    await world.seats.pause(sue, "training")
    world.ami.sent.clear()
    # Asterisk restarted: it still has ann and sue in the general queue, but not sue in the expert queue.
    members = {
        "PJSIP/1001": QueueMember("PJSIP/1001", "ann"),
        "PJSIP/3001": QueueMember("PJSIP/3001", "sue", paused=True),
    }
    world.live.model = LiveModel(queues={GENERAL: QueueState(GENERAL, members=members)})
    assert await world.seats.restore() == 1
    action, pause = world.ami.sent
    assert dict(action.headers) == {
        "Queue": EXPERT,
        "Interface": "PJSIP/3001",
        "Penalty": "5",
        "Paused": "true",
        "StateInterface": "PJSIP/3001",
    }
    # QueueAdd cannot carry a reason: the pause is stated again with it.
    assert action.name == "QueueAdd"
    assert pause.name == "QueuePause"
    assert dict(pause.headers) == {"Interface": "PJSIP/3001", "Paused": "true", "Queue": EXPERT, "Reason": "training"}

    # Asterisk lost everything: every membership comes back, with its penalty.
    world.ami.sent.clear()
    world.live.model = LiveModel()
    assert await world.seats.restore() == 3
    added = [a for a in world.ami.sent if a.name == "QueueAdd"]
    assert sorted((a.get("Queue"), a.get("Interface"), a.get("Penalty")) for a in added) == sorted(
        [(GENERAL, "PJSIP/1001", "2"), (GENERAL, "PJSIP/3001", "0"), (EXPERT, "PJSIP/3001", "5")]
    )

    # Nothing lost: nothing sent.
    world.ami.sent.clear()
    world.live.model = LiveModel(
        queues={
            GENERAL: QueueState(GENERAL, members=members),
            EXPERT: QueueState(EXPERT, members={"PJSIP/3001": members["PJSIP/3001"]}),
        }
    )
    assert await world.seats.restore() == 0
    assert world.ami.sent == []


async def test_restore_goes_on_when_asterisk_refuses_one_membership(world: World) -> None:
    ann = await world.user("ann", [Role.AGENT], "1001")
    sue = await world.user("sue", [Role.SUPERVISOR], "3001")
    await world.seats.login(ann, [QueueLogin(GENERAL)])
    await world.seats.login(sue, [QueueLogin(GENERAL)])
    world.ami.sent.clear()
    world.ami.failures = [refused("QueueAdd", "Unable to add interface: Already there"), None]
    assert await world.seats.restore() == 1
    assert len(world.ami.sent) == 2


async def test_a_login_that_fails_half_way_leaves_no_membership_the_engine_does_not_know(world: World) -> None:
    sue = await world.user("sue", [Role.SUPERVISOR], "3001")
    world.ami.failures = [None, refused("QueueAdd", "Unable to add interface to queue: No such queue")]
    with pytest.raises(Conflict):
        await world.seats.login(sue, [QueueLogin(GENERAL), QueueLogin(EXPERT)])
    rolled_back = ("QueueRemove", GENERAL) in [(action.name, action.get("Queue")) for action in world.ami.sent]
    row = await world.seat_row(sue.user_id)
    kept = row is not None and GENERAL in row.queues
    assert rolled_back or kept
