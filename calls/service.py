"""Writes one record per call, exactly once, and closes the calls that ended while the engine was not looking.

The live path: ``CallEnded`` from the live model -> :func:`build_record` -> insert keyed by linkedid (a second
insert of the same linkedid is refused by the unique key and ignored). Calls still running are snapshotted in
``call_progress`` as they change, with what the IVR and a handoff added, so that an engine restarted mid-call
still knows them. The reconciler compares those snapshots with the live model and with Asterisk's channel event
log (CEL): a snapshot whose call Asterisk no longer has is closed with the end time CEL gives (source
``reconciled``), and a call CEL shows ended that the engine never saw at all gets a record made from CEL alone
(source ``cel``). Why CEL and not CDR or queue_log: docs/decisions.md.
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

from sqlalchemy import delete, select

from callcenter.bus import Bus, event_fields
from callcenter.db import ConstraintViolation, Database, DatabaseError
from callcenter.events import CallEnded
from callcenter.model import LiveModel
from calls.cel import CelCall, CelReader
from calls.events import CallRecorded, ExpertOutcome, ExpertRequested
from calls.models import CallProgress, CallRecord
from calls.records import build_record
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
_MEMORY = 10_000
# Channel ids of the engine's own technical calls, which get no call record (supervisor/spy.py).
NOT_CALLS = ("ccspy-",)


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
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._every(self._snapshot_interval, self.snapshot), name="calls-snapshot"),
            loop.create_task(self._every(self._reconcile_interval, self.reconcile), name="calls-reconcile"),
        ]

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
        if str(call.get("linkedid", "")).startswith(NOT_CALLS):
            # A supervisor's listen/whisper/barge leg is no call of the center's: the spy audit keeps it.
            return
        await self.write(call, source="live")

    async def write(self, call: Mapping[str, Any], *, source: str, ended: float | None = None) -> bool:
        """Stores the record of ``call``; False when the call had one already."""
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
        stored = await self._insert(values)
        self._written.put(linkedid, True)
        self._snapshots.pop(linkedid, None)
        self.cel.forget(linkedid)
        if stored:
            self._bus.publish(CallRecorded(linkedid=linkedid, outcome=str(values["outcome"]), source=source))
        return stored

    async def _insert(self, values: dict[str, Any]) -> bool:
        linkedid = values["linkedid"]
        try:
            async with self._database.session() as session:
                exists = await session.scalar(select(CallRecord.id).where(CallRecord.linkedid == linkedid))
                if exists is None:
                    session.add(CallRecord(**values, created_at=datetime.now(UTC)))
                await session.execute(delete(CallProgress).where(CallProgress.linkedid == linkedid))
        except ConstraintViolation:
            exists = -1
        if exists is not None:
            self.duplicates += 1
            log.info("call %s has a record already; not written again", linkedid)
            return False
        self.written += 1
        return True

    # -- snapshots of running calls -------------------------------------------------------------------------

    def _snapshot_of(self, linkedid: str, call: Mapping[str, Any]) -> str:
        return json.dumps(
            {"call": call, "ivr": self._ivr.get(linkedid), "handoff": self._handoffs.get(linkedid)},
            default=str,
            sort_keys=True,
        )

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
        now = datetime.fromtimestamp(self._clock(), UTC)
        async with self._lock, self._database.session() as session:
            known = set(
                (await session.scalars(select(CallProgress.linkedid).where(CallProgress.linkedid.in_(changed)))).all()
            )
            recorded = set(
                (await session.scalars(select(CallRecord.linkedid).where(CallRecord.linkedid.in_(changed)))).all()
            )
            for linkedid, text in changed.items():
                if linkedid in recorded:
                    continue
                if linkedid in known:
                    row = await session.get(CallProgress, linkedid)
                    if row is not None:
                        row.snapshot, row.updated_at = text, now
                else:
                    session.add(CallProgress(linkedid=linkedid, snapshot=text, updated_at=now))
        self._snapshots.update(changed)
        return len(changed)

    # -- reconciliation -------------------------------------------------------------------------------------

    async def reconcile(self) -> int:
        """Closes the calls that ended unobserved; returns how many records it wrote."""
        async with self._lock:
            await asyncio.to_thread(self.cel.read_new)
            now = self._clock()
            live = self._model().calls
            written = 0
            async with self._database.session() as session:
                progress = (await session.scalars(select(CallProgress))).all()
                pending = [(row.linkedid, row.snapshot, row.updated_at) for row in progress]
            for linkedid, text, updated_at in pending:
                if linkedid in live or (now - updated_at.timestamp()) < PROGRESS_GRACE_SECONDS:
                    continue
                if await self._close_from_snapshot(linkedid, text, updated_at.timestamp()):
                    written += 1
            written += await self._backfill(now, live)
            self._forget_cel(now)
            return written

    def _forget_cel(self, now: float) -> None:
        """Drops the log's events of calls that are recorded or long over, so memory does not grow."""
        for linkedid, cel in list(self.cel.calls.items()):
            ended = cel.ended
            if linkedid in self._written or (ended is not None and now - ended > CEL_MEMORY_SECONDS):
                self.cel.forget(linkedid)

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
        if cel is not None and not call.get("answered_at"):
            seat, at = cel.answer()
            queue = call.get("queue")
            if seat and queue:
                at = at if at is not None else cel.last
                call["agent"], call["answered_at"] = seat, at
                segments = [dict(item) for item in call.get("segments") or ()]
                for segment in reversed(segments):
                    if segment.get("queue") == queue:
                        if segment.get("answered_at") is None:
                            entered = float(segment.get("entered") or at)
                            segment.update(agent=seat, answered_at=at, wait_time=max(0.0, at - entered))
                        break
                call["segments"] = segments
        return await self.write(call, source="reconciled", ended=ended)

    async def _backfill(self, now: float, live: Mapping[str, Any]) -> int:
        candidates = [
            cel
            for linkedid, cel in list(self.cel.calls.items())
            if linkedid not in live
            and not linkedid.startswith(NOT_CALLS)
            and linkedid not in self._written
            and cel.ended is not None
            and now - cel.ended > BACKFILL_GRACE_SECONDS
            and cel.started >= self.horizon
        ]
        if not candidates:
            return 0
        async with self._database.session() as session:
            ids = [cel.linkedid for cel in candidates]
            recorded = set(
                (await session.scalars(select(CallRecord.linkedid).where(CallRecord.linkedid.in_(ids)))).all()
            )
            progress = set(
                (await session.scalars(select(CallProgress.linkedid).where(CallProgress.linkedid.in_(ids)))).all()
            )
        written = 0
        for cel in candidates:
            if cel.linkedid in recorded:
                self._written.put(cel.linkedid, True)
                self.cel.forget(cel.linkedid)
                continue
            if cel.linkedid in progress:
                continue
            if await self.write(self._call_from_cel(cel), source="cel", ended=cel.ended):
                written += 1
        return written

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
            call["queue"] = queue
            call["queued_at"] = cel.started
            if seat:
                call["agent"], call["answered_at"] = seat, cel.started
        return call
