"""A recording's life in the index: started (a row in state ``recording`` and the file Asterisk is to write),
paused and resumed (PCI: intervals on the row's timeline), finished (size, duration and SHA-256 of the closed file),
or registered whole (a file already closed, such as a voicemail the IVR recorded).

What happens on Asterisk (MixMonitor, its mute) is recordings.control's part; this module keeps the rows. File
work (hashing, reading the WAV header) runs in worker threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from callcenter.db import ConstraintViolation, Database, utcnow
from recordings import audio
from recordings.exceptions import RecordingFileMissing, RecordingNotFound, RecordingStateConflict, UnsupportedAudio
from recordings.index import Action, RecordingIndex
from recordings.infos import CallFacts, RecordingInfo, json_list
from recordings.models import (
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
    Status,
)
from recordings.schemas import DESCRIPTION_MAX, TAG_MAX, TAGS_MAX
from recordings.storage import AUDIO_SUFFIX, Allocation, RecordingStore, check_recording_id, is_recording_id
from recordings.text import search_text_of

log = logging.getLogger("callcenter.recordings")


@dataclass(frozen=True, slots=True)
class _FileFacts:
    size: int
    sha256: str
    duration: float | None


def _clip(value: str | None, limit: int) -> str | None:
    # Caller-controlled text is stored as given; only its length is bounded by the column.
    return None if value is None else value[:limit]


def _offset(started_at: datetime, at: datetime) -> float:
    return round(max(0.0, (at - started_at).total_seconds()), 3)


class RecordingLifecycle:
    def __init__(
        self,
        database: Database,
        index: RecordingIndex,
        store: RecordingStore,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._database = database
        self._index = index
        self.store = store
        self._now = clock

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
            await self._index.audit(Action.STARTED, actor, info.id, details={"linkedid": info.linkedid})
        return info, allocation

    async def begin_found(
        self,
        kind: Kind | str,
        facts: CallFacts,
        recording_id: str,
        relative: str,
        *,
        started_at: datetime | None = None,
    ) -> RecordingInfo:
        """A row in state ``recording`` for a file Asterisk started on its own (the dialplan's full recording),
        named ``relative`` under the root. Idempotent: a row that exists already is returned as it is."""
        kind = Kind(kind)
        check_recording_id(recording_id)
        await asyncio.to_thread(self.store.resolve, relative)
        row = self._new_row(kind, facts, recording_id, relative, started_at or self._now(), Status.RECORDING)
        try:
            async with self._database.session() as session:
                session.add(row)
                await session.flush()
                info = RecordingInfo.of(row)
        except ConstraintViolation:
            # Indexed meanwhile (the live event and a sweep met): the unique id refused the second row.
            return await self._index.info(recording_id)
        return info

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
            row = await self._index.row_in(session, recording_id, lock=True)
            if row.status != Status.RECORDING:
                raise RecordingStateConflict("the recording has ended", recording_id)
            intervals = json_list(row.paused_intervals)
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
        action = Action.PAUSED if pausing else Action.RESUMED
        await self._index.audit(action, actor, recording_id, details={"offset": offset})
        return info

    async def finish(self, recording_id: str, *, ended_at: datetime | None = None) -> RecordingInfo:
        """The file is closed: size, duration (WAV header) and SHA-256 go into the row. Idempotent."""
        check_recording_id(recording_id)
        ended_at = ended_at or self._now()
        # One unit of work: the row is read, the file looked at, the row updated. (SQLite starts the transaction
        # at the UPDATE, so a write of another connection meanwhile does not make it fail.)
        table = Recording.__table__
        async with self._database.session() as session:
            found = (await session.execute(select(table).where(table.c.id == recording_id))).one_or_none()
            if found is None:
                raise RecordingNotFound(recording_id)
            row = RecordingInfo.of(found)
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
            # Only a row still recording: an erasure that came in meanwhile wins.
            result = await session.execute(
                update(Recording)
                .where(Recording.id == recording_id, Recording.status == Status.RECORDING.value)
                .values(**values)
            )
        if cast("CursorResult[Any]", result).rowcount == 1:
            changed = {name: values[name] for name in ("status", "size", "sha256", "duration") if name in values}
            return replace(row, ended_at=ended_at, paused_intervals=intervals, **changed)
        return await self._index.info(recording_id)

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
