"""Full recordings made by the dialplan, and how the engine indexes them whether or not it was listening.

Asterisk starts the full recording of every answered call itself (asterisk-conf/extensions.conf,
``dialplan.CONTEXT_RECORD``): MixMonitor on the seat's channel into ``full/<YYYY>/<MM>/<DD>/<id>.wav``, where the
id is made of the call's ids alone, ``rec-`` + the first 16 hex digits of MD5(linkedid) + the first 16 of
MD5(uniqueid of the recorded channel). So the engine can tell, from a file name, which call it belongs to
(:func:`call_prefix`) and which channel recorded it (:func:`leg_part`), without any record of it.

The engine learns of a recording three ways, each enough alone:

1. live: the dialplan's ``CCRecording`` UserEvent, right after MixMonitor started: a row in state ``recording``;
2. a call's record is written (``CallRecorded``: live, reconciled after a restart, or from Asterisk's CEL): the
   call's files are looked for by name and every one without a row is registered with the call record's facts
   (number, DID, the seat that answered the stay the file belongs to, its queue); rows still ``recording`` are
   finished;
3. a sweep of the recent day directories (at start and every few minutes): files without a row are matched to a
   live call (adopted, still recording) or to a call record, and a file no call claims for an hour is registered
   with what its name and the file itself say.

None of this is on the call's path: a database that is down only delays the rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import stat
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from callcenter.db import ConstraintViolation, DatabaseError, DatabaseUnavailable
from callcenter.model import Channel, LiveModel
from calls.ports import CallRecords, FinishedCall
from recordings.exceptions import RecordingFileMissing, UnsafePath
from recordings.infos import CallFacts, RecordingInfo, json_list
from recordings.models import Direction, Kind, Status
from recordings.services import RecordingService
from recordings.storage import AUDIO_SUFFIX, is_recording_id
from seats.ports import SeatDirectory

log = logging.getLogger("callcenter.recordings")

_HALF = 16
# A file no call claims is registered on its own once it is this old (the call's record may still be coming).
UNCLAIMED_AFTER = timedelta(hours=1)
# Calls last at most this long: a file's call started no earlier than this before the file was last written.
LONGEST_CALL = timedelta(hours=4)
_DAY_DIR = re.compile(r"\A[0-9]{4}/[0-9]{2}/[0-9]{2}\Z")


def _md5_half(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:_HALF]


def call_prefix(linkedid: str) -> str:
    """The start every full recording of the call ``linkedid`` has in its id."""
    return f"rec-{_md5_half(linkedid)}"


def leg_part(uniqueid: str) -> str:
    """The end of the id of the full recording made on the channel ``uniqueid``."""
    return _md5_half(uniqueid)


def full_id(linkedid: str, uniqueid: str) -> str:
    """The id the dialplan gives the full recording of channel ``uniqueid`` in call ``linkedid``."""
    return call_prefix(linkedid) + leg_part(uniqueid)


def interface_of(channel: str) -> str:
    """``PJSIP/1001`` of ``PJSIP/1001-0000002a``: the seat a channel belongs to."""
    base, dash, _sequence = channel.rpartition("-")
    return base if dash and "/" in base else channel


@dataclass(frozen=True, slots=True)
class FoundFile:
    relative: str  # full/YYYY/MM/DD/<id>.wav
    id: str
    modified: datetime


@dataclass(frozen=True, slots=True)
class Adopted:
    """A full recording indexed while its call runs: the control follows it (PCI pause, the call's end)."""

    id: str
    linkedid: str
    channel: str


class FullRecordings:
    """Indexes the full recordings the dialplan makes (see the module's description)."""

    def __init__(
        self,
        service: RecordingService,
        seats: SeatDirectory,
        calls: CallRecords | None,
        model: Callable[[], LiveModel],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._service = service
        self._seats = seats
        self._calls = calls
        self._model = model
        self._now = clock
        self._outage = False
        self.indexed = 0

    # -- the live UserEvent ---------------------------------------------------------------------------------

    async def on_started(self, headers: dict[str, str]) -> Adopted | None:
        """The dialplan's ``CCRecording`` event: checks it, writes the row (state ``recording``) and returns what
        the control follows. None when the event is not a full recording this engine can trust."""
        recording_id = headers.get("Id", "")
        linkedid = headers.get("Linkedid", "")
        uniqueid = headers.get("Uniqueid", "")
        channel = headers.get("Channel", "")
        if not (is_recording_id(recording_id) and linkedid and uniqueid and channel):
            log.warning("a CCRecording event without a usable id, call or channel was ignored")
            return None
        if recording_id != full_id(linkedid, uniqueid):
            log.warning("CCRecording %s does not match its call's ids; ignored", recording_id[:40])
            return None
        relative = self._relative(headers.get("File", ""), recording_id)
        if relative is None:
            log.warning("CCRecording %s names a file outside today's full recordings; ignored", recording_id)
            return None
        adopted = Adopted(recording_id, linkedid, channel)
        queue = headers.get("Queue", "") or None
        facts = await self._live_facts(linkedid, uniqueid, interface_of(channel), queue)
        await self._index(self._service.lifecycle.begin_found(Kind.FULL, facts, recording_id, relative))
        return adopted

    def _relative(self, path: str, recording_id: str) -> str | None:
        store = self._service.store
        try:
            relative = store.relative_of(path)
        except UnsafePath:
            return None
        kind, _, rest = relative.partition("/")
        day, _, name = rest.rpartition("/")
        if kind != Kind.FULL.value or not _DAY_DIR.match(day) or name != recording_id + AUDIO_SUFFIX:
            return None
        return relative

    async def _live_facts(self, linkedid: str, uniqueid: str, interface: str, queue: str | None) -> CallFacts:
        call = self._model().calls.get(linkedid)
        return CallFacts(
            linkedid=linkedid,
            uniqueid=uniqueid,
            agent_interface=interface,
            agent_user_id=await self._user_at(interface),
            queue=queue,
            caller_number=call.caller_number if call else None,
            called_number=call.did if call else None,
            did=call.did if call else None,
        )

    async def _user_at(self, interface: str) -> int | None:
        try:
            return await self._seats.person_at(interface)
        except DatabaseError:
            return None  # the row keeps the seat; who sat there is in the seat history

    async def _index(self, write: Awaitable[object]) -> bool:
        """Awaits one index write; a database that is down is one warning per outage (the sweep catches up)."""
        try:
            await write
        except ConstraintViolation:
            return False  # indexed meanwhile: the live event and a sweep met
        except DatabaseUnavailable as exc:
            if not self._outage:
                log.warning("the recordings index cannot be written (%s); files are indexed once it is back", exc)
            self._outage = True
            return False
        except (DatabaseError, RecordingFileMissing) as exc:
            log.error("a full recording was not indexed: %s", exc)
            return False
        if self._outage:
            log.info("the recordings index is written again")
            self._outage = False
        self.indexed += 1
        return True

    # -- a call's files, once its record is written -----------------------------------------------------------

    async def index_call(
        self,
        linkedid: str,
        legs: Sequence[str] | None = None,
        record: FinishedCall | None = None,
        *,
        finished: Collection[str] = (),
    ) -> int:
        """Finds the full recordings of a finished call on disk; rows are written for those that have none and
        finished for those still ``recording``. Returns how many rows it wrote or finished.

        ``legs``: the uniqueids of every channel the call had, when the engine saw all of them: then only their
        files are looked for (a few stat calls); without them the call's day directories are listed. ``record``:
        the call's record when the caller has it (else it is read). ``finished``: ids whose rows are known to be
        finished already (the control finished them): their files need no look at the index."""
        if record is None and self._calls is not None:
            record = await self._calls.record(linkedid)
        now = self._now()
        start = record.started_at if record is not None else now - timedelta(days=1)
        end = record.ended_at if record is not None else now
        days = _days(start, end)
        if legs is not None:
            names = [full_id(linkedid, leg) for leg in legs]
            files = await asyncio.to_thread(self._named, names, days)
        else:
            files = await asyncio.to_thread(self._files_of, call_prefix(linkedid), days)
        return await self._index_files(linkedid, record, [found for found in files if found.id not in finished])

    async def _index_files(self, linkedid: str, record: FinishedCall | None, files: Sequence[FoundFile]) -> int:
        """Finishes the rows still ``recording``; registers the files without a row, once the call's record says
        whose they are (before it is written, a row would lack the seat and the number: its CallRecorded comes)."""
        if not files:
            return 0
        known = await self._service.index.statuses([found.id for found in files])
        done = 0
        for found in files:
            status = known.get(found.id)
            if status == Status.RECORDING:
                if await self._index(self._service.lifecycle.finish(found.id)):
                    done += 1
            elif status is None and record is not None:
                facts = await self._record_facts(linkedid, record, found)
                if await self._index(self._register(found, facts)):
                    done += 1
        return done

    async def _register(self, found: FoundFile, facts: CallFacts) -> RecordingInfo:
        return await self._service.lifecycle.register_file(
            found.relative, facts, kind=Kind.FULL, ended_at=found.modified
        )

    async def _record_facts(self, linkedid: str, record: FinishedCall, found: FoundFile) -> CallFacts:
        agent, queue = _stay_of(record, found.modified)
        return CallFacts(
            linkedid=linkedid,
            agent_interface=agent,
            agent_user_id=await self._user_at(agent) if agent else None,
            queue=queue,
            caller_number=record.caller_number,
            called_number=record.did or None,
            did=record.did or None,
            direction=Direction.OUTBOUND if record.direction == "outbound" else Direction.INBOUND,
        )

    # -- the sweep ------------------------------------------------------------------------------------------

    async def sweep(self, days: int = 2) -> list[Adopted]:
        """Indexes the files of the last ``days`` day directories that have no row; returns the recordings of
        calls still running, for the control to follow."""
        now = self._now()
        found = await asyncio.to_thread(self._files_in, [now - timedelta(days=back) for back in range(days)])
        if not found:
            return []
        known = await self._service.index.statuses([item.id for item in found])
        orphans = [item for item in found if item.id not in known]
        if not orphans:
            return []
        by_call: dict[str, list[FoundFile]] = {}
        for item in orphans:
            by_call.setdefault(item.id[: len("rec-") + _HALF], []).append(item)
        adopted = await self._adopt_live(by_call)
        if by_call and self._calls is not None:
            oldest = min(item.modified for items in by_call.values() for item in items)
            for call in await self._calls.started_between(oldest - LONGEST_CALL):
                items = by_call.pop(call_prefix(call.linkedid), None)
                if items:
                    await self._index_files(call.linkedid, await self._calls.record(call.linkedid), items)
        for items in by_call.values():
            for item in items:
                if now - item.modified >= UNCLAIMED_AFTER:
                    log.warning("full recording %s belongs to no call the engine knows; indexed on its own", item.id)
                    await self._index(self._register(item, CallFacts()))
        return adopted

    async def _adopt_live(self, by_call: dict[str, list[FoundFile]]) -> list[Adopted]:
        model = self._model()
        adopted: list[Adopted] = []
        for linkedid in list(model.calls):
            items = by_call.pop(call_prefix(linkedid), None)
            for item in items or ():
                channel = channel_of(model, linkedid, item.id)
                interface = interface_of(channel.name) if channel else None
                call = model.calls[linkedid]
                facts = CallFacts(
                    linkedid=linkedid,
                    uniqueid=channel.uniqueid if channel else None,
                    agent_interface=interface,
                    agent_user_id=await self._user_at(interface) if interface else None,
                    queue=call.queue or None,
                    caller_number=call.caller_number,
                    called_number=call.did or None,
                    did=call.did or None,
                )
                # Started some time before its last write; the call's end finishes the row from the file itself.
                answered = _utc(call.answered_at) if call.answered_at is not None else None
                write = self._service.lifecycle.begin_found(
                    Kind.FULL, facts, item.id, item.relative, started_at=answered
                )
                if await self._index(write) and channel is not None:
                    adopted.append(Adopted(item.id, linkedid, channel.name))
        return adopted

    # -- the file system (worker threads) -------------------------------------------------------------------

    def _day_dir(self, day: datetime) -> str:
        day = day.astimezone(UTC)
        return f"{Kind.FULL.value}/{day:%Y}/{day:%m}/{day:%d}"

    def _files_in(self, days: Iterable[datetime], prefix: str = "rec-") -> list[FoundFile]:
        found: list[FoundFile] = []
        for relative_dir in dict.fromkeys(self._day_dir(day) for day in days):
            directory = self._service.store.root.joinpath(*relative_dir.split("/"))
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            for entry in entries:
                name = entry.name
                if not (name.startswith(prefix) and name.endswith(AUDIO_SUFFIX)):
                    continue
                recording_id = name.removesuffix(AUDIO_SUFFIX)
                if not is_recording_id(recording_id) or not entry.is_file(follow_symlinks=False):
                    continue
                modified = datetime.fromtimestamp(entry.stat(follow_symlinks=False).st_mtime, UTC)
                found.append(FoundFile(f"{relative_dir}/{name}", recording_id, modified))
        return found

    def _files_of(self, prefix: str, days: Iterable[datetime]) -> list[FoundFile]:
        return self._files_in(days, prefix)

    def _named(self, names: Sequence[str], days: Iterable[datetime]) -> list[FoundFile]:
        found: list[FoundFile] = []
        for relative_dir in dict.fromkeys(self._day_dir(day) for day in days):
            for name in names:
                relative = f"{relative_dir}/{name}{AUDIO_SUFFIX}"
                try:
                    status = os.lstat(self._service.store.root.joinpath(*relative.split("/")))
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(status.st_mode):
                    found.append(FoundFile(relative, name, datetime.fromtimestamp(status.st_mtime, UTC)))
        return found


def _days(start: datetime, end: datetime) -> list[datetime]:
    """Every UTC day from ``start`` to ``end``, at most three (no call lasts longer)."""
    day, last = start.astimezone(UTC), max(end, start).astimezone(UTC)
    days: list[datetime] = []
    while day.date() <= last.date() and len(days) < 3:
        days.append(day)
        day += timedelta(days=1)
    return days


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def channel_of(model: LiveModel, linkedid: str, recording_id: str) -> Channel | None:
    leg = recording_id[-_HALF:]
    for channel in model.channels.values():
        if channel.linkedid == linkedid and leg_part(channel.uniqueid) == leg:
            return channel
    return None


def _stay_of(record: FinishedCall, modified: datetime) -> tuple[str | None, str | None]:
    """The seat and queue of the stay a full recording belongs to: the answered stay whose answer is the latest
    before the file's last write (an expert leg's file ends after the expert answered), else the first seat."""
    best: tuple[datetime, str, str | None] | None = None
    for stay in json_list(record.segments):
        if not isinstance(stay, dict) or not stay.get("agent") or not stay.get("answered_at"):
            continue
        try:
            answered = datetime.fromisoformat(str(stay["answered_at"]))
        except ValueError:
            continue
        if answered <= modified and (best is None or answered > best[0]):
            best = (answered, str(stay["agent"]), str(stay.get("queue") or "") or None)
    if best is not None:
        return best[1], best[2]
    return record.agent or record.expert, None
