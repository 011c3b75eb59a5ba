"""Listen, whisper and barge: who may spy on whom, what is sent to Asterisk, and what the audit log keeps.

Asterisk is played by a fake AMI connection that records the actions; the live model is one the test builds;
ChanSpyStart and the end of the spy call arrive on the bus as callcenter.live publishes them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import pytest
from seating import sit

from callcenter.ami.actions import AmiAction
from callcenter.ami.exceptions import AmiActionError, AmiConnectionLost, AmiError
from callcenter.ami.message import AmiMessage, AmiResult
from callcenter.auth.directory import UserDirectory
from callcenter.auth.permissions import Role
from callcenter.auth.services import AuthService, Principal
from callcenter.bus import Bus
from callcenter.db import Database
from callcenter.events import CallEnded, ChanSpyChanged
from callcenter.model import AgentState, AgentStatus, Call, Channel, LiveModel
from callcenter.web.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from seats.reads import SeatReads
from supervisor.spy import SpyMode, SpyService

PASSWORD = "correct horse battery"
AGENT_CHANNEL = "PJSIP/1001-0000000a"
SPY_CHANNEL = "PJSIP/3001-0000000c"


class FakeClock(Protocol):
    now: datetime

    def __call__(self) -> datetime: ...

    def advance(self, seconds: float) -> None: ...


@dataclass
class FakeAmi:
    sent: list[AmiAction] = field(default_factory=list)
    failures: list[AmiError | None] = field(default_factory=list)

    async def send(self, action: AmiAction) -> AmiResult:
        self.sent.append(action)
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        return AmiResult(AmiMessage.of(("Response", "Success"), ("Message", "Originate successfully queued")))


def on_a_call() -> LiveModel:
    """PJSIP/1001 talks with a caller; PJSIP/1002 is logged in and idle."""
    caller = Channel("1700000000.10", "PJSIP/pstn-00000009", "1700000000.10", 6, "Up", "5550100", bridge_id="b1")
    agent = Channel("1700000000.11", AGENT_CHANNEL, "1700000000.10", 6, "Up", "1001", bridge_id="b1")
    return LiveModel(
        channels={caller.uniqueid: caller, agent.uniqueid: agent},
        calls={"1700000000.10": Call("1700000000.10", 1.0, legs=(caller.uniqueid, agent.uniqueid))},
        agents={
            "PJSIP/1001": AgentState("PJSIP/1001", AgentStatus.ON_CALL, 1.0, linkedid="1700000000.10"),
            "PJSIP/1002": AgentState("PJSIP/1002", AgentStatus.AVAILABLE, 1.0),
        },
    )


@dataclass
class World:
    spy: SpyService
    auth: AuthService
    ami: FakeAmi
    bus: Bus
    clock: FakeClock
    live: dict[str, LiveModel]
    database: Database
    seats: SeatReads

    async def user(
        self,
        name: str,
        roles: list[Role],
        extension: str | None,
        teams: Sequence[str] = (),
        lead_of: Sequence[str] = (),
    ) -> Principal:
        await self.auth.create_user(name, PASSWORD, roles=roles, extension=extension, teams=teams, lead_of=lead_of)
        # A new user's extension shows in who is on which phone once its listing is old (seats.reads): not waited.
        self.seats.forget()
        _, who = await self.auth.login(name, PASSWORD)
        return who

    async def seat(self, who: Principal, interface: str) -> None:
        await sit(self.database, who.user_id, interface)
        self.seats.forget()  # as the seat service does after a login

    async def audit(self, action: str) -> list[Any]:
        items, _ = await self.auth.list_audit(action=action)
        return items

    async def chanspy(self, name: str, session_id: str) -> None:
        headers = {
            "Event": name,
            "SpyerChannel": SPY_CHANNEL,
            "SpyerUniqueid": session_id,
            "SpyeeChannel": AGENT_CHANNEL,
            "SpyeeUniqueid": "1700000000.11",
        }
        self.bus.publish(ChanSpyChanged(name=name, headers=headers))
        await self.bus.drain()

    async def spy_call_ends(self, session_id: str) -> None:
        self.bus.publish(
            CallEnded(call=Call(linkedid=session_id, started=self.clock.now.timestamp(), legs=(session_id,)))
        )
        await self.bus.drain()


@pytest.fixture
async def world(database: Database, service: AuthService, clock: FakeClock) -> AsyncIterator[World]:
    ami = FakeAmi()
    bus = Bus()
    live = {"model": on_a_call()}
    seats = SeatReads(database)
    spy = SpyService(
        seats,
        UserDirectory(database),
        service,
        bus,
        lambda: ami,  # type: ignore[arg-type,return-value]
        lambda: live["model"],
        phones=["1001", "1002", "3001", "3002", "3003"],
        ring_timeout=20,
        now=clock,
        sweep_interval=3600,
    )
    spy.start()
    world = World(spy, service, ami, bus, clock, live, database, seats)
    yield world
    await spy.close()


async def _teams(world: World) -> tuple[Principal, Principal]:
    boss = await world.user("boss", [Role.SUPERVISOR], "3001", lead_of=["blue"])
    await world.user("ann", [Role.AGENT], "1001", teams=["blue"])
    await world.user("bob", [Role.AGENT], "1002", teams=["red"])
    other = await world.user("rita", [Role.SUPERVISOR], "3002", lead_of=["red"])
    return boss, other


async def test_listening_rings_the_supervisor_s_phone_with_chanspy_on_the_agent_s_channel_and_is_audited(
    world: World,
) -> None:
    boss, _ = await _teams(world)
    session = await world.spy.begin(boss, "PJSIP/1001", SpyMode.LISTEN, remote="10.0.0.7")
    (action,) = world.ami.sent
    assert action.name == "Originate"
    headers = dict(action.headers)
    assert headers["Channel"] == "PJSIP/3001"
    assert headers["Application"] == "ChanSpy"
    # The exact channel (u), quiet (q), ends with it (E, S), mode keys (d), and no w or B: the caller hears nothing.
    assert headers["Data"] == f"{AGENT_CHANNEL},uqESd"
    assert headers["ChannelId"] == session.id
    assert headers["Async"] == "true"
    assert headers["Timeout"] == "20000"
    assert session.state == "ringing"
    assert (session.agent, session.agent_user, session.agent_channel) == ("PJSIP/1001", "ann", AGENT_CHANNEL)
    assert world.spy.sessions_of(boss) == [session]
    (entry,) = await world.audit("spy.start")
    assert (entry.actor, entry.target, entry.remote_addr) == ("boss", "PJSIP/1001", "10.0.0.7")
    assert entry.details["mode"] == "listen"
    assert entry.details["agent"] == "ann"
    assert entry.details["session"] == session.id
    assert entry.details["teams"] == ["blue"]


@pytest.mark.parametrize(("mode", "options"), [(SpyMode.WHISPER, "uqESdw"), (SpyMode.BARGE, "uqESdB")])
async def test_whisper_and_barge_add_their_options_and_the_agent_can_be_named_by_username(
    world: World, mode: SpyMode, options: str
) -> None:
    boss, _ = await _teams(world)
    await world.spy.begin(boss, "ANN", mode)
    assert world.ami.sent[0].get("Data") == f"{AGENT_CHANNEL},{options}"


async def test_a_supervisor_of_another_team_is_refused_and_the_refusal_is_audited(world: World) -> None:
    _, rita = await _teams(world)
    with pytest.raises(Forbidden):
        await world.spy.begin(rita, "PJSIP/1001", SpyMode.LISTEN)
    # Being a member of the agent's team is not enough: one must lead it.
    carl = await world.user("carl", [Role.SUPERVISOR], "3003", teams=["blue"])
    with pytest.raises(Forbidden):
        await world.spy.begin(carl, "ann", SpyMode.BARGE)
    assert world.ami.sent == []
    refused = await world.audit("spy.refused")
    assert sorted((entry.actor, entry.outcome, entry.details["mode"]) for entry in refused) == [
        ("carl", "refused", "barge"),
        ("rita", "refused", "listen"),
    ]


async def test_what_cannot_be_listened_to_is_refused_before_anything_is_sent(world: World) -> None:
    boss, _ = await _teams(world)
    await world.user("dan", [Role.AGENT], "1003", teams=["blue"])
    with pytest.raises(Conflict, match="not on a call"):
        await world.spy.begin(boss, "dan", SpyMode.LISTEN)
    with pytest.raises(NotFound):
        await world.spy.begin(boss, "nobody", SpyMode.LISTEN)
    with pytest.raises(Forbidden):
        # A seat nobody owns belongs to no team.
        await world.spy.begin(boss, "PJSIP/1009", SpyMode.LISTEN)
    phoneless = await world.user("pat", [Role.SUPERVISOR], None, lead_of=["blue"])
    with pytest.raises(Conflict, match="phone"):
        await world.spy.begin(phoneless, "ann", SpyMode.LISTEN)
    selfish = await world.user("sam", [Role.SUPERVISOR], "3003", lead_of=["red"])
    with pytest.raises(InvalidInput):
        await world.spy.begin(selfish, "PJSIP/3003", SpyMode.LISTEN)
    with pytest.raises(InvalidInput):
        await world.spy.begin(selfish, "sam", SpyMode.LISTEN)
    assert world.ami.sent == []
    await world.spy.begin(boss, "ann", SpyMode.LISTEN)
    with pytest.raises(Conflict, match="already"):
        await world.spy.begin(boss, "ann", SpyMode.BARGE)
    assert len(world.ami.sent) == 1


async def test_asterisk_refusing_or_unreachable_leaves_no_session(world: World) -> None:
    boss, _ = await _teams(world)
    refused = AmiActionError("Originate", AmiMessage.of(("Response", "Error"), ("Message", "Originate failed")))
    world.ami.failures = [refused, AmiConnectionLost("gone")]
    with pytest.raises(Conflict):
        await world.spy.begin(boss, "ann", SpyMode.LISTEN)
    with pytest.raises(Unavailable):
        await world.spy.begin(boss, "ann", SpyMode.LISTEN)
    assert world.spy.active == 0
    assert await world.audit("spy.start") == []


async def test_the_mode_switches_by_key_once_connected_and_the_end_is_audited_with_start_and_end(
    world: World,
) -> None:
    boss, rita = await _teams(world)
    session = await world.spy.begin(boss, "ann", SpyMode.LISTEN)
    with pytest.raises(Conflict, match="not connected"):
        await world.spy.change_mode(boss, session.id, SpyMode.BARGE)
    world.clock.advance(4)
    await world.chanspy("ChanSpyStart", session.id)
    assert (session.state, session.spy_channel) == ("active", SPY_CHANNEL)
    with pytest.raises(Forbidden):
        await world.spy.change_mode(rita, session.id, SpyMode.BARGE)
    await world.spy.change_mode(boss, session.id, SpyMode.BARGE)
    dtmf = world.ami.sent[-1]
    assert (dtmf.name, dict(dtmf.headers)) == ("PlayDTMF", {"Channel": SPY_CHANNEL, "Digit": "6", "Receive": "true"})
    await world.spy.change_mode(boss, session.id, SpyMode.WHISPER)
    assert world.ami.sent[-1].get("Digit") == "5"
    (first, second) = sorted(await world.audit("spy.mode"), key=lambda entry: entry.id)
    assert (first.details["from"], first.details["to"], second.details["to"]) == ("listen", "barge", "whisper")
    world.clock.advance(30)
    await world.chanspy("ChanSpyStop", session.id)
    await world.spy_call_ends(session.id)
    assert session.state == "ended"
    assert session.reason == "hangup"
    assert world.spy.sessions_of(boss) == []
    (end,) = await world.audit("spy.end")
    assert (end.actor, end.target) == ("boss", "PJSIP/1001")
    assert end.details["modes"] == ["listen", "barge", "whisper"]
    assert end.details["mode"] == "whisper"
    assert end.details["seconds"] == 30.0
    assert end.details["reason"] == "hangup"
    assert datetime.fromisoformat(end.details["ended_at"]) == world.clock.now
    # Another ending of the same call is not audited twice.
    await world.spy_call_ends(session.id)
    assert len(await world.audit("spy.end")) == 1


async def test_stopping_hangs_up_the_supervisor_s_channel_only_for_its_owner(world: World) -> None:
    boss, rita = await _teams(world)
    session = await world.spy.begin(boss, "ann", SpyMode.LISTEN)
    await world.chanspy("ChanSpyStart", session.id)
    with pytest.raises(Forbidden):
        await world.spy.stop(rita, session.id)
    with pytest.raises(NotFound):
        await world.spy.stop(boss, "ccspy-0000000000000000")
    with pytest.raises(NotFound):
        await world.spy.stop(boss, "PJSIP/1001")
    stopped = await world.spy.stop(boss, session.id, remote="10.0.0.7")
    hangup = world.ami.sent[-1]
    assert (hangup.name, hangup.get("Channel")) == ("Hangup", SPY_CHANNEL)
    assert (stopped.state, stopped.reason) == ("ended", "stopped")
    (end,) = await world.audit("spy.end")
    assert (end.details["reason"], end.remote_addr) == ("stopped", "10.0.0.7")
    with pytest.raises(NotFound):
        await world.spy.stop(boss, session.id)


async def test_a_spy_call_that_never_rang_through_is_given_up(world: World) -> None:
    boss, _ = await _teams(world)
    session = await world.spy.begin(boss, "ann", SpyMode.LISTEN)
    world.clock.advance(20)
    await world.spy.sweep()
    assert session.state == "ringing"
    world.clock.advance(16)
    await world.spy.sweep()
    assert (session.state, session.reason) == ("ended", "not_answered")
    (end,) = await world.audit("spy.end")
    assert end.details["connected_at"] is None
    assert end.details["seconds"] == 0.0


# -- a seat is the person logged in on it (issue 16) ----------------------------------------------------------


async def test_a_phone_whose_extension_was_given_to_another_user_is_still_its_seat_holder_s(world: World) -> None:
    boss, rita = await _teams(world)
    ann = await world.auth.login("ann", PASSWORD)
    await world.seat(ann[1], "PJSIP/1001")
    # Ann moves to another desk's extension while still logged in on 1001; Eve, of Rita's team, is given 1001.
    await world.auth.update_user("ann", extension="1004")
    eve = await world.user("eve", [Role.AGENT], "1001", teams=["red"])  # the listing is read again here
    assert eve.extension == "1001"
    # The phone is Ann's seat: her team's lead may listen, and Eve's lead may not, by interface or by Eve's name.
    with pytest.raises(Forbidden):
        await world.spy.begin(rita, "PJSIP/1001", SpyMode.LISTEN)
    with pytest.raises(Conflict, match="someone else is logged in on their phone"):
        await world.spy.begin(rita, "eve", SpyMode.LISTEN)
    assert world.ami.sent == []
    session = await world.spy.begin(boss, "PJSIP/1001", SpyMode.LISTEN)
    assert (session.agent, session.agent_user) == ("PJSIP/1001", "ann")
    await world.spy_call_ends(session.id)
    session = await world.spy.begin(boss, "ann", SpyMode.LISTEN)
    assert (session.agent, session.agent_user) == ("PJSIP/1001", "ann")
    (entry, *_) = await world.audit("spy.refused")
    assert entry.actor == "rita"


async def test_a_supervisor_listens_on_the_phone_they_are_on_never_on_one_someone_else_sits_at(
    world: World,
) -> None:
    boss, _ = await _teams(world)
    # Kim sat down at 3003 when it was hers, then was given 3004; the boss is given 3003 but Kim still sits there.
    kim = await world.user("kim", [Role.SUPERVISOR], "3003")
    await world.seat(kim, "PJSIP/3003")
    await world.auth.update_user("kim", extension="3004")
    await world.auth.update_user("boss", extension="3003")
    world.seats.forget()
    with pytest.raises(Conflict, match="someone else is logged in on yours"):
        await world.spy.begin(boss, "ann", SpyMode.LISTEN)
    assert world.ami.sent == []
    # Logged in on a seat of their own, the boss listens there, whatever their extension says.
    await world.seat(boss, "PJSIP/3002")
    await world.spy.begin(boss, "ann", SpyMode.LISTEN)
    (action,) = world.ami.sent
    assert action.get("Channel") == "PJSIP/3002"
