"""Listen, whisper and barge: the supervisor's own phone rings and, once answered, runs ChanSpy on the agent's call.

``POST /api/v1/spy`` originates a call to the supervisor's extension whose application is
``ChanSpy(<the agent's channel>,<options>)`` (AMI Originate with Application=ChanSpy needs only the
``originate`` write class; see asterisk-conf/manager.conf). The options:

- ``u``: the first argument is a full channel name, not a prefix: only that channel is spied on (without it,
  ``PJSIP/1001`` would also match ``PJSIP/10011-...``);
- ``q``: no beep and no channel name spoken; ``E``: end when the agent's channel hangs up; ``S``: end at once
  if the channel is gone already (rather than wait for another);
- ``d``: the keys 4, 5 and 6 switch between listening, whispering and barging without redialling;
- the mode: nothing for listen (the supervisor's microphone is not mixed into the call at all), ``w`` for
  whisper (only the agent's channel hears the supervisor: the caller never does), ``B`` for barge (both do).

Switching mode sends that key to ChanSpy with AMI ``PlayDTMF`` and ``Receive: true``, which makes Asterisk
behave as if the supervisor's phone had sent it (the ``call`` write class). Stopping hangs up the
supervisor's channel. Each session is known by the uniqueid the engine gives that channel (Originate's
``ChannelId``), so ChanSpyStart/ChanSpyStop (published by callcenter.live as ``ChanSpyChanged``) and the end of
the call (``CallEnded``) are matched to it without guessing.

A supervisor may spy only on agents of the teams they lead (``team_members.is_lead``); membership alone is not
enough. Every start, mode change, refusal and end is written to the audit log: who, whom, the mode, when it
started and when it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from callcenter.ami import actions
from callcenter.ami.actions import AmiAction
from callcenter.ami.connection import AmiConnection
from callcenter.ami.exceptions import AmiActionError, AmiError
from callcenter.ami.message import check_header
from callcenter.auth.directory import UserDirectory
from callcenter.auth.services import AuthService, Principal
from callcenter.bus import Bus
from callcenter.events import CallEnded, ChanSpyChanged
from callcenter.model import AgentStatus, Channel, LiveModel
from callcenter.web.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from seats.ports import SeatDirectory
from supervisor.stats import SPY_CALL_PREFIX

log = logging.getLogger("callcenter.supervisor")

PLAY_DTMF = "PlayDTMF"
# The uniqueid given to each spy call's channel: also the session's id in the API.
SESSION_PREFIX = SPY_CALL_PREFIX
SESSION_ID = re.compile(r"^ccspy-[0-9a-f]{16}$")
_INTERFACE = re.compile(r"^PJSIP/([0-9]{2,8})$")
# ChannelState 6 is "Up": a channel that talks.
_UP = 6
# A spy call that never showed a channel is given up this long after its phone stopped ringing.
_GRACE = timedelta(seconds=15)


class SpyMode(StrEnum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


MODE_OPTIONS = {SpyMode.LISTEN: "", SpyMode.WHISPER: "w", SpyMode.BARGE: "B"}
# ChanSpy's d option: these keys switch modes while spying.
MODE_KEYS = {SpyMode.LISTEN: "4", SpyMode.WHISPER: "5", SpyMode.BARGE: "6"}
COMMON_OPTIONS = "uqESd"


def chanspy_data(channel: str, mode: SpyMode) -> str:
    """ChanSpy's arguments: the exact channel and the options of the mode."""
    if not channel or any(char in channel for char in ",|()\"'\\ ") or channel.startswith("/"):
        raise InvalidInput("not a channel name that ChanSpy can be given", {"channel": channel[:80]})
    return f"{channel},{COMMON_OPTIONS}{MODE_OPTIONS[mode]}"


def play_dtmf(channel: str, digit: str, *, receive: bool = True) -> AmiAction:
    """PlayDTMF; with ``receive`` the digit arrives as if the channel's phone had sent it (what ChanSpy reads)."""
    headers = [("Channel", channel), ("Digit", digit)]
    if receive:
        headers.append(("Receive", "true"))
    for name, value in headers:
        check_header(name, value)
    if channel.startswith("/") or len(digit) != 1 or digit not in "0123456789*#ABCD":
        raise InvalidInput("PlayDTMF takes one channel and one key", {"digit": digit[:4]})
    return AmiAction(PLAY_DTMF, tuple(headers), idempotent=False)


@dataclass(slots=True)
class SpySession:
    id: str
    supervisor: str
    supervisor_id: int
    phone: str
    agent: str  # the seat's interface, PJSIP/1001
    agent_user: str | None
    agent_channel: str
    call: str  # the agent's call's linkedid
    mode: SpyMode
    started_at: datetime
    remote: str | None = None
    modes: list[str] = field(default_factory=list)
    state: str = "ringing"  # ringing -> active -> ended
    spy_channel: str = ""
    connected_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "supervisor": self.supervisor,
            "phone": self.phone,
            "agent": self.agent,
            "agent_user": self.agent_user,
            "agent_channel": self.agent_channel,
            "linkedid": self.call,
            "mode": str(self.mode),
            "state": self.state,
            "started_at": self.started_at.isoformat(),
            "connected_at": self.connected_at.isoformat() if self.connected_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class _Target:
    interface: str
    user_id: int | None
    username: str | None


def agent_channel(model: LiveModel, interface: str) -> Channel | None:
    """The agent's channel on their current call: the seat's call if it has one, else a talking channel."""
    prefix = interface + "-"
    agent = model.agents.get(interface)
    linkedid = agent.linkedid if agent is not None and agent.status is AgentStatus.ON_CALL else ""
    candidates = [
        channel
        for channel in model.channels.values()
        if channel.name.startswith(prefix)
        and (channel.linkedid == linkedid if linkedid else (channel.state == _UP or bool(channel.bridge_id)))
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda channel: (bool(channel.bridge_id), channel.created))


class SpyService:
    """Listen, whisper and barge. Who sits where comes from the seats (``seats``, a port given by the composition
    root); users, their extensions and the teams they lead from the core's user directory (``users``)."""

    def __init__(
        self,
        seats: SeatDirectory,
        users: UserDirectory,
        auth: AuthService,
        bus: Bus,
        ami: Callable[[], AmiConnection],
        model: Callable[[], LiveModel],
        *,
        phones: Iterable[str],
        ring_timeout: int = 30,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sweep_interval: float = 5.0,
    ) -> None:
        self._seats = seats
        self._users = users
        self._auth = auth
        self._bus = bus
        self._ami = ami
        self._model = model
        self._phones = frozenset(phones)
        self._ring_timeout = ring_timeout
        self._now = now
        self._sweep_interval = sweep_interval
        self._sessions: dict[str, SpySession] = {}
        self._lock = asyncio.Lock()
        self._unsubscribe: list[Callable[[], None]] = []
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._unsubscribe = [
            self._bus.subscribe(ChanSpyChanged, self._on_chanspy),
            self._bus.subscribe(CallEnded, self._on_call_ended),
        ]
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(), name="spy-sweeper")

    async def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    @property
    def active(self) -> int:
        return len(self._sessions)

    def sessions_of(self, who: Principal) -> list[SpySession]:
        return [session for session in self._sessions.values() if session.supervisor_id == who.user_id]

    # -- who may spy on whom --------------------------------------------------------------------------------

    async def _target(self, target: str) -> _Target:
        """The phone to listen to and the person on it. A seat is the person logged in on it: an interface is
        whoever sits there (its extension's owner when nobody does), a username is wherever that user sits now
        (their own phone when they sit nowhere and nobody else sits there)."""
        if _INTERFACE.match(target) is not None:
            person = await self._seats.person_at(target)
            if person is None:
                return _Target(target, None, None)
            found = (await self._users.users([person])).get(person)
            return _Target(target, person, found.username if found is not None else None)
        user = await self._users.by_username(target)
        if user is None:
            raise NotFound("no such agent", {"agent": target[:150]})
        phone = await self._seats.phone_of(user.id)
        if phone is None:
            reason = "someone else is logged in on their phone" if user.extension else "they have no phone"
            raise Conflict(f"that agent is on no phone now: {reason}", {"agent": user.username})
        return _Target(phone, user.id, user.username)

    async def shared_teams(self, supervisor_id: int, agent_id: int | None) -> list[str]:
        """The teams the supervisor leads that the agent belongs to, sorted."""
        if agent_id is None:
            return []
        led = await self._users.teams_led_by(supervisor_id)
        if not led:
            return []
        member_of = (await self._users.teams_of([agent_id])).get(agent_id, ())
        return sorted(set(led) & set(member_of))

    # -- the API's operations -------------------------------------------------------------------------------

    async def _send(self, action: AmiAction) -> None:
        try:
            await self._ami().send(action)
        except AmiActionError as exc:
            raise Conflict(f"Asterisk refused {action.name}: {exc}", {"action": action.name}) from exc
        except AmiError as exc:
            raise Unavailable(f"Asterisk is not reachable: {exc}", {"action": action.name}) from exc

    async def _refuse(self, who: Principal, target: str, mode: SpyMode, reason: str, remote: str | None) -> None:
        await self._auth.audit(
            "spy.refused",
            actor=who.username,
            target=target,
            outcome="refused",
            remote=remote,
            details={"mode": str(mode), "reason": reason},
        )

    async def begin(self, who: Principal, target: str, mode: SpyMode, *, remote: str | None = None) -> SpySession:
        agent = await self._target(target.strip())
        # The supervisor listens on the phone they are on now, as agents are found on theirs.
        own = await self._seats.phone_of(who.user_id)
        if agent.user_id == who.user_id or agent.interface == own:
            raise InvalidInput("you cannot listen to your own phone", {"fields": {"agent": target[:150]}})
        teams = await self.shared_teams(who.user_id, agent.user_id)
        if not teams:
            await self._refuse(who, agent.interface, mode, "not an agent of a team you lead", remote)
            raise Forbidden(
                "you may only listen to agents of the teams you lead",
                {"agent": agent.interface, "user": agent.username},
            )
        phone = own.removeprefix("PJSIP/") if own else None
        if phone is None or phone not in self._phones:
            raise Conflict(
                "you need a phone of your own to listen on; an admin must give you a configured extension"
                + (" (someone else is logged in on yours)" if who.extension and own is None else ""),
                {"extension": who.extension},
            )
        async with self._lock:
            mine = self.sessions_of(who)
            if mine:
                raise Conflict(
                    "you are already listening; change the mode or stop that call first", {"session": mine[0].id}
                )
            channel = agent_channel(self._model(), agent.interface)
            if channel is None:
                raise Conflict("that agent is not on a call", {"agent": agent.interface})
            session = SpySession(
                id=SESSION_PREFIX + secrets.token_hex(8),
                supervisor=who.username,
                supervisor_id=who.user_id,
                phone=phone,
                agent=agent.interface,
                agent_user=agent.username,
                agent_channel=channel.name,
                call=channel.linkedid,
                mode=mode,
                started_at=self._now(),
                remote=remote,
                modes=[str(mode)],
            )
            action = actions.originate(
                f"PJSIP/{phone}",
                application="ChanSpy",
                data=chanspy_data(channel.name, mode),
                timeout_ms=self._ring_timeout * 1000,
                caller_id=f"{mode.capitalize()} {agent.interface.removeprefix('PJSIP/')} <{phone}>",
                channel_id=session.id,
                run_async=True,
            )
            await self._send(action)
            self._sessions[session.id] = session
        await self._auth.audit(
            "spy.start",
            actor=who.username,
            target=agent.interface,
            remote=remote,
            details={
                "session": session.id,
                "mode": str(mode),
                "agent": agent.username,
                "channel": channel.name,
                "linkedid": channel.linkedid,
                "phone": phone,
                "teams": teams,
            },
        )
        log.info("%s listens to %s (%s) from %s", who.username, agent.interface, mode, phone)
        return session

    def _own(self, who: Principal, session_id: str) -> SpySession:
        session = self._sessions.get(session_id) if SESSION_ID.match(session_id) else None
        if session is None:
            raise NotFound("no such listening call (it may have ended)", {"id": session_id[:40]})
        if session.supervisor_id != who.user_id:
            raise Forbidden("that listening call is someone else's", {"id": session_id})
        return session

    async def change_mode(
        self, who: Principal, session_id: str, mode: SpyMode, *, remote: str | None = None
    ) -> SpySession:
        session = self._own(who, session_id)
        if session.state != "active" or not session.spy_channel:
            raise Conflict("the listening call is not connected yet; answer the phone first", {"id": session.id})
        if mode is session.mode:
            return session
        await self._send(play_dtmf(session.spy_channel, MODE_KEYS[mode]))
        previous, session.mode = session.mode, mode
        session.modes.append(str(mode))
        await self._auth.audit(
            "spy.mode",
            actor=who.username,
            target=session.agent,
            remote=remote,
            details={"session": session.id, "from": str(previous), "to": str(mode), "agent": session.agent_user},
        )
        return session

    async def stop(self, who: Principal, session_id: str, *, remote: str | None = None) -> SpySession:
        session = self._own(who, session_id)
        model = self._model()
        channel = session.spy_channel or (model.channels[session.id].name if session.id in model.channels else "")
        if channel:
            try:
                await self._ami().send(actions.hangup(channel))
            except AmiActionError as exc:
                # Already gone: the end is the same.
                log.info("hangup of %s: %s", channel, exc)
            except AmiError as exc:
                raise Unavailable(f"Asterisk is not reachable: {exc}", {"action": "Hangup"}) from exc
        await self._end(session, "stopped", by=who.username, remote=remote)
        return session

    # -- what Asterisk says ---------------------------------------------------------------------------------

    async def _end(self, session: SpySession, reason: str, *, by: str | None = None, remote: str | None = None) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        session.state = "ended"
        session.ended_at = self._now()
        session.reason = reason
        spied = (session.ended_at - session.connected_at).total_seconds() if session.connected_at else 0.0
        await self._auth.audit(
            "spy.end",
            actor=by or session.supervisor,
            target=session.agent,
            remote=remote or session.remote,
            details={
                "session": session.id,
                "supervisor": session.supervisor,
                "agent": session.agent_user,
                "mode": str(session.mode),
                "modes": session.modes,
                "started_at": session.started_at.isoformat(),
                "connected_at": session.connected_at.isoformat() if session.connected_at else None,
                "ended_at": session.ended_at.isoformat(),
                "seconds": round(spied, 3),
                "reason": reason,
            },
        )
        log.info("%s stopped listening to %s (%s)", session.supervisor, session.agent, reason)

    def _on_chanspy(self, event: ChanSpyChanged) -> None:
        headers = event.headers
        session = self._sessions.get(str(headers.get("SpyerUniqueid", "")))
        if session is None:
            return
        if event.name == "ChanSpyStart":
            session.state = "active"
            session.spy_channel = str(headers.get("SpyerChannel", ""))
            session.connected_at = session.connected_at or self._now()
            spyee = str(headers.get("SpyeeChannel", ""))
            if spyee and spyee != session.agent_channel:
                log.warning("spy %s listens to %s, not %s", session.id, spyee, session.agent_channel)

    async def _on_call_ended(self, event: CallEnded) -> None:
        session = self._sessions.get(event.call.linkedid)
        if session is not None:
            await self._end(session, "hangup" if session.connected_at else "not_connected")

    async def sweep(self) -> None:
        """Ends the sessions whose phone never showed a channel (the originate failed or was never answered)."""
        now = self._now()
        model = self._model()
        deadline = timedelta(seconds=self._ring_timeout) + _GRACE
        for session in list(self._sessions.values()):
            if session.state == "ringing" and session.id not in model.channels and now - session.started_at > deadline:
                await self._end(session, "not_answered")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("spy sweep failed")
