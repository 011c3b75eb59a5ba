"""Service records that must not be lost: written ahead to a journal, then to the database, retried until it is.

Every record gets an idempotency key and goes first to an append-only JSON-lines journal under the data
directory, fsync'd before anything else happens; then to the database. When the database is down the record stays
in the journal, and a background task retries with backoff until the database answers again. A record is marked
done in the journal once written; a crash between the write and the mark replays it, which the unique
idempotency key turns into a no-op. So a record is written once, and only once, whatever fails when.

A record the database refuses for good (its customer was deleted meanwhile) is not dropped either: it moves to
a ``.rejected.jsonl`` file beside the journal for an operator, and the log says so.

Journal lines: ``{"op": "put", "key", "actor", "queued_at", "record"}``, then ``{"op": "done", "key"}`` or
``{"op": "rejected", "key"}``. The journal is rewritten down to the pending entries when it has grown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from callcenter.db import ConstraintViolation, DatabaseError, DatabaseUnavailable, Journal, utcnow
from crm_bridge.exceptions import InvalidCrmInput
from crm_bridge.infos import ServiceRecordInfo
from crm_bridge.records import ServiceRecords
from crm_bridge.schemas import ServiceRecordIn

log = logging.getLogger("crm_bridge.outbox")

JOURNAL_NAME = "service_records.jsonl"
REJECTED_NAME = "service_records.rejected.jsonl"
# The journal is rewritten to its pending entries once it holds this many finished ones.
COMPACT_AFTER = 1000


@dataclass(frozen=True, slots=True)
class Submitted:
    """What became of a submitted record: written (``record`` set; ``created`` False when the key was already
    written), or queued until the database is back (``queued``)."""

    key: str
    record: ServiceRecordInfo | None
    created: bool
    queued: bool


@dataclass(frozen=True, slots=True)
class _Entry:
    key: str
    actor: str
    queued_at: str
    record: dict[str, Any]

    def fields(self) -> dict[str, Any]:
        return {"actor": self.actor, "queued_at": self.queued_at, "record": self.record}

    def line(self) -> str:
        return json.dumps({"op": "put", "key": self.key, **self.fields()}, sort_keys=True)

    @classmethod
    def of(cls, key: str, fields: dict[str, Any]) -> _Entry:
        return cls(key, str(fields["actor"]), str(fields["queued_at"]), dict(fields["record"]))


def _keep_rejected(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as rejected:
        rejected.write(line + "\n")
        rejected.flush()
        os.fsync(rejected.fileno())


class ServiceRecordOutbox:
    def __init__(
        self,
        records: ServiceRecords,
        directory: Path,
        *,
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
    ) -> None:
        self._records = records
        self.path = directory / JOURNAL_NAME
        self.rejected_path = directory / REJECTED_NAME
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        # The journal is the one in callcenter.db that the call records use too (the format is unchanged).
        self._journal = Journal(self.path, compact_after=COMPACT_AFTER)
        self._inflight: set[str] = set()
        self._drain_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Records waiting for the database."""
        return self._journal.pending

    async def load(self) -> None:
        """Reads what an earlier run left in the journal (the drain task does this first)."""
        pending = await self._journal.load()
        if pending:
            log.info("outbox: %d service record(s) wait for the database", pending)
            self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="crm-outbox")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def submit(self, data: ServiceRecordIn, *, actor: str) -> Submitted:
        """Journals the record, then writes it; queued (not failed) when the database is unavailable.

        A record the database refuses (an unknown customer) raises here, to the writer, and is not retried.
        """
        key = data.idempotency_key or f"outbox-{uuid.uuid4().hex}"
        if data.idempotency_key is None:
            data = data.model_copy(update={"idempotency_key": key})
        entry = _Entry(key, actor, utcnow().isoformat(), data.model_dump(mode="json"))
        self._inflight.add(key)
        try:
            await self._journal.put([(key, entry.fields())])
        except BaseException:
            self._inflight.discard(key)
            raise
        try:
            record, created = await self._records.create(data, actor=actor)
        except DatabaseUnavailable:
            # The database says it is down once per outage (callcenter.db); here only what waits.
            log.info("service record %s waits in the outbox", key)
            self._inflight.discard(key)
            self._wake.set()
            return Submitted(key, None, False, True)
        except (InvalidCrmInput, ConstraintViolation):
            # The writer hears why; there is nothing to retry.
            await self._finish(key, "rejected")
            raise
        except BaseException:
            # Anything else (a cancelled request, an unexpected error): the journal keeps it for the drain.
            self._inflight.discard(key)
            self._wake.set()
            raise
        await self._finish(key, "done")
        return Submitted(key, record, created, False)

    async def _finish(self, key: str, op: str, entry: _Entry | None = None) -> None:
        if entry is not None:
            # Kept for an operator before the journal forgets it.
            await asyncio.to_thread(_keep_rejected, self.rejected_path, entry.line())
        await self._journal.finish([key], op)
        self._inflight.discard(key)

    async def drain(self) -> bool:
        """Writes every pending record it can; False when the database is still unavailable."""
        await self.load()
        async with self._drain_lock:
            for key, fields in self._journal.entries():
                if key in self._inflight or key not in self._journal:
                    continue
                try:
                    entry = _Entry.of(key, fields)
                except (KeyError, TypeError, ValueError):
                    log.error("outbox: journal entry %s is unreadable; dropped", key)
                    await self._finish(key, "rejected")
                    continue
                try:
                    data = ServiceRecordIn.model_validate(entry.record)
                    await self._records.create(data, actor=entry.actor)
                except DatabaseUnavailable:
                    return False
                except (InvalidCrmInput, ConstraintViolation, ValidationError) as exc:
                    log.error("outbox: service record %s refused (%s); kept in %s", key, exc, self.rejected_path)
                    await self._finish(key, "rejected", entry)
                    continue
                except DatabaseError as exc:
                    # Neither clearly transient nor clearly permanent: keep it and try again later.
                    log.warning("outbox: service record %s not written yet: %s", key, exc)
                    continue
                await self._finish(key, "done")
                log.info("outbox: service record %s written", key)
        return True

    async def _run(self) -> None:
        delay = self._retry_initial
        while True:
            try:
                reachable = await self.drain()
            except Exception:
                log.exception("outbox drain failed")
                reachable = False
            if reachable and not self.pending:
                delay = self._retry_initial
                self._wake.clear()
                if not self.pending:
                    await self._wake.wait()
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max)
