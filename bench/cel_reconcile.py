"""CEL reconciliation benchmark: a channel event log of 50,000 finished calls nobody recorded, on SQLite and
PostgreSQL.

Ours is ``CallRecorder.reconcile()`` as the engine runs it: the log read 2 MiB at a time, 500 ids per IN list and
calls per transaction, the position stored with the records. The peer is the same backfill done the way the
recorder did it before issue 15: the whole rest of the file read into memory and every line decoded as JSON, every
event of every call kept, one IN list with every ended call's linkedid (asyncpg refuses more than 32,767 arguments:
on PostgreSQL past that the peer fails, and is reported so), then one transaction per record.

The log is written with the lines of tests/db/test_cel_reconcile_at_scale.py (17 lines per answered queue call, in
the format asterisk-conf/cel_custom.conf gives Asterisk). Each backend gets a fresh, migrated database per run.

Usage: ``.venv/bin/python bench/cel_reconcile.py [--quick] [--calls N] [--only sqlite|postgresql] [--no-peer]
[--json PATH]``. ``--quick`` uses 10,000 calls. PostgreSQL: ``CC_BENCH_POSTGRES_URL`` (default
postgresql+asyncpg://postgres@127.0.0.1:5432/test), in a schema of its own, dropped at the end.
The last line is ``seconds_sqlite=X seconds_postgres=Y``. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from callcenter.bus import Bus  # noqa: E402
from callcenter.db import Database, DatabaseError  # noqa: E402
from callcenter.model import LiveModel  # noqa: E402
from calls.cel import CelCall, parse_line  # noqa: E402
from calls.models import CallProgress, CallRecord  # noqa: E402
from calls.service import BACKFILL_GRACE_SECONDS, CallRecorder  # noqa: E402
from tests.db.test_cel_reconcile_at_scale import end_of_call, write_cel_log  # noqa: E402

PG_URL = os.environ.get("CC_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
TARGET_SECONDS = 10.0
PEER = "before issue 15 (whole file, every event kept, one IN list, one transaction per record)"


def recorder_for(database: Database, log: Path, now: float) -> CallRecorder:
    return CallRecorder(
        database,
        Bus(),
        LiveModel,
        cel_log=log,
        expert_queue="expert",
        reconcile_interval=3600,
        snapshot_interval=3600,
        clock=lambda: now,
    )


async def ours(database: Database, log: Path, now: float) -> dict[str, Any]:
    recorder = recorder_for(database, log, now)
    most = 0
    read_chunk = recorder.cel.read_chunk

    def counted() -> Any:
        nonlocal most
        chunk = read_chunk()
        most = max(most, len(recorder.cel.calls))
        return chunk

    recorder.cel.read_chunk = counted  # type: ignore[method-assign]
    started = time.perf_counter()
    written = await recorder.reconcile()
    seconds = time.perf_counter() - started
    again, read = time.perf_counter(), recorder.cel.bytes_read
    second = await recorder.reconcile()
    return {
        "seconds": seconds,
        "written": written,
        "most_calls_held": most,
        "second_pass_seconds": time.perf_counter() - again,
        "second_pass_bytes_read": recorder.cel.bytes_read - read,
        "second_pass_written": second,
    }


async def peer(database: Database, log: Path, now: float) -> dict[str, Any]:
    """The backfill as calls/service.py and calls/cel.py did it before issue 15."""
    recorder = recorder_for(database, log, now)
    started = time.perf_counter()

    def read_all() -> dict[str, CelCall]:
        calls: dict[str, CelCall] = defaultdict(lambda: CelCall(""))
        data = log.read_bytes()
        for line in data[: data.rfind(b"\n") + 1].splitlines():
            event = parse_line(line)
            if event is None:
                continue
            call = calls.get(event.linkedid)
            if call is None:
                call = calls[event.linkedid] = CelCall(event.linkedid)
            call.events.append(event)
        return calls

    calls = await asyncio.to_thread(read_all)
    events = sum(len(call.events) for call in calls.values())
    ended = [cel for cel in calls.values() if cel.ended is not None and now - cel.ended > BACKFILL_GRACE_SECONDS]
    ids = [cel.linkedid for cel in ended]
    try:
        async with database.session() as session:
            recorded = set(
                (await session.scalars(select(CallRecord.linkedid).where(CallRecord.linkedid.in_(ids)))).all()
            )
            progress = set(
                (await session.scalars(select(CallProgress.linkedid).where(CallProgress.linkedid.in_(ids)))).all()
            )
    except DatabaseError as exc:
        return {
            "seconds": time.perf_counter() - started,
            "failed": f"{type(exc).__name__}: one IN list of {len(ids)} ids ({exc})",
            "events_held": events,
        }
    written = 0
    for cel in ended:
        if cel.linkedid in recorded or cel.linkedid in progress:
            continue
        values = recorder._values(recorder._call_from_cel(cel), source="cel", ended=cel.ended)
        if await recorder._insert(values):
            written += 1
    return {"seconds": time.perf_counter() - started, "written": written, "events_held": events}


@asynccontextmanager
async def fresh(kind: str, directory: Path) -> AsyncIterator[Database]:
    if kind == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{directory / f'bench-{secrets.token_hex(4)}.sqlite3'}")
        await database.open()
        await database.migrate()
        try:
            yield database
        finally:
            await database.close()
        return
    schema = f"bench_cel_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=5)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        database = Database(PG_URL, schema=schema)
        await database.open()
        await database.migrate()
        try:
            yield database
        finally:
            await database.close()
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


async def records(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count(func.distinct(CallRecord.linkedid)))) or 0)


async def run(
    kind: str, label: str, job: Callable[[Database, Path, float], Any], log: Path, now: float, directory: Path
) -> dict[str, Any]:
    async with fresh(kind, directory) as database:
        result: dict[str, Any] = await job(database, log, now)
        result["records"] = await records(database)
    failed = result.get("failed")
    shown = f"FAILS after {result['seconds']:.2f} s: {failed}" if failed else f"{result['seconds']:.2f} s"
    print(f"  {kind:<10} {label:<8} {shown}; {result['records']} records", flush=True)
    return result


async def main_async(args: argparse.Namespace) -> int:
    count = args.calls or (10_000 if args.quick else 50_000)
    kinds = [args.only] if args.only else ["sqlite", "postgresql"]
    results: dict[str, Any] = {"calls": count}
    print(f"CEL reconciliation benchmark: {count} finished calls in the log, none recorded yet")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    print(f"peer: {PEER}")
    with tempfile.TemporaryDirectory(prefix="cc-bench-cel-") as name:
        directory = Path(name)
        log = directory / "cel.jsonl"
        write_cel_log(log, range(count))
        now = end_of_call(count - 1) + 600
        print(f"log: {log.stat().st_size / 2**20:.0f} MiB, {count * 17} lines")
        for kind in kinds:
            results[kind] = {"ours": await run(kind, "ours", ours, log, now, directory)}
            if not args.no_peer:
                results[kind]["peer"] = await run(kind, "peer", peer, log, now, directory)
    results["load_average_end"] = os.getloadavg()[0]
    print(f"load average {results['load_average_end']:.2f} at the end (other processes share these CPUs)")
    for kind in kinds:
        mine = results[kind]["ours"]
        print(
            f"{kind}: ours held at most {mine['most_calls_held']} calls; a second pass took "
            f"{mine['second_pass_seconds']:.3f} s, read {mine['second_pass_bytes_read']} bytes and wrote "
            f"{mine['second_pass_written']}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    met = all(results[kind]["ours"]["seconds"] < TARGET_SECONDS for kind in kinds)
    print(f"\ntarget: under {TARGET_SECONDS:.0f} s on each backend: {'met' if met else 'NOT met'}")
    seconds = {
        kind: results.get(kind, {}).get("ours", {}).get("seconds", float("nan")) for kind in ("sqlite", "postgresql")
    }
    print(f"seconds_sqlite={seconds['sqlite']:.2f} seconds_postgres={seconds['postgresql']:.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 calls instead of 50,000")
    parser.add_argument("--calls", type=int, default=0, help="calls in the log (overrides --quick)")
    parser.add_argument("--only", choices=["sqlite", "postgresql"], default=None, help="run one backend only")
    parser.add_argument("--no-peer", action="store_true", help="run ours only")
    parser.add_argument("--json", default=None, help="also write the results here")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
