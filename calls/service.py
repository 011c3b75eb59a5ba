"""Writes one record per call, exactly once, and closes the calls that ended while the engine was not looking.

The live path: ``CallEnded`` from the live model -> :func:`build_record` -> insert keyed by linkedid (a second
insert of the same linkedid is refused by the unique key and ignored). Calls still running are snapshotted in
``call_progress`` as they change, with what the IVR and a handoff added, so that an engine restarted mid-call
still knows them. The reconciler compares those snapshots with the live model and with Asterisk's channel event
log (CEL): a snapshot whose call Asterisk no longer has is closed with the end time CEL gives (source
``reconciled``), and a call CEL shows ended that the engine never saw at all gets a record made from CEL alone
(source ``cel``). Why CEL and not CDR or queue_log: docs/decisions.md.

The log is read a chunk at a time and settled as it is read, at most :data:`CHUNK_IDS` calls per query and per
transaction; the reader's position (:class:`calls.models.CelPosition`) is stored in the transaction of the records
that moved it, so a restart resumes there (docs/decisions.md, "Call records: written once, reconciled from CEL").

After a restart (a crash, ``kill -9``) the calls still running are adopted from Asterisk's listings, which say
nothing of the call's past: the snapshots the earlier run left are loaded at start and merged with what the live
model sees later (:func:`calls.records.merge_call`), and a call the engine did not see answered takes its answer from
CEL (:func:`calls.records.with_answer`). While the database is down, records and snapshots go to a journal
(:class:`callcenter.db.Journal`, ``call_records.jsonl`` in the data directory) and are written from it, in order and
once, when the database is back (docs/decisions.md, "Call records through faults").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Executable, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from callcenter.bus import Bus, event_fields
from callcenter.db import ConstraintViolation, Database, DatabaseError, DatabaseUnavailable, Journal
from callcenter.events import CallEnded
from callcenter.model import LiveModel
from calls.cel import CelCall, CelReader
from calls.events import CallRecorded, ExpertOutcome, ExpertRequested
from calls.handoff import row_of
from calls.models import CallProgress, CallRecord, CelPosition, ExpertHandoff
from calls.records import (
    build_record,
    caller_tail,
    finished_call,
    merge_call,
    with_answer,
    with_end,
    with_queue,
)
from ivr_flows.events import IvrEnded
from recordings.events import RecordingStarted

log = logging.getLogger("callcenter.calls")

# What an expert handoff's outcome says, by outcome; what it does not say is left as an earlier event said it.
_ANSWERED_SAYS = frozenset({"linkedid", "handoff_id", "outcome", "expert"})
_UNANSWERED_SAYS = frozenset(
    {"linkedid", "handoff_id", "outcome", "caller_number", "voicemail_path", "notes", "from_user"}
)

# How long after its end a call CEL knows but the engine never recorded is left to the live path.
BACKFILL_GRACE_SECONDS = 30.0
# Snapshots newer than this are not reconciled: the live model may not have seen the call's first event yet.
PROGRESS_GRACE_SECONDS = 5.0
# Events of calls that ended longer ago than this and still have no record are given up on (a record from CEL
# alone is written well before).
CEL_MEMORY_SECONDS = 3600.0
# A call with no end in the log, not in the live model and silent this long was lost by Asterisk (a restart): its
# events are given up on, so that it holds neither memory nor the position (its snapshot, if any, still closes it).
CEL_STALE_SECONDS = 4 * 3600.0
# Ids per IN (...) list and calls per transaction: far below asyncpg's 32,767 arguments and SQLite's limits.
CHUNK_IDS = 500
_MEMORY = 10_000
# Channel ids of the engine's own technical calls, which get no call record (supervisor/spy.py).
NOT_CALLS = ("ccspy-",)
# The journal of call records and snapshots that wait for the database, in the data directory.
JOURNAL_NAME = "call_records.jsonl"
# Seconds between tries to write the journal while the database is down (doubling up to the maximum).
RETRY_INITIAL = 1.0
RETRY_MAX = 30.0
_DATES = ("started_at", "ended_at", "created_at")


class _Lru(OrderedDict[str, Any]):
    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > _MEMORY:
            self.popitem(last=False)


class CallRecorder:
    def __init__(
        self,
        database: Database,
        bus: Bus,
        model: Callable[[], LiveModel],
        *,
        cel_log: Path,
        expert_queue: str,
        horizon_file: Path | None = None,
        journal_dir: Path | None = None,
        reconcile_interval: float = 30.0,
        snapshot_interval: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._database = database
        self._bus = bus
        self._model = model
        self._expert_queue = expert_queue
        self._reconcile_interval = reconcile_interval
        self._snapshot_interval = snapshot_interval
        self._clock = clock
        self.cel = CelReader(cel_log)
        # Calls that started before this engine's database first met this Asterisk are not the engine's to
        # record (a log older than the installation, another engine's test calls): CEL backfill starts here.
        self._horizon_file = horizon_file
        self.horizon = 0.0
        self._log_key = str(cel_log)
        self._position_loaded = False
        self._stored_position: tuple[int | None, int] | None = None
        self._reconciling = asyncio.Lock()
        self._ivr: _Lru = _Lru()
        self._handoffs: _Lru = _Lru()
        self._recordings: _Lru = _Lru()
        self._written: _Lru = _Lru()
        self._outbound: _Lru = _Lru()
        self._snapshots: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: list[Callable[[], None]] = []
        self._lock = asyncio.Lock()
        self.written = 0
        self.duplicates = 0
        # What an earlier run snapshotted of calls that may still be running, by linkedid ({"call", "ivr",
        # "handoff"}): merged into what the live model sees of them after the restart.
        self._saved: dict[str, dict[str, Any]] = {}
        self._saved_loaded = False
        # Calls that began before this recorder started were adopted, not seen from their start.
        self._started_at = clock()
        self.journal = Journal(journal_dir / JOURNAL_NAME) if journal_dir is not None else None
        self._journal_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.journaled = 0

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._horizon_file is not None:
            self.horizon = await asyncio.to_thread(self._read_horizon, self._horizon_file)
        self._unsubscribe = [
            self._bus.subscribe(CallEnded, self._on_ended),
            self._bus.subscribe(IvrEnded, self._on_ivr),
            self._bus.subscribe(ExpertRequested, self._on_handoff),
            self._bus.subscribe(ExpertOutcome, self._on_handoff),
            self._bus.subscribe(RecordingStarted, self._on_recording),
        ]
        self._started_at = self._clock()
        if self.journal is not None:
            pending = await self.journal.load()
            if pending:
                log.info("%d call record(s) and snapshot(s) from an earlier run wait in %s", pending, self.journal.path)
        try:
            await self._load_saved()
        except DatabaseError as exc:
            log.info("snapshots of running calls not read yet (%s); read once the database answers", exc)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._every(self._snapshot_interval, self.snapshot), name="calls-snapshot"),
            loop.create_task(self._every(self._reconcile_interval, self.reconcile), name="calls-reconcile"),
        ]
        if self.journal is not None:
            self._tasks.append(loop.create_task(self._replay_loop(), name="calls-journal"))

    def _read_horizon(self, path: Path) -> float:
        try:
            return float(path.read_text(encoding="ascii").strip())
        except FileNotFoundError:
            now = self._clock()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{now:.6f}\n", encoding="ascii")
            return now
        except ValueError:
            log.error("%s is not a time; CEL backfill takes every call", path)
            return 0.0

    async def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # What is running now stays in call_progress for the next start to reconcile.
        with contextlib.suppress(DatabaseError):
            await self.snapshot()

    async def _every(self, interval: float, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except DatabaseUnavailable as exc:
                # Said once per outage by the database itself.
                log.debug("%s: %s", getattr(job, "__name__", "job"), exc)
            except DatabaseError as exc:
                log.warning("%s: %s", getattr(job, "__name__", "job"), exc)
            except Exception:
                log.exception("%s failed", getattr(job, "__name__", "job"))

    # -- what other parts add to a call ---------------------------------------------------------------------

    def _on_ivr(self, event: IvrEnded) -> None:
        linkedid = event.linkedid
        if linkedid:
            self._ivr.put(linkedid, event_fields(event))
            self._snapshots.pop(linkedid, None)

    def _on_handoff(self, event: ExpertRequested | ExpertOutcome) -> None:
        linkedid = event.linkedid
        if linkedid:
            said = event_fields(event)
            if isinstance(event, ExpertOutcome):
                # An answer names the expert; a voicemail or a callback says the rest, and no expert.
                kept = _ANSWERED_SAYS if event.outcome == "answered" else _UNANSWERED_SAYS
                said = {name: value for name, value in said.items() if name in kept}
            merged = {**self._handoffs.get(linkedid, {}), **said}
            self._handoffs.put(linkedid, merged)
            self._snapshots.pop(linkedid, None)

    def _on_recording(self, event: RecordingStarted) -> None:
        linkedid = event.linkedid
        recording = event.id
        if linkedid and recording:
            known = self._recordings.get(linkedid, [])
            if recording not in known:
                self._recordings.put(linkedid, [*known, recording])

    def mark_outbound(self, linkedid: str, *, number: str, agent: str, **extra: Any) -> None:
        """The call with this linkedid is one the engine places (a callback): its record is outbound, its
        number the customer's, its seat ``agent``."""
        self._outbound.put(linkedid, {"number": number, "agent": agent, **extra})

    def forget_outbound(self, linkedid: str) -> None:
        self._outbound.pop(linkedid, None)

    # -- the live path --------------------------------------------------------------------------------------

    async def _on_ended(self, event: CallEnded) -> None:
        call = asdict(event.call)
        linkedid = str(call.get("linkedid", ""))
        if linkedid.startswith(NOT_CALLS):
            # A supervisor's listen/whisper/barge leg is no call of the center's: the spy audit keeps it.
            return
        call = self._with_saved(linkedid, call)
        if event.unobserved:
            await self._ended_unobserved(linkedid, call)
            return
        if self._adopted(call) and not _answered(call):
            # Adopted after a restart and not seen answered: Asterisk's event log knows whether a seat took it.
            cel = await self._cel_call(linkedid)
            if cel is not None:
                seat, at = cel.answer()
                call = with_answer(call, seat, at, cel.queue(), fallback=cel.last, joined=cel.joined())
        await self.write(call, source="live")

    async def _ended_unobserved(self, linkedid: str, call: dict[str, Any]) -> None:
        """A call a resync found gone (the AMI was cut, Asterisk restarted): when it ended, and an answer the engine
        did not see, are Asterisk's event log's to say. Not in the log yet: the call is kept as a snapshot, which
        the reconciler closes with what the log says by then."""
        cel = await self._cel_call(linkedid)
        if cel is None or cel.ended is None:
            now = datetime.fromtimestamp(self._clock(), UTC)
            await self._keep_snapshots({linkedid: self._snapshot_of(linkedid, call)}, now)
            return
        ended = cel.ended
        if not _answered(call):
            seat, at = cel.answer()
            call = with_answer(call, seat, at, cel.queue(), fallback=cel.last, ended=ended, joined=cel.joined())
            if not seat:
                call = with_queue(call, cel.queue(), cel.joined(), ended=ended)
        await self.write(with_end(call, ended), source="reconciled", ended=ended)

    def _with_saved(self, linkedid: str, call: dict[str, Any]) -> dict[str, Any]:
        """``call`` as the live model has it, with the history an earlier run's snapshot kept of it."""
        saved = self._saved.get(linkedid)
        if saved is None or not isinstance(saved.get("call"), Mapping):
            return call
        return merge_call(saved["call"], call)

    def _adopted(self, call: Mapping[str, Any]) -> bool:
        return str(call.get("linkedid")) in self._saved or float(call.get("started") or 0.0) < self._started_at

    async def _cel_call(self, linkedid: str) -> CelCall | None:
        """What the CEL log says of a call, read up to its end now (the reconciler's reader, under its lock)."""
        try:
            async with self._reconciling:
                await self._load_position()
                call = self.cel.calls.get(linkedid)
                if call is None or call.ended is None:
                    while await asyncio.to_thread(self.cel.read_chunk) is not None:
                        pass
                return self.cel.calls.get(linkedid)
        except (DatabaseError, OSError) as exc:
            log.info("CEL not read for call %s: %s", linkedid, exc)
            return None

    async def write(self, call: Mapping[str, Any], *, source: str, ended: float | None = None) -> bool:
        """Stores the record of ``call``; False when the call had one already, or when the database is down and
        the record waits in the journal (it is written, and CallRecorded published, when the database is back)."""
        linkedid = str(call["linkedid"])
        values = self._values(call, source=source, ended=ended)
        try:
            stored = await self._insert(values)
        except DatabaseUnavailable:
            if self.journal is None:
                raise
            await self._journal_record(values)
            stored = False
        except ConstraintViolation:
            # Not a second record (the unique linkedid skips those): a value the table refuses, a bug to report.
            log.error("call %s: the database refused its record (%s); not written", linkedid, values["outcome"])
            stored = False
        self._written.put(linkedid, True)
        self._forget(linkedid)
        self.cel.settle(linkedid)
        if stored:
            self._bus.publish(recorded_event(values))
        return stored

    def held(self) -> int:
        """How many calls the recorder keeps details of (IVR, handoff, recordings) for their coming records."""
        return len(self._ivr.keys() | self._handoffs.keys() | self._recordings.keys())

    def _forget(self, linkedid: str) -> None:
        """Drops what was kept of a call for its record, once the record is written or journaled: a call's IVR
        path, handoff and recording ids are no use to anything after it (a second write of it is a duplicate)."""
        for memory in (self._ivr, self._handoffs, self._recordings):
            memory.pop(linkedid, None)
        self._snapshots.pop(linkedid, None)
        self._saved.pop(linkedid, None)

    # -- the journal ----------------------------------------------------------------------------------------

    async def _journal_record(self, values: Mapping[str, Any]) -> None:
        assert self.journal is not None
        linkedid = str(values["linkedid"])
        fields = {"kind": "record", "values": {key: _plain(value) for key, value in values.items()}}
        await self.journal.put([(f"record:{linkedid}", fields)])
        # A snapshot journaled earlier is of no use once the record is.
        await self.journal.finish([f"progress:{linkedid}"])
        self.journaled += 1
        log.info("call %s: record (%s) kept in the journal until the database is back", linkedid, values["outcome"])
        self._wake.set()

    async def keep(self, key: str, fields: dict[str, Any]) -> None:
        """Journals a write of another part of the calls (a handoff row) that the database cannot take now; it is
        replayed with the records, in order (``fields["kind"]`` says how: ``handoff``)."""
        if self.journal is None:
            raise DatabaseUnavailable("the database is unavailable and there is no journal")
        await self.journal.put([(key, fields)])
        self._wake.set()

    async def replay(self) -> bool:
        """Writes what waits in the journal, oldest first, each once; False while the database is unavailable."""
        if self.journal is None:
            return True
        await self.journal.load()
        async with self._journal_lock:
            for key, fields in self.journal.entries():
                try:
                    if fields.get("kind") == "record":
                        values = {
                            name: _date(value) if name in _DATES else value
                            for name, value in dict(fields["values"]).items()
                        }
                        if await self._insert(values):
                            self._bus.publish(recorded_event(values))
                    elif fields.get("kind") == "handoff":
                        await self._put_handoff(dict(fields["row"]))
                    elif fields.get("kind") == "progress":
                        await self._put_progress(
                            str(fields["linkedid"]), str(fields["snapshot"]), _date(fields["updated_at"])
                        )
                except DatabaseUnavailable:
                    return False
                except (KeyError, TypeError, ValueError, DatabaseError) as exc:
                    log.error("call journal entry %s cannot be written (%s); dropped", key, exc)
                await self.journal.finish([key])
        return True

    async def _put_handoff(self, kept: dict[str, Any]) -> None:
        """A handoff row as it was last known: made if the database never got it, else brought up to date."""
        row = row_of(kept)
        async with self._database.session() as session:
            stored = await session.get(ExpertHandoff, row.id)
            if stored is None:
                session.add(row)
            elif stored.outcome == "waiting" or stored.outcome == row.outcome:
                stored.outcome, stored.expert, stored.answered_at = row.outcome, row.expert, row.answered_at

    async def _put_progress(self, linkedid: str, text: str, updated: datetime) -> None:
        async with self._lock, self._database.session() as session:
            if await session.scalar(select(CallRecord.id).where(CallRecord.linkedid == linkedid)) is not None:
                return
            row = await session.get(CallProgress, linkedid)
            if row is None:
                session.add(CallProgress(linkedid=linkedid, snapshot=text, updated_at=updated))
            elif row.updated_at <= updated:
                row.snapshot, row.updated_at = text, updated

    async def _replay_loop(self) -> None:
        delay = RETRY_INITIAL
        while True:
            try:
                done = await self.replay()
            except Exception:
                log.exception("replaying the call journal failed")
                done = False
            if done:
                delay = RETRY_INITIAL
                self._wake.clear()
                await self._wake.wait()
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _values(self, call: Mapping[str, Any], *, source: str, ended: float | None) -> dict[str, Any]:
        linkedid = str(call["linkedid"])
        outbound = self._outbound.pop(linkedid, None)
        if outbound is not None:
            call = {
                **call,
                "direction": "outbound",
                "caller_number": outbound["number"],
                "caller_name": "",
                "agent": call.get("agent") or outbound["agent"],
                "service_record_id": outbound.get("service_record_id"),
            }
        values = build_record(
            call,
            ivr=self._ivr.get(linkedid),
            handoff=self._handoffs.get(linkedid),
            recording_ids=self._recordings.get(linkedid, []),
            source=source,
            ended=ended,
            expert_queue=self._expert_queue,
        )
        return values

    async def _insert(self, values: dict[str, Any]) -> bool:
        """Writes one record and drops the call's snapshot, in one transaction; False when the call had a record
        already (the unique linkedid skips it)."""
        linkedid = values["linkedid"]
        row = {**values, "caller_tail": caller_tail(str(values["caller_number"])), "created_at": datetime.now(UTC)}
        async with self._database.session() as session:
            inserted = (await session.execute(self._insert_new(), [row])).scalars().all()
            await session.execute(delete(CallProgress).where(CallProgress.linkedid == linkedid))
        if not inserted:
            self.duplicates += 1
            log.info("call %s has a record already; not written again", linkedid)
            return False
        self.written += 1
        return True

    # -- snapshots of running calls -------------------------------------------------------------------------

    def _snapshot_of(self, linkedid: str, call: dict[str, Any]) -> str:
        # An adopted call's snapshot keeps the history the earlier run saved: a second crash must not lose it.
        return json.dumps(
            {
                "call": self._with_saved(linkedid, call),
                "ivr": self._ivr.get(linkedid),
                "handoff": self._handoffs.get(linkedid),
            },
            default=str,
            sort_keys=True,
        )

    async def _load_saved(self) -> None:
        """Reads the snapshots an earlier run left (in the database, and newer ones in the journal)."""
        if self._saved_loaded:
            return
        texts: dict[str, str] = {}
        async with self._database.session() as session:
            for row in (await session.scalars(select(CallProgress))).all():
                texts[row.linkedid] = row.snapshot
        if self.journal is not None:
            for _key, fields in self.journal.entries():
                if fields.get("kind") == "progress":
                    texts[str(fields.get("linkedid"))] = str(fields.get("snapshot"))
                elif fields.get("kind") == "record":
                    self._written.put(str(dict(fields.get("values") or {}).get("linkedid")), True)
        for linkedid, text in texts.items():
            if linkedid in self._written:
                continue
            try:
                saved = json.loads(text)
            except ValueError:
                continue
            if not isinstance(saved, dict) or not isinstance(saved.get("call"), dict):
                continue
            self._saved[linkedid] = saved
            if saved.get("ivr") and linkedid not in self._ivr:
                self._ivr.put(linkedid, saved["ivr"])
            if saved.get("handoff") and linkedid not in self._handoffs:
                self._handoffs.put(linkedid, saved["handoff"])
        self._saved_loaded = True
        if self._saved:
            log.info("%d call(s) snapshotted by an earlier run; followed to their end", len(self._saved))

    async def snapshot(self) -> int:
        """Writes the snapshots of running calls that changed; returns how many."""
        changed: dict[str, str] = {}
        for linkedid, call in self._model().calls.items():
            if linkedid in self._written or linkedid.startswith(NOT_CALLS):
                continue
            text = self._snapshot_of(linkedid, asdict(call))
            if self._snapshots.get(linkedid) != text:
                changed[linkedid] = text
        if not changed:
            return 0
        await self._keep_snapshots(changed, datetime.fromtimestamp(self._clock(), UTC))
        self._snapshots.update(changed)
        return len(changed)

    async def _keep_snapshots(self, changed: Mapping[str, str], now: datetime) -> None:
        """Stores snapshots, or journals them while the database is down."""
        try:
            await self._store_snapshots(changed, now)
        except DatabaseUnavailable:
            if self.journal is None:
                raise
            await self.journal.put(
                [
                    (
                        f"progress:{linkedid}",
                        {"kind": "progress", "linkedid": linkedid, "snapshot": text, "updated_at": now.isoformat()},
                    )
                    for linkedid, text in changed.items()
                ]
            )
            self._wake.set()

    async def _store_snapshots(self, changed: Mapping[str, str], now: datetime) -> None:
        async with self._lock, self._database.session() as session:
            ids = list(changed)
            known = await _existing(session, CallProgress.linkedid, ids)
            recorded = await _existing(session, CallRecord.linkedid, ids)
            for linkedid, text in changed.items():
                if linkedid in recorded:
                    continue
                if linkedid in known:
                    await session.execute(
                        update(CallProgress)
                        .where(CallProgress.linkedid == linkedid)
                        .values(snapshot=text, updated_at=now)
                    )
                else:
                    session.add(CallProgress(linkedid=linkedid, snapshot=text, updated_at=now))

    # -- reconciliation -------------------------------------------------------------------------------------

    async def reconcile(self) -> int:
        """Closes the calls that ended unobserved; returns how many records it wrote.

        The log is read from the stored position a chunk at a time, and what each chunk settles is written with
        the position before the next chunk is read: memory holds the calls still open, not the log."""
        # What waits in the journal goes first: the records the live path made are better than any closing made
        # here from a snapshot, and the unique linkedid then makes the reconciler's write of them a no-op.
        if not await self.replay():
            return 0
        await self._load_saved()
        async with self._reconciling:
            await self._load_position()
            now = self._clock()
            live = self._model().calls
            # What an earlier pass read and could not settle (the database was down) comes first: reading on while
            # nothing can be written would only grow memory.
            written = await self._settle(now, live)
            while await asyncio.to_thread(self.cel.read_chunk) is not None:
                written += await self._settle(now, live)
            async with self._lock:
                async with self._database.session() as session:
                    progress = (await session.scalars(select(CallProgress))).all()
                    pending = [(row.linkedid, row.snapshot, row.updated_at) for row in progress]
                for linkedid, text, updated_at in pending:
                    if linkedid in live or (now - updated_at.timestamp()) < PROGRESS_GRACE_SECONDS:
                        continue
                    if self.journal is not None and f"record:{linkedid}" in self.journal:
                        continue
                    if await self._close_from_snapshot(linkedid, text, updated_at.timestamp()):
                        written += 1
            # The snapshots closed above may have been what held the position back; the whole log is read, so a
            # call with no end now has none anywhere.
            written += await self._settle(now, live, caught_up=True)
            return written

    async def _load_position(self) -> None:
        if self._position_loaded:
            return
        async with self._database.session() as session:
            row = await session.get(CelPosition, self._log_key)
        if row is not None:
            # The database's horizon wins over the file's: it is the one the stored position was reached with.
            self.horizon = row.horizon
            self.cel.resume(row.inode, row.byte_offset)
            self._stored_position = (row.inode, row.byte_offset)
        self._position_loaded = True

    async def _settle(self, now: float, live: Mapping[str, Any], *, caught_up: bool = False) -> int:
        """Settles what the reader keeps: calls that are none of the center's, long over or lost are dropped;
        calls the log shows ended are recorded from CEL unless someone else records them; then the position
        moves past what is settled. Returns how many records it wrote."""
        dropped: list[str] = []
        candidates: list[CelCall] = []
        for linkedid, cel in self.cel.calls.items():
            if linkedid.startswith(NOT_CALLS) or linkedid in self._written:
                dropped.append(linkedid)
                continue
            if cel.whole and cel.started < self.horizon:
                dropped.append(linkedid)  # from before the horizon: none of the engine's to record
                continue
            ended = cel.ended
            if ended is None:
                if caught_up and linkedid not in live and now - cel.last > CEL_STALE_SECONDS:
                    log.warning("call %s has had no end in the CEL log for hours; given up", linkedid)
                    dropped.append(linkedid)
                continue
            if now - ended > CEL_MEMORY_SECONDS and linkedid in live:
                dropped.append(linkedid)
                continue
            if linkedid in live or now - ended <= BACKFILL_GRACE_SECONDS:
                continue
            candidates.append(cel)
        for linkedid in dropped:
            self.cel.settle(linkedid)
        written = 0
        for start in range(0, len(candidates), CHUNK_IDS):
            async with self._lock:
                written += await self._settle_chunk(candidates[start : start + CHUNK_IDS], now)
        position = self.cel.position()
        if position != self._stored_position:
            async with self._database.session() as session:
                await self._put_position(session, position)
            self._stored_position = position
        return written

    async def _settle_chunk(self, chunk: list[CelCall], now: float) -> int:
        ids = [cel.linkedid for cel in chunk]
        settled: list[str] = []
        rows: list[dict[str, Any]] = []
        async with self._database.session() as session:
            recorded = await _existing(session, CallRecord.linkedid, ids)
            progress = await _existing(session, CallProgress.linkedid, ids)
            for cel in chunk:
                linkedid = cel.linkedid
                if linkedid in progress and (cel.ended is None or now - cel.ended <= CEL_MEMORY_SECONDS):
                    continue  # the snapshot's closing reads these events
                settled.append(linkedid)
                if linkedid in recorded or linkedid in progress or not cel.whole or cel.started < self.horizon:
                    continue
                values = self._values(self._call_from_cel(cel), source="cel", ended=cel.ended)
                values["caller_tail"] = caller_tail(str(values["caller_number"]))
                values["created_at"] = datetime.now(UTC)
                rows.append(values)
            inserted: set[str] = set()
            if rows:
                inserted = set((await session.execute(self._insert_new(), rows)).scalars().all())
            # Past these calls only once their records are in, in the same transaction.
            position = self.cel.position(settling=set(settled))
            await self._put_position(session, position)
        self._stored_position = position
        for linkedid in settled:
            if linkedid in recorded or linkedid in inserted:
                self._written.put(linkedid, True)
            self._snapshots.pop(linkedid, None)
            self.cel.settle(linkedid)
        self.written += len(inserted)
        self.duplicates += len(rows) - len(inserted)
        for values in rows:
            if values["linkedid"] in inserted:
                self._bus.publish(recorded_event(values))
        return len(inserted)

    def _insert_new(self) -> Executable:
        """An INSERT of call records that skips a linkedid recorded meanwhile (the live path, another engine)
        instead of failing the whole chunk, and returns the linkedids it did write."""
        table = CallRecord.__table__
        insert = (postgresql if self._database.dialect == "postgresql" else sqlite).insert(table)
        statement: Executable = insert.on_conflict_do_nothing(index_elements=["linkedid"]).returning(table.c.linkedid)
        return statement

    async def _put_position(self, session: AsyncSession, position: tuple[int | None, int]) -> None:
        inode, offset = position
        now = datetime.now(UTC)
        row = await session.get(CelPosition, self._log_key)
        if row is None:
            session.add(
                CelPosition(log=self._log_key, inode=inode, byte_offset=offset, horizon=self.horizon, updated_at=now)
            )
        else:
            row.inode, row.byte_offset, row.updated_at = inode, offset, now

    async def _close_from_snapshot(self, linkedid: str, text: str, updated: float) -> bool:
        try:
            saved = json.loads(text)
            call = dict(saved["call"])
        except (ValueError, KeyError, TypeError):
            log.error("call_progress of %s is unreadable; dropped", linkedid)
            async with self._database.session() as session:
                await session.execute(delete(CallProgress).where(CallProgress.linkedid == linkedid))
            return False
        if saved.get("ivr") and linkedid not in self._ivr:
            self._ivr.put(linkedid, saved["ivr"])
        if saved.get("handoff") and linkedid not in self._handoffs:
            self._handoffs.put(linkedid, saved["handoff"])
        cel = self.cel.calls.get(linkedid)
        ended = cel.ended if cel is not None else None
        if ended is None:
            # Asterisk has no end for it (it restarted and lost the call): the last thing anyone saw of it.
            ended = max(updated, cel.last if cel is not None else 0.0)
        if cel is not None and not _answered(call):
            # The snapshot may be from before the queue (the database was down, the engine died): CEL says which
            # queue the call joined and which seat took it.
            seat, at = cel.answer()
            call = with_answer(call, seat, at, cel.queue(), fallback=cel.last, ended=ended, joined=cel.joined())
            if not seat:
                call = with_queue(call, cel.queue(), cel.joined(), ended=ended)
        # Answered before the snapshot and over since: the talk runs to the end Asterisk logged.
        call = with_end(call, ended)
        self._saved.pop(linkedid, None)
        return await self.write(call, source="reconciled", ended=ended)

    @staticmethod
    def _call_from_cel(cel: CelCall) -> dict[str, Any]:
        first = cel.first_channel()
        seat = cel.answered_by()
        queue = cel.queue()
        call: dict[str, Any] = {
            "linkedid": cel.linkedid,
            "started": cel.started,
            "caller_number": first.number if first else "",
            "caller_name": "",
            "did": first.exten if first and first.exten.isdigit() else "",
            "bridges": ["cel"] if seat else [],
        }
        if queue:
            joined = cel.joined() or cel.started
            end = cel.ended if cel.ended is not None else cel.last
            call["queue"] = queue
            call["queued_at"] = joined
            if seat:
                # The seat's BRIDGE_ENTER is the answer: the wait runs from the queue's APP_START, the talk to the end.
                at = cel.answer()[1] or joined
                call.update(agent=seat, answered_at=at, wait_time=max(0.0, at - joined), talk_time=max(0.0, end - at))
            else:
                call.update(outcome="abandoned", wait_time=max(0.0, end - joined))
        return call


def _answered(call: Mapping[str, Any]) -> bool:
    return bool(call.get("answered_at")) or any(
        isinstance(item, Mapping) and item.get("answered_at") is not None for item in call.get("segments") or ()
    )


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _date(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


async def _existing(session: AsyncSession, column: Any, ids: list[str]) -> set[str]:
    """Which of ``ids`` are in ``column``, asked :data:`CHUNK_IDS` at a time."""
    found: set[str] = set()
    for start in range(0, len(ids), CHUNK_IDS):
        chunk = ids[start : start + CHUNK_IDS]
        found.update((await session.scalars(select(column).where(column.in_(chunk)))).all())
    return found


def recorded_event(values: Mapping[str, Any]) -> CallRecorded:
    """The event of a record written with these values (``source`` among them)."""
    return CallRecorded(
        linkedid=str(values["linkedid"]),
        outcome=str(values["outcome"]),
        source=str(values["source"]),
        call=finished_call(values),
    )
