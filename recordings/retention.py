"""Keeping recordings no longer than allowed, and keeping the index true to the disk: retention by kind, erasure of
one customer's recordings (with a tombstone), the periodic housekeeping, and the check of rows against files.

Every part here deletes or reports on files in bulk, in batches, with the file work in worker threads. A deleted
recording's row stays, marked erased; playback is told to forget the recording (its conversions, its remembered
check). Erasures and expiries are audited.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from callcenter.config import RecordingsConfig
from callcenter.db import Database, utcnow
from recordings.exceptions import UnsafePath
from recordings.index import Action, RecordingIndex
from recordings.infos import CheckReport, Erasure, json_list
from recordings.models import ACTOR_MAX, Kind, Recording, RecordingErasure, Status
from recordings.playback import Playback
from recordings.storage import RecordingStore

log = logging.getLogger("callcenter.recordings")

RETENTION_BATCH = 500
CHECK_BATCH = 10_000


class Retention:
    def __init__(
        self,
        database: Database,
        index: RecordingIndex,
        store: RecordingStore,
        playback: Playback,
        config: RecordingsConfig,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._database = database
        self._index = index
        self._store = store
        self._playback = playback
        self._config = config
        self._now = clock

    def _retention_days(self) -> dict[Kind, int]:
        return {
            Kind.FULL: self._config.retention_full_days,
            Kind.ON_DEMAND: self._config.retention_on_demand_days,
            Kind.VOICEMAIL: self._config.retention_voicemail_days,
        }

    def _delete_files(self, rows: list[tuple[str, str]]) -> None:
        for recording_id, relative in rows:
            try:
                self._store.delete(relative)
            except UnsafePath:
                log.error("recording %s has an unsafe file name in the index; its file was not touched", recording_id)
            except OSError as exc:
                log.error("cannot delete the file of recording %s: %s", recording_id, exc.strerror)
                raise
            self._playback.forget(recording_id)

    # -- retention and erasure ---------------------------------------------------------------------------

    async def apply(self, now: datetime | None = None) -> dict[str, int]:
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
                await self._index.audit(
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
        await self._index.audit(
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
                    recording_ids=[str(item) for item in json_list(row.recording_ids)],
                )
                for row in rows
            ]

    # -- consistency -------------------------------------------------------------------------------------

    async def check(self) -> CheckReport:
        """Files on disk that no row names, and rows (not erased) whose file is not on disk."""
        on_disk = set(await asyncio.to_thread(lambda: list(self._store.iter_files())))
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

    # -- housekeeping ------------------------------------------------------------------------------------

    def _prepare_directories(self, now: datetime) -> None:
        if not self._store.root.is_dir():
            return
        for kind in Kind:
            for day in (now, now + timedelta(days=1)):
                self._store.ensure_directory(kind, day)

    async def maintain(self) -> None:
        """One pass of housekeeping: today's and tomorrow's directories, retention, old conversions."""
        now = self._now()
        await asyncio.to_thread(self._prepare_directories, now)
        await self.apply(now)
        await asyncio.to_thread(self._playback.prune_transcodes, now)

    async def run_maintenance(self) -> None:
        """Runs :meth:`maintain` now and then every ``retention_check_minutes`` until cancelled."""
        while True:
            try:
                await self.maintain()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recordings housekeeping failed; trying again at the next pass")
            await asyncio.sleep(self._config.retention_check_minutes * 60)
