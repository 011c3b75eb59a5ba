"""The database stopped for 30 s under steady load and started again: a PostgreSQL of the test's own
(callcenter_devtools.pgsandbox, never the machine's own on 5432), stopped with ``pg_ctl stop -m fast`` (every
connection cut) in the middle of the load.

Nothing on the call path waits for the database: callers are queued (with the priority the memory of tiers gives),
answered and recorded by Asterisk as before; the call records, snapshots and service records that cannot be written
wait in the journals of the data directory and are written once when the database is back. Every call is then
expected right in every way the other chaos tests check (one record with the outcome, agent and talk time the
phones saw, an audible indexed recording, no spurious service record), and the engine's log says once that the
database went away and once that it is back.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from callcenter.config import Config
from callcenter_devtools.pgsandbox import PgSandbox, PgSandboxError
from callcenter_devtools.sandbox import Sandbox
from tests.chaos.conftest import CALLER_PORTS, open_rig

CALLS = 45
# The database stops once this many calls were placed, and stays down this long.
STOP_AFTER_CALLS = 12
DOWN_S = 30.0


def _postgres() -> PgSandbox:
    try:
        return PgSandbox()
    except PgSandboxError as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"a PostgreSQL of the test's own is required in CI: {exc}")
        pytest.skip(str(exc))


async def test_a_database_stopped_under_load_loses_no_call_record_recording_or_caller(
    chaos_config: Config, chaos_sandbox: Sandbox, tmp_path: Path
) -> None:
    postgres = _postgres()
    try:
        await asyncio.to_thread(postgres.start)
        config = chaos_config.model_copy(
            update={"database": chaos_config.database.model_copy(update={"url": postgres.url})}
        )
        async with open_rig(config, chaos_sandbox, tmp_path) as rig:
            caller = rig.call("callers", "7705", CALLS, CALLER_PORTS[0])
            await rig.wait_started(STOP_AFTER_CALLS, within=STOP_AFTER_CALLS + 20)
            rig.measure()
            rig.fault_started = time.time()
            await asyncio.to_thread(postgres.stop)
            await asyncio.sleep(DOWN_S)
            await asyncio.to_thread(postgres.start)
            rig.fault_ended = time.time()
            in_flight = rig.in_flight(rig.fault_started)
            await rig.drain()
            assert caller.proc.returncode == 0, caller.output()[-2000:]
            result = await rig.settle()
            live = await rig.live_problems()
            usage = rig.usage_problems()
            journals = sorted(path.name for path in (rig.config.data_dir).rglob("*.jsonl") if path.stat().st_size)
            gone = rig.engine.log_lines("database unavailable")
            back = rig.engine.log_lines("database back")
            failing = rig.engine.log_lines("subscriber", "failed")
    finally:
        await asyncio.to_thread(postgres.close)
    placed_during = [
        number
        for number, trace in rig.traces().items()
        if trace.started is not None and rig.fault_started <= trace.started <= rig.fault_ended
    ]
    print(
        f"database down {rig.fault_started:.1f}-{rig.fault_ended:.1f}: {sorted(in_flight)} in flight, "
        f"{len(placed_during)} placed meanwhile"
    )
    assert in_flight, "the database was stopped with no call in progress"
    assert placed_during, "no call was placed while the database was down"
    assert result.placed == CALLS, result.summary()
    assert journals == [], f"journals still hold entries: {journals}"
    assert len(gone) == 1, gone
    assert len(back) == 1, back
    # Every kind of problem at once: a failure shows the whole picture of the fault.
    problems = [*result.problems, *live, *usage, *(f"log: {line}" for line in failing)]
    assert not problems, "\n".join([result.summary(), *live, *usage, *failing])
