"""QA search benchmark: the recordings index with 1M rows on SQLite and on PostgreSQL.

Seeds the ``recordings`` table (through the real migrations, so the real indexes, FTS5 table and triggers,
and pg_trgm indexes are in place) with Core bulk inserts of generated rows: a year of calls by 60 agents in
four queues, 200k customers with repeat calls, about one row in eight described or tagged. Then it runs a mix
of searches a QA desk makes, through ``RecordingIndex.search`` (the count and the page, as the API does),
and reports latency percentiles per query type and overall.

The peer is the same search without the text indexes: ``LIKE '%...%'`` over the base columns, as a schema
without FTS5/pg_trgm would do it, run for the text and partial-number queries on the same data.

Usage: ``.venv/bin/python bench/recording_search.py [--quick] [--rows N] [--json PATH] [--sqlite-file PATH]
[--postgres-schema NAME] [--only sqlite|postgresql]`` (``--sqlite-file`` and ``--postgres-schema`` keep the
seeded database for the next run, which then only searches). ``--quick`` seeds 100k rows. PostgreSQL:
``CC_BENCH_POSTGRES_URL`` (default postgresql+asyncpg://postgres@127.0.0.1:5432/test), in a schema of its own
that is dropped at the end unless named.
The last line is ``p95_ms_sqlite=X p95_ms_postgres=Y``. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from sqlalchemy import func, insert, or_, select, text  # noqa: E402

from callcenter.config import RecordingsConfig  # noqa: E402
from callcenter.db import Database  # noqa: E402
from recordings.index import RecordingIndex  # noqa: E402
from recordings.models import Recording  # noqa: E402
from recordings.schemas import SearchQuery  # noqa: E402
from recordings.storage import new_recording_id  # noqa: E402
from recordings.text import search_text_of  # noqa: E402

PG_URL = os.environ.get("CC_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
TARGET_MS = {"sqlite": 100.0, "postgresql": 50.0}
BATCH = 5000
SEED = 20261123

AGENTS = [f"PJSIP/{1001 + n}" for n in range(60)]
QUEUES = ["support", "expert", "sales", "billing"]
DIDS = ["4000", "4001", "4002", "4003"]
SERVICE_TYPES = ["complaint", "repair", "installation", "consultation", "suggestion"]
PHRASES = [
    "customer asked for a refund of the washing machine",
    "complaint about a late delivery",
    "installation appointment moved to next week",
    "repair of the air conditioner, second visit",
    "caller angry about the invoice",
    "product information on the water heater",
    "escalated to an expert",
    "warranty question for the dryer",
    "callback promised before friday",
    "card payment taken, pci pause used",
    "suggestion about the opening hours",
    "wrong number",
]
TAGS = ["vip", "refund", "complaint", "escalated", "pci", "callback", "training", "good-example", "angry", "legal"]


@dataclass
class Dataset:
    now: datetime
    customers: list[str]
    rows: int


def _customer_numbers(rng: random.Random, count: int) -> list[str]:
    return [f"+861{rng.randrange(30, 90)}{rng.randrange(10**8):08d}" for _ in range(count)]


def _row(rng: random.Random, data: Dataset, pk: int) -> dict[str, Any]:
    # Rows arrive in call order, as in production (a row is written when its recording starts): spread
    # evenly over the last year, oldest first, with some jitter.
    span = 365 * 86400
    offset = span * (pk - 1) / data.rows + rng.uniform(0, span / data.rows)
    started = data.now - timedelta(seconds=span) + timedelta(seconds=offset)
    roll = rng.random()
    kind = "full" if roll < 0.85 else "on_demand" if roll < 0.95 else "voicemail"
    customer = rng.choice(data.customers)
    agent_index = rng.randrange(len(AGENTS))
    outbound = kind != "voicemail" and rng.random() < 0.2
    duration = round(min(7200.0, rng.lognormvariate(5.2, 0.8)), 3)
    description = ""
    tags: list[str] = []
    # Agents describe some calls (most on-demand recordings, a few others); QA tags the calls it reviews.
    if rng.random() < (0.6 if kind == "on_demand" else 0.03):
        description = rng.choice(PHRASES)
        if rng.random() < 0.3:
            description += "; " + rng.choice(PHRASES)
    if rng.random() < 0.04:
        tags = rng.sample(TAGS, rng.randint(1, 3))
    agent = None if kind == "voicemail" else AGENTS[agent_index]
    return {
        "pk": pk,
        "id": new_recording_id(),
        "kind": kind,
        "status": "complete",
        "file_path": f"{kind}/{started:%Y/%m/%d}/x.wav",
        "linkedid": f"{started.timestamp():.0f}.{pk}",
        "uniqueid": f"{started.timestamp():.0f}.{pk}",
        "agent_interface": agent,
        "agent_user_id": None if agent is None else 100 + agent_index,
        "queue": None if kind == "voicemail" else rng.choice(QUEUES),
        "started_at": started,
        "ended_at": started + timedelta(seconds=duration),
        "duration": duration,
        "caller_number": agent.split("/")[1] if outbound and agent else customer,
        "called_number": customer if outbound else rng.choice(DIDS),
        "direction": "outbound" if outbound else "inbound",
        "did": None if outbound else rng.choice(DIDS),
        "description": description,
        "tags": json.dumps(tags),
        "search_text": search_text_of(description, tags),
        "service_record_id": pk if rng.random() < 0.6 else None,
        "service_record_type": rng.choice(SERVICE_TYPES) if rng.random() < 0.6 else None,
        "intent": rng.choice(SERVICE_TYPES) if kind == "voicemail" else None,
        "size": int(duration * 16000),
        "sha256": "0" * 64,
        "paused_intervals": "[]",
        "erased_at": None,
        "erasure_id": None,
    }


async def seed(database: Database, data: Dataset) -> float:
    rng = random.Random(SEED)
    began = time.perf_counter()
    statement = insert(Recording.__table__)
    pk = 0
    while pk < data.rows:
        rows = [_row(rng, data, pk + n + 1) for n in range(min(BATCH, data.rows - pk))]
        async with database.engine.begin() as connection:
            await connection.execute(statement, rows)
        pk += len(rows)
        if pk % (BATCH * 20) == 0:
            print(f"  {database.dialect}: {pk} rows", flush=True)
    if database.dialect == "sqlite":
        async with database.engine.begin() as connection:
            await connection.execute(text("ANALYZE"))
    else:
        autocommit = database.engine.execution_options(isolation_level="AUTOCOMMIT")
        async with autocommit.connect() as connection:
            # The word table too: autovacuum would get there, but not before the first searches.
            await connection.execute(text("VACUUM ANALYZE recordings"))
            await connection.execute(text("VACUUM ANALYZE fts_recordings"))
    return time.perf_counter() - began


def query_mix(rng: random.Random, data: Dataset) -> list[tuple[str, dict[str, Any]]]:
    """One round of the searches a QA desk makes, with fresh parameters."""
    now = data.now
    day = now - timedelta(days=rng.randrange(1, 300))
    customer = rng.choice(data.customers)
    return [
        ("latest", {}),
        ("last_7_days", {"since": now - timedelta(days=7)}),
        ("agent_30_days", {"agent": rng.choice(AGENTS), "since": now - timedelta(days=30)}),
        ("agent_any_time", {"agent": rng.choice(AGENTS)}),
        ("queue_kind_day", {"queue": rng.choice(QUEUES), "kind": "full", "since": day, "until": day + timedelta(1)}),
        ("number_exact", {"number": customer}),
        ("number_partial", {"number": customer[-6:], "number_match": "partial"}),
        ("text_word", {"q": rng.choice(["refund", "invoice", "warranty", "delivery", "escalated"])}),
        ("text_words_90_days", {"q": "air conditioner", "since": now - timedelta(days=90)}),
        ("tag", {"q": rng.choice(TAGS)}),
        ("long_calls", {"min_duration": 1800, "sort": "duration"}),
        (
            "complaints_inbound",
            {"service_record_type": "complaint", "direction": "inbound", "since": now - timedelta(days=30)},
        ),
        ("voicemail_30_days", {"kind": "voicemail", "since": now - timedelta(days=30)}),
        ("agent_text", {"agent": rng.choice(AGENTS), "q": "complaint"}),
        ("page_5", {"since": now - timedelta(days=30), "offset": 200}),
    ]


@dataclass
class Timings:
    by_type: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, ms: float) -> None:
        self.by_type.setdefault(name, []).append(ms)

    @property
    def all(self) -> list[float]:
        return [value for values in self.by_type.values() for value in values]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def run_queries(index: RecordingIndex, data: Dataset, rounds: int) -> tuple[Timings, int]:
    rng = random.Random(SEED + 1)
    timings = Timings()
    warm = query_mix(rng, data)
    for _name, params in warm:
        await index.search(SearchQuery(**params))
    cursor_checks = 0
    for _ in range(rounds):
        for name, params in query_mix(rng, data):
            began = time.perf_counter()
            page = await index.search(SearchQuery(**params))
            timings.add(name, (time.perf_counter() - began) * 1000)
            if name == "last_7_days" and page.next_cursor:
                began = time.perf_counter()
                await index.search(SearchQuery(**params, cursor=page.next_cursor))
                timings.add("cursor_next_page", (time.perf_counter() - began) * 1000)
                cursor_checks += 1
    return timings, cursor_checks


async def run_peer(database: Database, data: Dataset, rounds: int) -> list[float]:
    """The text and partial-number searches as plain LIKE scans (no FTS5, no trigram index)."""
    rng = random.Random(SEED + 2)
    times: list[float] = []
    for _ in range(rounds):
        word = rng.choice(["refund", "invoice", "warranty", "delivery", "escalated"])
        digits = rng.choice(data.customers)[-6:]
        for condition in (
            Recording.search_text.like(f"%{word}%"),
            or_(Recording.caller_number.like(f"%{digits}%"), Recording.called_number.like(f"%{digits}%")),
        ):
            began = time.perf_counter()
            async with database.session() as session:
                await session.scalar(select(func.count()).select_from(Recording).where(condition))
                await session.execute(
                    select(Recording).where(condition).order_by(Recording.started_at.desc()).limit(50)
                )
            times.append((time.perf_counter() - began) * 1000)
    return times


def report(label: str, timings: Timings) -> float:
    print(f"\n{label}: latency per search (count + page), ms")
    print(f"  {'query':<22} {'n':>4} {'p50':>8} {'p95':>8} {'max':>8}")
    for name, values in timings.by_type.items():
        print(
            f"  {name:<22} {len(values):>4} {percentile(values, 0.5):>8.1f} "
            f"{percentile(values, 0.95):>8.1f} {max(values):>8.1f}"
        )
    overall = timings.all
    p95 = percentile(overall, 0.95)
    print(f"  {'ALL':<22} {len(overall):>4} {percentile(overall, 0.5):>8.1f} {p95:>8.1f} {max(overall):>8.1f}")
    return p95


async def bench_backend(
    label: str, make: Callable[[], Database], data: Dataset, rounds: int, results: dict[str, Any]
) -> float:
    database = make()
    await database.open()
    try:
        await database.migrate()
        async with database.session() as session:
            present = int(await session.scalar(select(func.count()).select_from(Recording)) or 0)
        if present == data.rows:
            seconds = 0.0
            print(f"{label}: reusing {present} rows seeded earlier", flush=True)
        else:
            if present:
                raise SystemExit(f"{label}: the database holds {present} recordings, not {data.rows}; use a new file")
            seconds = await seed(database, data)
            print(f"{label}: seeded {data.rows} rows in {seconds:.1f} s", flush=True)
        timings, _ = await run_queries(RecordingIndex(database, RecordingsConfig()), data, rounds)
        p95 = report(label, timings)
        peer = await run_peer(database, data, max(3, rounds // 4))
        peer_p95 = percentile(peer, 0.95)
        ours_text = [value for name in ("text_word", "number_partial") for value in timings.by_type.get(name, [])]
        ratio = peer_p95 / percentile(ours_text, 0.95)
        print(
            f"  peer (LIKE scan, no text index): text/partial-number p95 {peer_p95:.1f} ms; "
            f"ours {percentile(ours_text, 0.95):.1f} ms ({ratio:.1f}x faster)"
        )
        results[label] = {
            "seed_seconds": seconds,
            "p95_ms": p95,
            "peer_p95_ms": peer_p95,
            "by_type": {
                name: {"p50": percentile(v, 0.5), "p95": percentile(v, 0.95)} for name, v in timings.by_type.items()
            },
        }
        return p95
    finally:
        await database.close()


async def main_async(args: argparse.Namespace) -> int:
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    rounds = args.rounds or (20 if args.quick else 40)
    rng = random.Random(SEED)
    data = Dataset(now=datetime(2026, 11, 23, 12, 0, tzinfo=UTC), customers=_customer_numbers(rng, 200_000), rows=rows)
    results: dict[str, Any] = {"rows": rows, "rounds": rounds}
    print(f"recordings search benchmark: {rows} rows, {rounds} rounds of {len(query_mix(rng, data))} searches")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")

    p95_sqlite = p95_pg = float("nan")
    if args.only in (None, "sqlite"):
        if args.sqlite_file:
            sqlite_url = f"sqlite+aiosqlite:///{Path(args.sqlite_file).resolve()}"
            p95_sqlite = await bench_backend("sqlite", lambda: Database(sqlite_url), data, rounds, results)
        else:
            with tempfile.TemporaryDirectory(prefix="cc-bench-search-") as directory:
                sqlite_url = f"sqlite+aiosqlite:///{Path(directory) / 'bench.sqlite3'}"
                p95_sqlite = await bench_backend("sqlite", lambda: Database(sqlite_url), data, rounds, results)

    if args.only in (None, "postgresql"):
        keep = args.postgres_schema is not None
        schema = args.postgres_schema or f"bench_recordings_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=5)
        try:
            await admin.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            p95_pg = await bench_backend("postgresql", lambda: Database(PG_URL, schema=schema), data, rounds, results)
        finally:
            if not keep:
                await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await admin.close()

    results["load_average_end"] = os.getloadavg()[0]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"load average {results['load_average_end']:.2f} at the end (other processes share these CPUs)")
    verdict = all(results[k]["p95_ms"] < TARGET_MS[k] for k in TARGET_MS if k in results)
    print(
        f"\ntargets: p95 < {TARGET_MS['sqlite']:.0f} ms SQLite, < {TARGET_MS['postgresql']:.0f} ms PostgreSQL: "
        f"{'met' if verdict else 'NOT met'}"
    )
    print(f"p95_ms_sqlite={p95_sqlite:.1f} p95_ms_postgres={p95_pg:.1f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k rows instead of 1M")
    parser.add_argument("--rows", type=int, default=0, help="rows to seed (overrides --quick)")
    parser.add_argument("--rounds", type=int, default=0, help="rounds of the query mix")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument(
        "--sqlite-file", default=None, help="seed this SQLite file once and keep it; later runs reuse it"
    )
    parser.add_argument(
        "--postgres-schema",
        default=None,
        help="seed this PostgreSQL schema once and keep it (drop it yourself); later runs reuse it",
    )
    parser.add_argument("--only", choices=["sqlite", "postgresql"], default=None, help="run one engine only")
    args = parser.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
