"""Recording policy and control: what Asterisk records, when, and the index rows that go with it.

- Full recording: every answered call (queue calls, expert legs, callbacks, desk calls), both directions mixed,
  by MixMonitor on the seat's channel, started by Asterisk's dialplan itself (recordings.full): this module
  follows the ones it hears of (the ``CCRecording`` UserEvent, or found on disk after a restart) for the PCI
  pause and the call's end. An expert leg is a second full recording of the same call.
- On demand: started and stopped by the agent (API) or by a program (the IVR's ``record`` step, for
  complaints; a recording rule, when a call of a listed CRM tier or to a listed queue is queued), by
  MixMonitor on the caller's channel, so that it is a recording of its own.
- PCI pause: MixMonitorMute on every recorded channel of the call (the full and the on-demand recordings go
  silent together, with the timeline kept) and a paused interval on each row.
- A recording ends with the call (Asterisk closes the file at hangup) or when stopped; the row is then completed
  with size, duration and SHA-256.

Effects on Asterisk go through the AMI action API; file names are the store's generated ids (on demand) or the
call's ids (full).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from callcenter import dialplan
from callcenter.ami import actions
from callcenter.ami.connection import AmiConnection
from callcenter.ami.exceptions import AmiError
from callcenter.bus import Bus
from callcenter.db import DatabaseError
from callcenter.events import AsteriskUserEvent, CallEnded, LiveResynced, QueueChanged
from callcenter.model import Channel, LiveModel
from calls.events import CallRecorded
from calls.ports import FinishedCall
from recordings.events import RecordingFinished, RecordingStarted
from recordings.exceptions import RecordingNotFound
from recordings.full import Adopted, FullRecordings, channel_of
from recordings.infos import CallFacts, RecordingInfo
from recordings.models import Kind, Status
from recordings.schemas import SearchQuery
from recordings.services import RecordingService
from seats.ports import SeatDirectory

log = logging.getLogger("recordings.control")

# Asterisk closes a recording's file at hangup on its own thread: give it a moment before hashing the file.
CLOSE_GRACE_SECONDS = 1.0
# Calls remembered as looked at by the recording rules, at most.
RULED_MAX = 50_000
# How long a call's full recordings are tried again while the database is down, and the longest wait between tries.
RETRY_FOR_SECONDS = 3600.0
RETRY_MAX_SECONDS = 15.0
# Ended calls remembered until their records are written, at most.
ENDED_MEMORY = 10_000
# Day directories of full recordings looked through at start (the engine may have been down that long).
SWEEP_DAYS_AT_START = 7


class RecordingControlError(Exception):
    """A recording could not be started, stopped or paused; the message is safe to show."""


@dataclass(slots=True)
class Active:
    id: str
    kind: Kind
    channel: str
    mix_monitor_id: str | None
    linkedid: str


@dataclass(frozen=True, slots=True)
class RecordingRules:
    """Calls recorded on demand from the moment they are queued: by the caller's best CRM tier, or the queue."""

    tiers: Collection[str] = ()
    queues: Collection[str] = ()

    def __bool__(self) -> bool:
        return bool(self.tiers or self.queues)


@dataclass(slots=True)
class _CallRecordings:
    items: list[Active] = field(default_factory=list)
    paused: bool = False


class RecordingControl:
    """Starts, stops and pauses recordings. ``seats`` (the seats' port, given by the composition root) says which
    user sits at the answering seat, for the index row; ``full`` indexes the dialplan's full recordings."""

    def __init__(
        self,
        service: RecordingService,
        seats: SeatDirectory,
        bus: Bus,
        ami: Callable[[], AmiConnection],
        model: Callable[[], LiveModel],
        *,
        full: FullRecordings,
        rules: RecordingRules | None = None,
        tier: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        self._service = service
        self._seats = seats
        self._bus = bus
        self._ami = ami
        self._model = model
        self.full = full
        self._rules = rules or RecordingRules()
        self._tier = tier
        # Calls whose rules were looked at (once a call: the expert queue does not start a second recording).
        self._ruled: set[str] = set()
        self._calls: dict[str, _CallRecordings] = {}
        # Calls ended and not yet recorded: when they started and their legs (the names of their full recordings).
        self._ended: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._resynced_at = time.time()
        self._unsubscribe: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # The finishing of each ended call's followed recordings, while it runs: its files are indexed after it.
        self._finishing: dict[str, asyncio.Task[None]] = {}
        # The recordings of ended calls that the control finished, until the call's files are indexed.
        self._finished: dict[str, set[str]] = {}

    def start(self) -> None:
        self._unsubscribe = [
            self._bus.subscribe(AsteriskUserEvent, self._on_user_event),
            self._bus.subscribe(CallEnded, self._on_ended),
            self._bus.subscribe(CallRecorded, self._on_recorded),
            self._bus.subscribe(LiveResynced, self._on_resynced),
        ]
        if self._rules:
            self._unsubscribe.append(self._bus.subscribe(QueueChanged, self._on_queue_changed))

    async def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
        # Calls still running when the engine stops: their files are closed by Asterisk when the calls end;
        # the rows are completed by recover() on the next start.

    async def recover(self) -> int:
        """After a (re)start: completes the rows left ``recording`` by an engine that stopped mid-call (their calls
        are over or no longer ours to follow), follows the ones whose calls still run, and indexes the full
        recordings the dialplan made while nobody was listening (the last week's files). Returns how many rows it
        completed."""
        query = SearchQuery(status=Status.RECORDING, limit=200)
        page = await self._service.index.search(query)
        model = self._model()
        done = 0
        for item in page.items:
            if item.linkedid is not None and item.linkedid in model.calls:
                # Asterisk is still writing it; the call's end finishes it (it is followed again).
                kind = Kind(item.kind)
                if kind is Kind.FULL:
                    channel = channel_of(model, item.linkedid, item.id)
                else:
                    channel = self._caller_channel(model, item.linkedid)
                if channel is not None:
                    self._follow(Active(item.id, kind, channel.name, None, item.linkedid))
                continue
            await self._service.lifecycle.finish(item.id)
            done += 1
        for adopted in await self.full.sweep(days=SWEEP_DAYS_AT_START):
            await self._follow_full(adopted)
        return done

    async def sweep(self) -> None:
        """Indexes the recent full recordings nobody heard of (the periodic safety net of recordings.full)."""
        for adopted in await self.full.sweep():
            await self._follow_full(adopted)

    def _follow(self, item: Active) -> _CallRecordings:
        calls = self._calls.setdefault(item.linkedid, _CallRecordings())
        if all(active.id != item.id for active in calls.items):
            calls.items.append(item)
        return calls

    def active(self, linkedid: str) -> list[Active]:
        return list(self._calls.get(linkedid, _CallRecordings()).items)

    def paused(self, linkedid: str) -> bool:
        return self._calls.get(linkedid, _CallRecordings()).paused

    # -- what the call is ---------------------------------------------------------------------------------

    def _caller_channel(self, model: LiveModel, linkedid: str) -> Channel | None:
        call = model.calls.get(linkedid)
        if call is None or not call.legs:
            return None
        return model.channels.get(call.legs[0])

    async def _agent_user(self, interface: str) -> int | None:
        return await self._seats.person_at(interface)

    async def on_call(self, user_id: int, linkedid: str) -> bool:
        """The user is the agent on that live call: the seat of the phone they are on now is on it."""
        phone = await self._seats.phone_of(user_id)
        seat = self._model().agents.get(phone) if phone else None
        return seat is not None and seat.linkedid == linkedid

    def _facts(self, model: LiveModel, linkedid: str, *, interface: str | None, queue: str | None) -> CallFacts:
        call = model.calls.get(linkedid)
        return CallFacts(
            linkedid=linkedid,
            uniqueid=call.legs[0] if call and call.legs else None,
            agent_interface=interface,
            queue=queue,
            caller_number=call.caller_number if call else None,
            called_number=call.did if call else None,
            did=call.did if call else None,
        )

    # -- starting and stopping ----------------------------------------------------------------------------

    async def _begin(self, kind: Kind, channel: Channel, facts: CallFacts, actor: str | None) -> RecordingInfo:
        info, allocation = await self._service.lifecycle.start(kind, facts, actor=actor)
        try:
            await asyncio.to_thread(self._service.store.ensure_directory, kind, info.started_at)
            result = await self._ami().send(actions.mix_monitor(channel.name, allocation.asterisk_path))
        except (AmiError, OSError) as exc:
            await self._service.lifecycle.finish(info.id)
            raise RecordingControlError(f"Asterisk did not start the recording: {exc}") from exc
        mix_id = result.get("MixMonitorID") or None
        calls = self._calls.setdefault(channel.linkedid, _CallRecordings())
        calls.items.append(Active(info.id, kind, channel.name, mix_id, channel.linkedid))
        if calls.paused:
            # A recording started during a PCI pause starts silent too.
            with contextlib.suppress(AmiError):
                await self._ami().send(actions.mix_monitor_mute(channel.name, True))
            await self._service.lifecycle.pause(info.id, actor=actor)
        self._bus.publish(RecordingStarted(id=info.id, linkedid=channel.linkedid, kind=str(kind)))
        return info

    async def _on_user_event(self, event: AsteriskUserEvent) -> None:
        if event.name != dialplan.USER_EVENT_RECORDING:
            return
        adopted = await self.full.on_started(dict(event.headers))
        if adopted is not None:
            await self._follow_full(adopted)

    async def _follow_full(self, adopted: Adopted) -> None:
        """Follows a full recording the dialplan started: paused with the rest of the call during a PCI pause,
        finished at the call's end."""
        if adopted.linkedid not in self._model().calls:
            return  # over already: its record's CallRecorded finishes it
        calls = self._follow(Active(adopted.id, Kind.FULL, adopted.channel, None, adopted.linkedid))
        if calls.paused:
            with contextlib.suppress(AmiError):
                await self._ami().send(actions.mix_monitor_mute(adopted.channel, True))
            with contextlib.suppress(DatabaseError, RecordingNotFound):
                await self._service.lifecycle.pause(adopted.id)
        self._bus.publish(RecordingStarted(id=adopted.id, linkedid=adopted.linkedid, kind=str(Kind.FULL)))

    def _on_resynced(self, _event: LiveResynced) -> None:
        self._resynced_at = time.time()

    def _on_recorded(self, event: CallRecorded) -> None:
        """A call's record is written (live, after a restart, or from CEL): its full recordings on disk are
        indexed, those nobody heard of included. A call the engine saw whole (it started after the last resync)
        has its files looked for by its legs' names; any other by listing its day directories."""
        seen = self._ended.pop(event.linkedid, None)
        legs = None
        if seen is not None and event.source == "live" and seen[0] > self._resynced_at:
            legs = seen[1]
        self._spawn(self._index_call(event.linkedid, legs, event.call))

    async def _index_call(
        self, linkedid: str, legs: tuple[str, ...] | None, record: FinishedCall | None = None
    ) -> None:
        """Indexes a finished call's full recordings (``record``: the call's record, when known), trying again
        while the database is down (for up to :data:`RETRY_FOR_SECONDS`; the periodic sweep is the net beyond)."""
        delay = CLOSE_GRACE_SECONDS
        deadline = time.monotonic() + RETRY_FOR_SECONDS
        finishing = self._finishing.get(linkedid)
        if finishing is not None:
            # The recordings the control followed are being finished: looking now would finish them a second time.
            await asyncio.wait([finishing])
        finished = self._finished.pop(linkedid, set())
        while True:
            await asyncio.sleep(delay)
            try:
                await self.full.index_call(linkedid, legs, record, finished=finished)
                return
            except DatabaseError as exc:
                if time.monotonic() >= deadline:
                    log.warning("full recordings of %s not indexed (%s); the sweep takes them", linkedid, exc)
                    return
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    def _spawn(self, job: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start_on_demand(self, *, uniqueid: str, linkedid: str, channel: str = "", reason: str = "") -> None:
        """The flows' RecordingControl port: record the call from now (the IVR's ``record`` step)."""
        await self.record(linkedid, actor=None, description=reason)

    async def record(self, linkedid: str, *, actor: str | None, description: str = "") -> RecordingInfo:
        model = self._model()
        caller = self._caller_channel(model, linkedid)
        if caller is None:
            raise RecordingControlError("the call is not live")
        if any(item.kind is Kind.ON_DEMAND for item in self.active(linkedid)):
            raise RecordingControlError("an on-demand recording of this call is running already")
        agent = next((a.interface for a in model.agents.values() if a.linkedid == linkedid), None)
        facts = self._facts(model, linkedid, interface=agent, queue=None)
        user = await self._agent_user(agent) if agent else None
        facts = replace(facts, agent_user_id=user, description=description[:500])
        return await self._begin(Kind.ON_DEMAND, caller, facts, actor)

    async def stop(self, linkedid: str, *, actor: str | None) -> RecordingInfo:
        calls = self._calls.get(linkedid)
        item = next((a for a in (calls.items if calls else []) if a.kind is Kind.ON_DEMAND), None)
        if calls is None or item is None:
            raise RecordingControlError("no on-demand recording of this call is running")
        try:
            await self._ami().send(actions.stop_mix_monitor(item.channel, item.mix_monitor_id))
        except AmiError as exc:
            raise RecordingControlError(f"Asterisk did not stop the recording: {exc}") from exc
        calls.items.remove(item)
        await asyncio.sleep(CLOSE_GRACE_SECONDS / 4)
        return await self._service.lifecycle.finish(item.id)

    async def set_paused(self, linkedid: str, paused: bool, *, actor: str | None) -> list[RecordingInfo]:
        """PCI pause (or resume) of every recording of the call; returns the rows with their intervals."""
        calls = self._calls.get(linkedid)
        if calls is None or not calls.items:
            raise RecordingControlError("this call is not being recorded")
        if calls.paused == paused:
            raise RecordingControlError("the recording is paused already" if paused else "the recording is not paused")
        channels = dict.fromkeys(item.channel for item in calls.items)
        try:
            for channel in channels:
                await self._ami().send(actions.mix_monitor_mute(channel, paused))
        except AmiError as exc:
            raise RecordingControlError(f"Asterisk did not {'pause' if paused else 'resume'}: {exc}") from exc
        calls.paused = paused
        now = datetime.now(UTC)
        rows = []
        for item in calls.items:
            if paused:
                rows.append(await self._service.lifecycle.pause(item.id, at=now, actor=actor))
            else:
                rows.append(await self._service.lifecycle.resume(item.id, at=now, actor=actor))
        return rows

    # -- recording rules ------------------------------------------------------------------------------------

    async def _on_queue_changed(self, event: QueueChanged) -> None:
        queue = self._model().queues.get(event.queue)
        if queue is None:
            return
        for caller in queue.waiting:
            if caller.linkedid in self._ruled:
                continue
            if len(self._ruled) >= RULED_MAX:
                # Calls whose end was never seen: forgetting them costs at most a refused second recording.
                self._ruled.clear()
            self._ruled.add(caller.linkedid)
            reason = await self._rule_reason(queue.name, caller.caller_number)
            if reason is None:
                continue
            try:
                await self.record(caller.linkedid, actor=None, description=reason)
            except RecordingControlError as exc:
                # Already recorded on demand (the IVR's complaint recording, say), or the caller just left.
                log.info("rule recording of %s not started: %s", caller.linkedid, exc)

    async def _rule_reason(self, queue: str, caller_number: str) -> str | None:
        if queue in self._rules.queues:
            return f"Recorded by rule: every call to queue {queue}."
        if not self._rules.tiers or self._tier is None or not caller_number:
            return None
        try:
            tier = await self._tier(caller_number)
        except Exception:
            log.warning("CRM tier lookup for a recording rule failed; the call is recorded in full only", exc_info=True)
            return None
        if tier is not None and tier in self._rules.tiers:
            return f"Recorded by rule: every call of {tier} customers."
        return None

    # -- the end of the call --------------------------------------------------------------------------------

    def _on_ended(self, event: CallEnded) -> None:
        linkedid = event.call.linkedid
        self._ruled.discard(linkedid)
        self._ended[linkedid] = (event.call.started, event.call.legs)
        while len(self._ended) > ENDED_MEMORY:
            self._ended.pop(next(iter(self._ended)))
        calls = self._calls.pop(linkedid, None)
        if calls is None:
            return
        finishing = self._spawn(self._finish_all(calls.items))
        self._finishing[linkedid] = finishing
        finishing.add_done_callback(lambda _task: self._finishing.pop(linkedid, None))

    async def _finish_all(self, items: list[Active]) -> None:
        await asyncio.sleep(CLOSE_GRACE_SECONDS)
        retry: set[str] = set()
        for item in items:
            try:
                info = await self._service.lifecycle.finish(item.id)
            except (RecordingNotFound, DatabaseError) as exc:
                # Not indexed or not finished (the database was down): done from the file once it is back.
                log.info("recording %s not finished now (%s); done from its file later", item.id, exc)
                if item.linkedid not in retry:
                    retry.add(item.linkedid)
                    self._spawn(self._index_call(item.linkedid, None))
                continue
            except Exception:
                log.exception("finishing recording %s failed", item.id)
                continue
            self._finished.setdefault(item.linkedid, set()).add(info.id)
            while len(self._finished) > ENDED_MEMORY:
                self._finished.pop(next(iter(self._finished)))
            self._bus.publish(RecordingFinished(id=info.id, linkedid=item.linkedid, kind=str(item.kind)))
