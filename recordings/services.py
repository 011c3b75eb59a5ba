"""The recordings index and everything done with it: lifecycle, search, playback, retention and erasure.

File work (hashing, WAV headers, transcoding, deleting, walking the tree) runs in worker threads; the event
loop only waits for it. Who may see a recording is decided here (``may_access``), so the HTTP handlers and
the CLI share one rule: holders of ``recordings.play_all`` see everything, holders of
``recordings.play_own`` the recordings where they were the agent (by user id when the row knows it, else by
the extension in the agent's interface).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Row, or_, select, update

from callcenter.auth.permissions import Permission
from callcenter.auth.services import Principal
from callcenter.config import RecordingsConfig
from callcenter.db import Database, utcnow
from recordings import audio
from recordings.exceptions import (
    RecordingErased,
    RecordingFileMissing,
    RecordingForbidden,
    RecordingNotFound,
    RecordingNotReady,
    RecordingStateConflict,
    RecordingTampered,
    TranscodeFailed,
    UnsafePath,
    UnsupportedAudio,
)
from recordings.models import (
    ACTOR_MAX,
    CHANNEL_ID_MAX,
    DID_MAX,
    INTENT_MAX,
    INTERFACE_MAX,
    NUMBER_MAX,
    QUEUE_MAX,
    SERVICE_TYPE_MAX,
    Direction,
    Kind,
    Recording,
    RecordingErasure,
    Status,
)
from recordings.schemas import DESCRIPTION_MAX, TAG_MAX, TAGS_MAX, SearchQuery, clean_description, clean_tags
from recordings.search import decode_cursor, next_cursor, run_search
from recordings.storage import AUDIO_SUFFIX, Allocation, RecordingStore, check_recording_id, is_recording_id
from recordings.streaming import parse_range
from recordings.text import search_text_of

log = logging.getLogger("callcenter.recordings")

Clock = Callable[[], datetime]

# Verified files remembered by (device, inode, size, mtime, ctime): any write to a file changes its ctime,
# which no user-space call can set back, so a remembered check stays true until the file is touched.
VERIFIED_CACHE_MAX = 4096
RETENTION_BATCH = 500
CHECK_BATCH = 10_000


class Action:
    """Audit actions written by this package."""

    STARTED = "recording_started"
    PAUSED = "recording_paused"
    RESUMED = "recording_resumed"
    PLAYED = "recording_played"
    REFUSED = "recording_refused"
    EDITED = "recording_edited"
    TAMPERED = "recording_tampered"
    EXPIRED = "recordings_expired"
    ERASED = "recordings_erased"


class Auditor(Protocol):
    async def audit(
        self,
        action: str,
        *,
        actor: str | None = None,
        target: str | None = None,
        outcome: str = "success",
        remote: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None: ...


class NoAudit:
    """For tools that write no audit trail of their own (benchmarks)."""

    async def audit(self, action: str, **_: Any) -> None:
        return None


def _clip(value: str | None, limit: int) -> str | None:
    # Caller-controlled text is stored as given; only its length is bounded by the column.
    return None if value is None else value[:limit]


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the engine knows about the call a recording belongs to."""

    linkedid: str | None = None
    uniqueid: str | None = None
    agent_interface: str | None = None
    agent_user_id: int | None = None
    queue: str | None = None
    caller_number: str | None = None
    called_number: str | None = None
    direction: Direction | str = Direction.INBOUND
    did: str | None = None
    service_record_id: int | None = None
    service_record_type: str | None = None
    intent: str | None = None
    description: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """One row of the index as the API shows it."""

    pk: int
    id: str
    kind: str
    status: str
    file_path: str
    linkedid: str | None
    uniqueid: str | None
    agent_interface: str | None
    agent_user_id: int | None
    queue: str | None
    started_at: datetime
    ended_at: datetime | None
    duration: float | None
    caller_number: str | None
    called_number: str | None
    direction: str
    did: str | None
    description: str
    tags: list[str]
    service_record_id: int | None
    service_record_type: str | None
    intent: str | None
    size: int | None
    sha256: str | None
    paused_intervals: list[list[float | None]]
    erased_at: datetime | None

    @classmethod
    def of(cls, row: Recording | Row[Any]) -> RecordingInfo:
        """From an ORM object or a plain row with the same column names."""
        return cls(
            pk=row.pk,
            id=row.id,
            kind=row.kind,
            status=row.status,
            file_path=row.file_path,
            linkedid=row.linkedid,
            uniqueid=row.uniqueid,
            agent_interface=row.agent_interface,
            agent_user_id=row.agent_user_id,
            queue=row.queue,
            started_at=row.started_at,
            ended_at=row.ended_at,
            duration=row.duration,
            caller_number=row.caller_number,
            called_number=row.called_number,
            direction=row.direction,
            did=row.did,
            description=row.description,
            tags=_json_list(row.tags),
            service_record_id=row.service_record_id,
            service_record_type=row.service_record_type,
            intent=row.intent,
            size=row.size,
            sha256=row.sha256,
            paused_intervals=_json_list(row.paused_intervals),
            erased_at=row.erased_at,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "linkedid": self.linkedid,
            "uniqueid": self.uniqueid,
            "agent": {"interface": self.agent_interface, "user_id": self.agent_user_id},
            "queue": self.queue,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "duration": self.duration,
            "caller_number": self.caller_number,
            "called_number": self.called_number,
            "direction": self.direction,
            "did": self.did,
            "description": self.description,
            "tags": self.tags,
            "service_record": {"id": self.service_record_id, "type": self.service_record_type},
            "intent": self.intent,
            "size": self.size,
            "sha256": self.sha256,
            "paused_intervals": self.paused_intervals,
            "erased_at": self.erased_at.isoformat() if self.erased_at else None,
        }


def _json_list(text: str | None) -> list[Any]:
    if not text or text == "[]":
        return []
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


@dataclass(frozen=True, slots=True)
class SearchPage:
    items: list[RecordingInfo]
    total: int
    limit: int
    offset: int
    next_cursor: str | None
    # False when more rows match than the configured counting limit: total is then that limit ("10000+").
    total_exact: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "items": [item.as_json() for item in self.items],
            "total": self.total,
            "total_exact": self.total_exact,
            "limit": self.limit,
            "offset": self.offset,
            "next_cursor": self.next_cursor,
        }


@dataclass(slots=True)
class Playable:
    """An open, verified file ready to be streamed; the caller closes it."""

    fd: int
    size: int
    content_type: str
    etag: str
    filename: str
    closed: bool = field(default=False)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


@dataclass(frozen=True, slots=True)
class Erasure:
    id: int
    at: datetime
    actor: str
    reason: str
    count: int
    recording_ids: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "reason": self.reason,
            "count": self.count,
            "recording_ids": self.recording_ids,
        }


@dataclass(frozen=True, slots=True)
class CheckReport:
    files_without_rows: list[str]
    rows_without_files: list[tuple[str, str]]

    @property
    def clean(self) -> bool:
        return not self.files_without_rows and not self.rows_without_files


@dataclass(frozen=True, slots=True)
class _FileFacts:
    size: int
    sha256: str
    duration: float | None


def interface_extension(interface: str | None) -> str | None:
    """The extension in a queue member interface: PJSIP/1001 -> 1001, Local/1001@agents/n -> 1001."""
    if not interface or "/" not in interface:
        return None
    rest = interface.split("/", 1)[1]
    for stop in ("@", "/", ";"):
        rest = rest.split(stop, 1)[0]
    return rest or None


def may_access(who: Principal, row: RecordingInfo | Recording) -> bool:
    if who.has(Permission.RECORDINGS_PLAY_ALL):
        return True
    if not who.has(Permission.RECORDINGS_PLAY_OWN):
        return False
    if row.agent_user_id is not None:
        # The index knows whose call it was: the extension must not override that (extensions get reassigned).
        return row.agent_user_id == who.user_id
    return who.extension is not None and interface_extension(row.agent_interface) == who.extension


def _offset(started_at: datetime, at: datetime) -> float:
    return round(max(0.0, (at - started_at).total_seconds()), 3)


class RecordingService:
    def __init__(
        self,
        database: Database,
        config: RecordingsConfig,
        store: RecordingStore,
        *,
        transcode_dir: Path,
        auditor: Auditor | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._database = database
        self.config = config
        self.store = store
        self._transcode_dir = transcode_dir
        self._auditor: Auditor = auditor or NoAudit()
        self._now = clock
        self._verified: OrderedDict[str, tuple[tuple[int, ...], str]] = OrderedDict()
        self._transcode_slots = asyncio.Semaphore(config.max_concurrent_transcodes)
        self._transcode_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(
        self,
        kind: Kind | str,
        facts: CallFacts,
        *,
        started_at: datetime | None = None,
        actor: str | None = None,
    ) -> tuple[RecordingInfo, Allocation]:
        """A new row in state ``recording`` and the file Asterisk is to write (MixMonitor's argument)."""
        kind = Kind(kind)
        started_at = started_at or self._now()
        allocation = self.store.allocate(kind, started_at)
        row = self._new_row(kind, facts, allocation.id, allocation.relative, started_at, Status.RECORDING)
        async with self._database.session() as session:
            session.add(row)
            await session.flush()
            info = RecordingInfo.of(row)
        if kind is Kind.ON_DEMAND:
            await self._audit(Action.STARTED, actor, info.id, details={"linkedid": info.linkedid})
        return info, allocation

    def _new_row(
        self,
        kind: Kind,
        facts: CallFacts,
        recording_id: str,
        relative: str,
        started_at: datetime,
        status: Status,
    ) -> Recording:
        # What the engine passes is stored as given (it may carry caller input); only lengths are bounded.
        # Edits through the API are validated strictly (schemas.EditIn).
        description = facts.description[:DESCRIPTION_MAX]
        tags = list(dict.fromkeys(tag[:TAG_MAX] for tag in facts.tags if tag.strip()))[:TAGS_MAX]
        return Recording(
            id=recording_id,
            kind=kind.value,
            status=status.value,
            file_path=relative,
            linkedid=_clip(facts.linkedid, CHANNEL_ID_MAX),
            uniqueid=_clip(facts.uniqueid, CHANNEL_ID_MAX),
            agent_interface=_clip(facts.agent_interface, INTERFACE_MAX),
            agent_user_id=facts.agent_user_id,
            queue=_clip(facts.queue, QUEUE_MAX),
            started_at=started_at,
            caller_number=_clip(facts.caller_number, NUMBER_MAX),
            called_number=_clip(facts.called_number, NUMBER_MAX),
            direction=Direction(facts.direction).value,
            did=_clip(facts.did, DID_MAX),
            description=description,
            tags=json.dumps(tags, ensure_ascii=False),
            search_text=search_text_of(description, tags),
            service_record_id=facts.service_record_id,
            service_record_type=_clip(facts.service_record_type, SERVICE_TYPE_MAX),
            intent=_clip(facts.intent, INTENT_MAX),
            paused_intervals="[]",
        )

    async def pause(self, recording_id: str, *, at: datetime | None = None, actor: str | None = None) -> RecordingInfo:
        """Opens a paused interval (PCI: a card number is being read); MixMonitorMute is the caller's part."""
        return await self._toggle_pause(recording_id, pausing=True, at=at, actor=actor)

    async def resume(self, recording_id: str, *, at: datetime | None = None, actor: str | None = None) -> RecordingInfo:
        return await self._toggle_pause(recording_id, pausing=False, at=at, actor=actor)

    async def _toggle_pause(
        self, recording_id: str, *, pausing: bool, at: datetime | None, actor: str | None
    ) -> RecordingInfo:
        check_recording_id(recording_id)
        at = at or self._now()
        async with self._database.session() as session:
            row = await self._row_in(session, recording_id, lock=True)
            if row.status != Status.RECORDING:
                raise RecordingStateConflict("the recording has ended", recording_id)
            intervals = _json_list(row.paused_intervals)
            paused = bool(intervals) and intervals[-1][1] is None
            offset = _offset(row.started_at, at)
            if pausing:
                if paused:
                    raise RecordingStateConflict("the recording is already paused", recording_id)
                intervals.append([offset, None])
            else:
                if not paused:
                    raise RecordingStateConflict("the recording is not paused", recording_id)
                intervals[-1][1] = max(offset, intervals[-1][0])
            row.paused_intervals = json.dumps(intervals)
            info = RecordingInfo.of(row)
        await self._audit(Action.PAUSED if pausing else Action.RESUMED, actor, recording_id, details={"offset": offset})
        return info

    async def finish(self, recording_id: str, *, ended_at: datetime | None = None) -> RecordingInfo:
        """The file is closed: size, duration (WAV header) and SHA-256 go into the row. Idempotent."""
        check_recording_id(recording_id)
        ended_at = ended_at or self._now()
        row = await self._info(recording_id)
        if row.status != Status.RECORDING:
            return row
        try:
            facts: _FileFacts | None = await asyncio.to_thread(self._file_facts, row.file_path)
        except FileNotFoundError:
            facts = None
        intervals = [list(interval) for interval in row.paused_intervals]
        if intervals and intervals[-1][1] is None:
            intervals[-1][1] = max(_offset(row.started_at, ended_at), float(intervals[-1][0] or 0.0))
        values: dict[str, Any] = {"ended_at": ended_at, "paused_intervals": json.dumps(intervals)}
        if facts is None:
            log.warning("recording %s ended without a file at %s", recording_id, row.file_path)
            values["status"] = Status.MISSING.value
        else:
            values.update(
                status=Status.COMPLETE.value,
                size=facts.size,
                sha256=facts.sha256,
                duration=facts.duration if facts.duration is not None else _offset(row.started_at, ended_at),
            )
        async with self._database.session() as session:
            # Only a row still recording: an erasure that came in meanwhile wins.
            await session.execute(
                update(Recording)
                .where(Recording.id == recording_id, Recording.status == Status.RECORDING.value)
                .values(**values)
            )
        return await self._info(recording_id)

    def _file_facts(self, relative: str) -> _FileFacts:
        fd = self.store.open_for_read(relative)
        with os.fdopen(fd, "rb") as handle:
            digest, size = audio.sha256_of(handle)
            try:
                duration: float | None = round(audio.read_wav_info(handle).duration, 3)
            except UnsupportedAudio:
                duration = None
        return _FileFacts(size=size, sha256=digest, duration=duration)

    async def register_file(
        self,
        path: str | Path,
        facts: CallFacts,
        *,
        kind: Kind | str = Kind.VOICEMAIL,
        started_at: datetime | None = None,
        ended_at: datetime | None = None,
    ) -> RecordingInfo:
        """Indexes a file that is already closed (a voicemail recorded by the IVR) inside the recordings root.

        ``path`` is absolute (inside the root) or relative to the root; it is checked before it is read.
        """
        kind = Kind(kind)
        text = str(path)
        relative = self.store.relative_of(text) if os.path.isabs(text) else text
        await asyncio.to_thread(self.store.resolve, relative)
        stem = relative.rsplit("/", 1)[-1].removesuffix(AUDIO_SUFFIX)
        recording_id = stem if is_recording_id(stem) else self.store.allocate(kind, self._now()).id
        try:
            file_facts = await asyncio.to_thread(self._file_facts, relative)
        except FileNotFoundError as exc:
            raise RecordingFileMissing(recording_id) from exc
        ended_at = ended_at or self._now()
        if started_at is None:
            started_at = ended_at - timedelta(seconds=file_facts.duration or 0.0)
        row = self._new_row(kind, facts, recording_id, relative, started_at, Status.COMPLETE)
        row.ended_at = ended_at
        row.size = file_facts.size
        row.sha256 = file_facts.sha256
        row.duration = file_facts.duration
        async with self._database.session() as session:
            session.add(row)
            await session.flush()
            return RecordingInfo.of(row)

    # -- reading ---------------------------------------------------------------------------------------

    async def _row_in(self, session: Any, recording_id: str, *, lock: bool = False) -> Recording:
        statement = select(Recording).where(Recording.id == recording_id)
        if lock:
            # Two pauses or edits at once must not both read the old intervals (SQLite serialises writers).
            statement = statement.with_for_update()
        row: Recording | None = await session.scalar(statement)
        if row is None:
            raise RecordingNotFound(recording_id)
        return row

    async def _info(self, recording_id: str) -> RecordingInfo:
        async with self._database.session() as session:
            return RecordingInfo.of(await self._row_in(session, recording_id))

    async def get(self, recording_id: str, who: Principal | None = None, *, remote: str | None = None) -> RecordingInfo:
        """One row; with ``who``, only if they may see it (RecordingForbidden, audited, otherwise)."""
        check_recording_id(recording_id)
        info = await self._info(recording_id)
        if who is not None:
            await self._authorize(who, info, remote)
        return info

    async def _authorize(self, who: Principal, info: RecordingInfo, remote: str | None) -> None:
        if not may_access(who, info):
            await self._audit(Action.REFUSED, who.username, info.id, outcome="refused", remote=remote)
            raise RecordingForbidden()

    async def search(self, query: SearchQuery) -> SearchPage:
        query = query.check()
        cursor = decode_cursor(query.cursor, query) if query.cursor is not None else None
        dialect = self._database.dialect
        cap = self.config.search_count_limit
        async with self._database.session() as session:
            total, rows = await run_search(session, query, dialect, cap, cursor)
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        exact = cap <= 0 or total <= cap
        return SearchPage(
            items=[RecordingInfo.of(row) for row in rows],
            total=total if exact else cap,
            total_exact=exact,
            limit=query.limit,
            offset=query.offset,
            next_cursor=next_cursor(query, rows[-1]) if more and rows else None,
        )

    async def edit(
        self,
        recording_id: str,
        who: Principal,
        *,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        remote: str | None = None,
    ) -> RecordingInfo:
        """Changes the description and/or tags (the agent of the call, QA, supervisors); audited."""
        info = await self.get(recording_id, who, remote=remote)
        if info.status == Status.ERASED:
            raise RecordingErased(recording_id)
        new_description = info.description if description is None else clean_description(description)
        new_tags = info.tags if tags is None else clean_tags(list(tags))
        async with self._database.session() as session:
            row = await self._row_in(session, recording_id, lock=True)
            row.description = new_description
            row.tags = json.dumps(new_tags, ensure_ascii=False)
            row.search_text = search_text_of(new_description, new_tags)
            updated = RecordingInfo.of(row)
        changed = {
            "description": description is not None and new_description != info.description,
            "tags": new_tags if tags is not None else None,
        }
        await self._audit(Action.EDITED, who.username, recording_id, remote=remote, details=changed)
        return updated

    # -- playback --------------------------------------------------------------------------------------

    def _playable_state(self, info: RecordingInfo) -> None:
        if info.status == Status.ERASED:
            raise RecordingErased(info.id)
        if info.status == Status.RECORDING or info.sha256 is None:
            raise RecordingNotReady(info.id)
        if info.status == Status.TAMPERED:
            raise RecordingTampered(info.id)

    def _open_and_stat(self, relative: str) -> tuple[int, os.stat_result]:
        fd = self.store.open_for_read(relative)
        return fd, os.fstat(fd)

    async def _verified_fd(self, info: RecordingInfo, actor: str | None, remote: str | None) -> tuple[int, int]:
        """An open descriptor of the recording's file, whose SHA-256 matches the index (else it is refused)."""
        try:
            fd, status = await asyncio.to_thread(self._open_and_stat, info.file_path)
        except FileNotFoundError as exc:
            await self._set_status(info.id, Status.MISSING, only_if=Status.COMPLETE)
            raise RecordingFileMissing(info.id) from exc
        identity = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)
        expected = info.sha256 or ""
        if self._verified.get(info.id) == (identity, expected):
            self._verified.move_to_end(info.id)
            return fd, status.st_size
        try:
            digest = await asyncio.to_thread(audio.sha256_fd, fd)
        except BaseException:
            os.close(fd)
            raise
        if digest != expected:
            os.close(fd)
            self._verified.pop(info.id, None)
            await self._set_status(info.id, Status.TAMPERED)
            log.error("recording %s does not match its checksum: refusing to serve it", info.id)
            await self._audit(
                Action.TAMPERED,
                actor,
                info.id,
                outcome="refused",
                remote=remote,
                details={"expected_sha256": expected, "found_sha256": digest, "size": status.st_size},
            )
            raise RecordingTampered(info.id)
        self._verified[info.id] = (identity, expected)
        if info.status == Status.MISSING:
            # The file is back, and it is the one that was indexed.
            await self._set_status(info.id, Status.COMPLETE, only_if=Status.MISSING)
        while len(self._verified) > VERIFIED_CACHE_MAX:
            self._verified.popitem(last=False)
        if status.st_size == 0:
            log.warning("recording %s is empty", info.id)
        return fd, status.st_size

    async def open_audio(
        self,
        recording_id: str,
        who: Principal,
        fmt: str = "wav",
        *,
        remote: str | None = None,
        range_header: str | None = None,
        head: bool = False,
    ) -> Playable:
        """The verified file (or its mp3/ogg conversion), opened for streaming. Audited as a playback.

        ``range_header`` is checked against the file's size before the playback is audited, so that a
        refused range (416) leaves no playback entry behind."""
        if fmt not in audio.FORMATS:
            raise UnsupportedAudio(f"format {fmt!r} is not offered (wav, mp3, ogg)")
        info = await self.get(recording_id, who, remote=remote)
        self._playable_state(info)
        fd, size = await self._verified_fd(info, who.username, remote)
        etag = f'"{info.sha256}"'
        if fmt != "wav":
            try:
                target = await self._transcoded(info, fmt, fd)
            finally:
                os.close(fd)
            fd, status = await asyncio.to_thread(_open_plain, target)
            size = status.st_size
            etag = f'"{info.sha256}-{fmt}"'
        playable = Playable(fd=fd, size=size, content_type=audio.FORMATS[fmt], etag=etag, filename=f"{info.id}.{fmt}")
        try:
            parse_range(range_header, size)
            await self._audit(
                Action.PLAYED,
                who.username,
                info.id,
                remote=remote,
                details={"format": fmt, "range": (range_header or "")[:100] or None, "head": head or None},
            )
        except BaseException:
            playable.close()
            raise
        return playable

    async def _transcoded(self, info: RecordingInfo, fmt: str, fd: int) -> Path:
        target = self._transcode_dir / f"{info.id}-{(info.sha256 or '')[:16]}.{fmt}"
        lock = self._transcode_locks.get(target.name)
        if lock is None:
            lock = asyncio.Lock()
            self._transcode_locks[target.name] = lock
        async with lock:
            if await asyncio.to_thread(target.is_file):
                return target
            async with self._transcode_slots:
                try:
                    await asyncio.to_thread(self._transcode, fd, target, fmt)
                except (UnsupportedAudio, OSError, RuntimeError, ValueError) as exc:
                    log.warning("converting %s to %s failed: %s", info.id, fmt, exc)
                    raise TranscodeFailed(fmt) from exc
                except Exception as exc:
                    # pydub raises its own exception types (CouldntDecodeError, CouldntEncodeError).
                    log.warning("converting %s to %s failed: %s", info.id, fmt, exc)
                    raise TranscodeFailed(fmt) from exc
        return target

    def _transcode(self, fd: int, target: Path, fmt: str) -> None:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A duplicate of the verified descriptor: the conversion reads exactly what was checked.
        with os.fdopen(os.dup(fd), "rb") as handle:
            handle.seek(0)
            audio.transcode(handle, target, fmt)

    async def waveform(
        self, recording_id: str, who: Principal, points: int, *, remote: str | None = None
    ) -> dict[str, Any]:
        """Peak levels for drawing, computed from the verified WAV's samples."""
        info = await self.get(recording_id, who, remote=remote)
        self._playable_state(info)
        fd, _size = await self._verified_fd(info, who.username, remote)
        wav, levels = await asyncio.to_thread(_peaks_of, fd, points)
        return {
            "id": info.id,
            "points": points,
            "peaks": levels,
            "duration": round(wav.duration, 3),
            "sample_rate": wav.frame_rate,
            "channels": wav.channels,
        }

    # -- retention and erasure -------------------------------------------------------------------------

    def _retention_days(self) -> dict[Kind, int]:
        return {
            Kind.FULL: self.config.retention_full_days,
            Kind.ON_DEMAND: self.config.retention_on_demand_days,
            Kind.VOICEMAIL: self.config.retention_voicemail_days,
        }

    def _delete_files(self, rows: list[tuple[str, str]]) -> None:
        for recording_id, relative in rows:
            try:
                self.store.delete(relative)
            except UnsafePath:
                log.error("recording %s has an unsafe file name in the index; its file was not touched", recording_id)
            except OSError as exc:
                log.error("cannot delete the file of recording %s: %s", recording_id, exc.strerror)
                raise
            self._drop_transcodes(recording_id)
            self._verified.pop(recording_id, None)

    def _drop_transcodes(self, recording_id: str) -> None:
        if not self._transcode_dir.is_dir():
            return
        for cached in self._transcode_dir.glob(f"{recording_id}-*"):
            cached.unlink(missing_ok=True)

    async def apply_retention(self, now: datetime | None = None) -> dict[str, int]:
        """Deletes the files of recordings older than their kind's retention; rows stay, marked erased."""
        now = now or self._now()
        live = [Status.RECORDING.value, Status.COMPLETE.value, Status.MISSING.value, Status.TAMPERED.value]
        expired: dict[str, int] = {}
        for kind, days in self._retention_days().items():
            if days <= 0:
                continue
            cutoff = now - timedelta(days=days)
            count = 0
            while True:
                async with self._database.session() as session:
                    batch = list(
                        await session.execute(
                            select(Recording.pk, Recording.id, Recording.file_path)
                            .where(
                                Recording.status.in_(live),
                                Recording.kind == kind.value,
                                Recording.started_at < cutoff,
                            )
                            .order_by(Recording.started_at)
                            .limit(RETENTION_BATCH)
                        )
                    )
                if not batch:
                    break
                await asyncio.to_thread(self._delete_files, [(row.id, row.file_path) for row in batch])
                async with self._database.session() as session:
                    await session.execute(
                        update(Recording)
                        .where(Recording.pk.in_([row.pk for row in batch]))
                        .values(status=Status.ERASED.value, erased_at=now)
                    )
                count += len(batch)
            if count:
                expired[kind.value] = count
                log.info("retention: erased %d %s recordings older than %d days", count, kind.value, days)
                await self._audit(
                    Action.EXPIRED,
                    None,
                    f"kind:{kind.value}",
                    details={"count": count, "retention_days": days, "cutoff": cutoff.isoformat()},
                )
        return expired

    async def erase_by_number(self, number: str, reason: str, *, actor: str, remote: str | None = None) -> Erasure:
        """Erases every recording where ``number`` called or was called: files deleted, personal data in the
        rows cleared, a tombstone kept (who, when, why, how many; not the number)."""
        now = self._now()
        async with self._database.session() as session:
            rows = list(
                await session.execute(
                    select(Recording.pk, Recording.id, Recording.file_path).where(
                        or_(Recording.caller_number == number, Recording.called_number == number),
                        Recording.status != Status.ERASED.value,
                    )
                )
            )
        # Files first: if the database then fails, a retry finds the rows again and finishes the job.
        await asyncio.to_thread(self._delete_files, [(row.id, row.file_path) for row in rows])
        ids = [row.id for row in rows]
        async with self._database.session() as session:
            tombstone = RecordingErasure(
                at=now,
                actor=actor[:ACTOR_MAX],
                reason=reason,
                count=len(rows),
                recording_ids=json.dumps(ids),
            )
            session.add(tombstone)
            await session.flush()
            if rows:
                await session.execute(
                    update(Recording)
                    .where(Recording.pk.in_([row.pk for row in rows]))
                    .values(
                        status=Status.ERASED.value,
                        erased_at=now,
                        erasure_id=tombstone.id,
                        caller_number=None,
                        called_number=None,
                        description="",
                        tags="[]",
                        search_text="",
                    )
                )
            erasure = Erasure(
                id=tombstone.id, at=now, actor=tombstone.actor, reason=reason, count=len(rows), recording_ids=ids
            )
        await self._audit(
            Action.ERASED,
            actor,
            f"erasure:{erasure.id}",
            remote=remote,
            details={"count": erasure.count, "reason": reason},
        )
        return erasure

    async def erasures(self) -> list[Erasure]:
        async with self._database.session() as session:
            rows = await session.scalars(select(RecordingErasure).order_by(RecordingErasure.id))
            return [
                Erasure(
                    id=row.id,
                    at=row.at,
                    actor=row.actor,
                    reason=row.reason,
                    count=row.count,
                    recording_ids=[str(item) for item in _json_list(row.recording_ids)],
                )
                for row in rows
            ]

    # -- consistency -----------------------------------------------------------------------------------

    async def check(self) -> CheckReport:
        """Files on disk that no row names, and rows (not erased) whose file is not on disk."""
        on_disk = set(await asyncio.to_thread(lambda: list(self.store.iter_files())))
        rows_without_files: list[tuple[str, str]] = []
        known: set[str] = set()
        last = 0
        while True:
            async with self._database.session() as session:
                batch = list(
                    await session.execute(
                        select(Recording.pk, Recording.id, Recording.file_path)
                        .where(Recording.pk > last, Recording.status != Status.ERASED.value)
                        .order_by(Recording.pk)
                        .limit(CHECK_BATCH)
                    )
                )
            if not batch:
                break
            last = batch[-1].pk
            for row in batch:
                known.add(row.file_path)
                if row.file_path not in on_disk:
                    rows_without_files.append((row.id, row.file_path))
        return CheckReport(files_without_rows=sorted(on_disk - known), rows_without_files=rows_without_files)

    # -- housekeeping ----------------------------------------------------------------------------------

    def _prune_transcodes(self, now: datetime) -> int:
        if not self._transcode_dir.is_dir():
            return 0
        limit = now.timestamp() - self.config.transcode_cache_days * 86400
        removed = 0
        for cached in self._transcode_dir.iterdir():
            try:
                if cached.is_file() and cached.stat().st_mtime < limit:
                    cached.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def _prepare_directories(self, now: datetime) -> None:
        if not self.store.root.is_dir():
            return
        for kind in Kind:
            for day in (now, now + timedelta(days=1)):
                self.store.ensure_directory(kind, day)

    async def maintain(self) -> None:
        """One pass of housekeeping: today's and tomorrow's directories, retention, old conversions."""
        now = self._now()
        await asyncio.to_thread(self._prepare_directories, now)
        await self.apply_retention(now)
        await asyncio.to_thread(self._prune_transcodes, now)

    async def run_maintenance(self) -> None:
        """Runs :meth:`maintain` now and then every ``retention_check_minutes`` until cancelled."""
        while True:
            try:
                await self.maintain()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recordings housekeeping failed; trying again at the next pass")
            await asyncio.sleep(self.config.retention_check_minutes * 60)

    # -- helpers ---------------------------------------------------------------------------------------

    async def _set_status(self, recording_id: str, status: Status, *, only_if: Status | None = None) -> None:
        statement = update(Recording).where(Recording.id == recording_id, Recording.status != Status.ERASED.value)
        if only_if is not None:
            statement = statement.where(Recording.status == only_if.value)
        async with self._database.session() as session:
            await session.execute(statement.values(status=status.value))

    async def _audit(
        self,
        action: str,
        actor: str | None,
        target: str | None,
        *,
        outcome: str = "success",
        remote: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        await self._auditor.audit(action, actor=actor, target=target, outcome=outcome, remote=remote, details=details)


def _open_plain(path: Path) -> tuple[int, os.stat_result]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    return fd, os.fstat(fd)


def _peaks_of(fd: int, points: int) -> tuple[audio.WavInfo, list[float]]:
    with os.fdopen(os.dup(fd), "rb") as handle:
        try:
            return audio.peaks(handle, points)
        finally:
            os.close(fd)
