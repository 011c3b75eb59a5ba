"""The expert handoff on SQLite and PostgreSQL, with a fake AMI connection and a live model the test builds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from seating import sit
from sqlalchemy import select

from callcenter import dialplan
from callcenter.ami.actions import AmiAction
from callcenter.ami.exceptions import AmiConnectionLost, AmiError
from callcenter.ami.message import AmiMessage, AmiResult
from callcenter.auth.permissions import Role
from callcenter.auth.services import AuthService, Principal
from callcenter.bus import Bus
from callcenter.config import Config, PathsConfig
from callcenter.db import Database
from callcenter.events import AsteriskUserEvent, CallAnswered
from callcenter.model import AgentState, AgentStatus, Call, CallOutcome, Channel, LiveModel, QueueSegment
from callcenter.web.errors import Conflict, Forbidden, NotFound, Unavailable
from calls.events import ExpertOutcome, ExpertRequested
from calls.handoff import HandoffService
from calls.models import ExpertHandoff
from seats.reads import SeatReads

PASSWORD = "correct horse battery"
LINKEDID = "1700000000.1"
CALLER_CHANNEL = "PJSIP/pstn-00000001"
# Hostile, and easy to spot in any AMI header it must never reach.
E = TypeVar("E")

NOTES = "NOTES-MARKER <script>alert(1)</script>\r\nAction: Hangup\r\nChannel: PJSIP/1001\r\n'; DROP TABLE x; --"


@dataclass
class FakeAmi:
    sent: list[AmiAction] = field(default_factory=list)
    failures: list[AmiError | None] = field(default_factory=list)

    async def send(self, action: AmiAction) -> AmiResult:
        self.sent.append(action)
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        return AmiResult(AmiMessage.of(("Response", "Success")))


@dataclass
class Live:
    model: LiveModel = field(default_factory=LiveModel)


def model_with_a_call(config: Config) -> LiveModel:
    """Ann (PJSIP/1001) talks to the caller; Bob (1002) is free; Carl (1003) is on another call."""
    general = config.queues.general
    call = Call(
        linkedid=LINKEDID,
        started=1000.0,
        caller_number="555",
        did="4000",
        legs=(LINKEDID, "1700000000.2"),
        queue=general,
        queued_at=1002.0,
        agent="PJSIP/1001",
        answered_at=1006.0,
        wait_time=4.0,
        outcome=CallOutcome.ANSWERED,
        segments=(QueueSegment(general, 1002.0, "PJSIP/1001", answered_at=1006.0, wait_time=4.0),),
    )
    channels = {
        LINKEDID: Channel(LINKEDID, CALLER_CHANNEL, LINKEDID, state=6),
        "1700000000.2": Channel("1700000000.2", "PJSIP/1001-00000002", LINKEDID, state=6),
    }
    queues = frozenset({general})
    agents = {
        "PJSIP/1001": AgentState("PJSIP/1001", AgentStatus.ON_CALL, 1006.0, queues=queues, linkedid=LINKEDID),
        "PJSIP/1002": AgentState("PJSIP/1002", AgentStatus.AVAILABLE, 900.0, queues=queues),
        "PJSIP/1003": AgentState("PJSIP/1003", AgentStatus.ON_CALL, 950.0, queues=queues, linkedid="1699999999.5"),
    }
    return LiveModel(channels=channels, calls={LINKEDID: call}, agents=agents)


@dataclass
class World:
    handoffs: HandoffService
    auth: AuthService
    ami: FakeAmi
    live: Live
    bus: Bus
    config: Config
    database: Database
    published: list[object] = field(default_factory=list)

    async def user(self, name: str, extension: str | None, roles: tuple[Role, ...] = (Role.AGENT,)) -> Principal:
        await self.auth.create_user(name, PASSWORD, roles=roles, extension=extension)
        _, who = await self.auth.login(name, PASSWORD)
        return who

    async def rows(self) -> list[ExpertHandoff]:
        async with self.database.session() as session:
            return list((await session.scalars(select(ExpertHandoff).order_by(ExpertHandoff.requested_at))).all())

    def events(self, kind: type[E]) -> list[E]:
        return [event for event in self.published if type(event) is kind]


@pytest.fixture
async def world(database: Database, service: AuthService, tmp_path: Path) -> AsyncIterator[World]:
    config = Config(paths=PathsConfig(data_dir=tmp_path, recordings_dir=tmp_path / "recordings"))
    bus = Bus()
    ami = FakeAmi()
    live = Live(model_with_a_call(config))
    handoffs = HandoffService(
        database, bus, service, config, lambda: ami, lambda: live.model, seats=SeatReads(database)
    )
    state = World(handoffs, service, ami, live, bus, config, database)
    bus.subscribe_all(state.published.append)
    handoffs.start()
    try:
        yield state
    finally:
        handoffs.close()
        await bus.drain()


async def test_only_the_agent_on_the_call_may_hand_it_over(world: World) -> None:
    bob = await world.user("bob", "1002")  # free
    carl = await world.user("carl", "1003")  # on another call
    nox = await world.user("nox", None)  # no phone
    for who in (bob, carl, nox):
        with pytest.raises(Forbidden) as caught:
            await world.handoffs.transfer_to_expert(who, LINKEDID, "help", remote=None)
        assert caught.value.status == 403
    # Ann's seat on the call but in wrap-up already (her leg ended): too late.
    ann = await world.user("ann", "1001")
    agents = dict(world.live.model.agents)
    agents["PJSIP/1001"] = replace(agents["PJSIP/1001"], status=AgentStatus.WRAP_UP)
    world.live.model = replace(world.live.model, agents=agents)
    with pytest.raises(Forbidden):
        await world.handoffs.transfer_to_expert(ann, LINKEDID, "help", remote=None)
    assert world.ami.sent == []
    assert await world.rows() == []
    assert world.events(ExpertRequested) == []


async def test_the_agent_on_the_call_is_the_one_logged_in_on_its_phone_not_whoever_has_its_extension(
    world: World,
) -> None:
    # Ann sat down at 1001, then was given 1004; Eve is given 1001 while Ann still sits there, on the call.
    ann = await world.user("ann", "1001")
    await sit(world.database, ann.user_id, "PJSIP/1001")
    await world.auth.update_user("ann", extension="1004")
    eve = await world.user("eve", "1001")
    with pytest.raises(Forbidden):
        await world.handoffs.transfer_to_expert(eve, LINKEDID, "not my call", remote=None)
    assert world.ami.sent == []
    result = await world.handoffs.transfer_to_expert(ann, LINKEDID, NOTES, remote=None)
    (row,) = await world.rows()
    assert (row.id, row.from_user, row.from_interface) == (result["handoff_id"], "ann", "PJSIP/1001")


async def test_an_unknown_call_is_not_found(world: World) -> None:
    ann = await world.user("ann", "1001")
    with pytest.raises(NotFound) as caught:
        await world.handoffs.transfer_to_expert(ann, "1700000099.9", "help", remote=None)
    assert caught.value.status == 404
    assert world.ami.sent == []


async def test_a_handoff_sets_the_variables_then_redirects_the_caller_and_keeps_the_notes_home(world: World) -> None:
    ann = await world.user("ann", "1001", (Role.AGENT,))
    result = await world.handoffs.transfer_to_expert(ann, LINKEDID, NOTES, remote="10.0.0.5")

    assert [action.name for action in world.ami.sent] == ["Setvar"] * 4 + ["Redirect"]
    variables = {action.get("Variable"): action.get("Value") for action in world.ami.sent[:4]}
    assert all(action.get("Channel") == CALLER_CHANNEL for action in world.ami.sent)
    handoff_id = variables[dialplan.VAR_HANDOFF]
    assert handoff_id.startswith("ho-")
    assert variables[dialplan.VAR_EXPERT_PRIORITY] == str(world.config.calls.expert_priority)
    assert variables[dialplan.VAR_EXPERT_TIMEOUT] == str(world.config.calls.expert_timeout)
    voicemail = Path(variables[dialplan.VAR_EXPERT_VOICEMAIL])
    assert voicemail.is_relative_to(world.config.recordings_dir / "voicemail")
    redirect = world.ami.sent[4]
    assert (redirect.get("Context"), redirect.get("Exten"), redirect.get("Priority")) == (
        dialplan.CONTEXT_EXPERT,
        "s",
        "1",
    )
    # The notes stay in the engine: no header of any action carries them or any part of them.
    for action in world.ami.sent:
        for name, value in action.headers:
            assert "NOTES-MARKER" not in value, name
            assert "DROP TABLE" not in value, name

    (row,) = await world.rows()
    assert row.id == handoff_id
    assert (row.linkedid, row.from_user, row.from_interface) == (LINKEDID, "ann", "PJSIP/1001")
    assert row.notes == NOTES
    assert row.outcome == "waiting"
    assert row.voicemail_path == str(voicemail) + ".wav"
    (requested,) = world.events(ExpertRequested)
    assert (requested.linkedid, requested.handoff_id, requested.notes) == (LINKEDID, handoff_id, NOTES)
    assert result["outcome"] == "waiting"
    assert result["handoff_id"] == handoff_id
    entries, _ = await world.auth.list_audit(action="call.expert_handoff")
    (entry,) = entries
    assert (entry.actor, entry.target, entry.remote_addr) == ("ann", LINKEDID, "10.0.0.5")
    assert entry.details == {"handoff": handoff_id, "notes_length": len(NOTES)}
    notes = await world.handoffs.notes_for(LINKEDID)
    assert [(item["handoff_id"], item["notes"], item["from_user"]) for item in notes] == [(handoff_id, NOTES, "ann")]


async def test_a_second_handoff_of_the_same_call_is_a_conflict(world: World) -> None:
    ann = await world.user("ann", "1001")
    await world.handoffs.transfer_to_expert(ann, LINKEDID, "first", remote=None)
    sent = len(world.ami.sent)
    with pytest.raises(Conflict) as caught:
        await world.handoffs.transfer_to_expert(ann, LINKEDID, "second", remote=None)
    assert caught.value.status == 409
    # Once the caller is in the expert queue the model says so too.
    call = world.live.model.calls[LINKEDID]
    expert = QueueSegment(world.config.queues.expert, 1050.0)
    world.live.model = replace(world.live.model, calls={LINKEDID: replace(call, segments=(*call.segments, expert))})
    with pytest.raises(Conflict):
        await world.handoffs.transfer_to_expert(ann, LINKEDID, "third", remote=None)
    assert len(world.ami.sent) == sent
    assert [row.notes for row in await world.rows()] == ["first"]
    assert len(world.events(ExpertRequested)) == 1


async def test_asterisk_down_fails_the_handoff_and_allows_a_retry(world: World) -> None:
    ann = await world.user("ann", "1001")
    world.ami.failures = [None, AmiConnectionLost("not connected")]
    with pytest.raises(Unavailable):
        await world.handoffs.transfer_to_expert(ann, LINKEDID, "try one", remote=None)
    (row,) = await world.rows()
    assert row.outcome == "failed"
    assert world.events(ExpertRequested) == []
    world.ami.sent.clear()
    await world.handoffs.transfer_to_expert(ann, LINKEDID, "try two", remote=None)
    assert [action.name for action in world.ami.sent][-1] == "Redirect"
    assert sorted(row.outcome for row in await world.rows()) == ["failed", "waiting"]


async def test_the_expert_answering_marks_the_handoff_answered(world: World) -> None:
    ann = await world.user("ann", "1001")
    result = await world.handoffs.transfer_to_expert(ann, LINKEDID, "router", remote=None)
    # The general queue answering means nothing for the handoff.
    world.bus.publish(
        CallAnswered(linkedid=LINKEDID, queue=world.config.queues.general, agent="PJSIP/1002", wait_time=4.0, at=1006.0)
    )
    await world.bus.drain()
    assert (await world.rows())[0].outcome == "waiting"

    world.bus.publish(
        CallAnswered(linkedid=LINKEDID, queue=world.config.queues.expert, agent="PJSIP/2001", wait_time=7.0, at=1060.0)
    )
    await world.bus.drain()
    (row,) = await world.rows()
    assert (row.outcome, row.expert) == ("answered", "PJSIP/2001")
    assert row.answered_at is not None
    (outcome,) = world.events(ExpertOutcome)
    assert outcome == ExpertOutcome(
        linkedid=LINKEDID, handoff_id=result["handoff_id"], outcome="answered", expert="PJSIP/2001"
    )
    # A second answer (a transfer within the expert queue) changes nothing more.
    world.bus.publish(
        CallAnswered(linkedid=LINKEDID, queue=world.config.queues.expert, agent="PJSIP/2002", wait_time=9.0, at=1090.0)
    )
    await world.bus.drain()
    assert (await world.rows())[0].expert == "PJSIP/2001"
    assert len(world.events(ExpertOutcome)) == 1


async def test_the_dialplan_telling_voicemail_marks_the_handoff(world: World) -> None:
    ann = await world.user("ann", "1001")
    result = await world.handoffs.transfer_to_expert(ann, LINKEDID, "router", remote=None)
    handoff_id = result["handoff_id"]

    def user_event(name: str, **headers: str) -> None:
        world.bus.publish(AsteriskUserEvent(name=name, headers={"Event": "UserEvent", "UserEvent": name, **headers}))

    # Not ours, not a known outcome, not a handoff id, a handoff nobody made: all ignored.
    user_event("Other", Handoff=handoff_id, Outcome="voicemail")
    user_event("CCExpert", Handoff=handoff_id, Outcome="hangup")
    user_event("CCExpert", Handoff="x'; DROP TABLE expert_handoffs; --", Outcome="voicemail")
    user_event("CCExpert", Handoff="ho-0000000000000000", Outcome="voicemail")
    await world.bus.drain()
    assert (await world.rows())[0].outcome == "waiting"
    assert world.events(ExpertOutcome) == []

    user_event("CCExpert", Handoff=handoff_id, Outcome="voicemail", Callerid="555")
    await world.bus.drain()
    (row,) = await world.rows()
    assert row.outcome == "voicemail"
    (outcome,) = world.events(ExpertOutcome)
    assert (outcome.linkedid, outcome.handoff_id, outcome.outcome) == (LINKEDID, handoff_id, "voicemail")
    assert outcome.voicemail_path == row.voicemail_path
    assert outcome.caller_number == "555"


class _PausedSession:
    """A session whose first query waits until the other request's first query has run too."""

    def __init__(self, session: Any, barrier: asyncio.Barrier) -> None:
        self._session = session
        self._barrier = barrier
        self._waited = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        result = await self._session.scalar(*args, **kwargs)
        if not self._waited:
            self._waited = True
            # A fix that serialises the requests makes the other one wait for this one: do not wait forever.
            with contextlib.suppress(TimeoutError, asyncio.BrokenBarrierError):
                async with asyncio.timeout(1.0):
                    await self._barrier.wait()
        return result


class InterleavedDatabase:
    """Two requests for the same handoff arriving together (a double click): both look before either writes."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._barrier = asyncio.Barrier(2)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        async with self._database.session() as session:
            yield _PausedSession(session, self._barrier)


async def test_two_handoff_requests_at_once_make_one_handoff(world: World, database: Database) -> None:
    ann = await world.user("ann", "1001")
    racing = HandoffService(
        InterleavedDatabase(database),
        world.bus,
        world.auth,
        world.config,
        lambda: world.ami,
        lambda: world.live.model,
        seats=SeatReads(database),
    )
    results = await asyncio.gather(
        racing.transfer_to_expert(ann, LINKEDID, "click", remote=None),
        racing.transfer_to_expert(ann, LINKEDID, "double click", remote=None),
        return_exceptions=True,
    )
    assert sorted(type(result).__name__ for result in results) == ["Conflict", "dict"]
    assert [action.name for action in world.ami.sent].count("Redirect") == 1
    assert len(await world.rows()) == 1
