"""The engine killed with SIGKILL in the middle of steady load and started again on the same data directory.

Calls keep coming while it is down: Asterisk's dialplan queues them without the IVR (the apology prompt) and
records them itself. Every call is then expected right: answered by the agent whose phone took it, with the talk
time the phones saw, its full recording indexed and audible, and no service record (nobody abandoned).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from callcenter.config import Config
from callcenter_devtools.sandbox import Sandbox
from tests.chaos.rig import CALLER_PORTS, open_rig

CALLS = 45
# The engine dies once this many calls were placed, and stays dead this long.
KILL_AFTER_CALLS = 15
DOWN_S = 8.0


async def test_an_engine_killed_under_load_and_restarted_loses_no_call_record_recording_or_caller(
    chaos_config: Config, chaos_sandbox: Sandbox, tmp_path: Path
) -> None:
    async with open_rig(chaos_config, chaos_sandbox, tmp_path) as rig:
        caller = rig.call("callers", "7701", CALLS, CALLER_PORTS[0])
        await rig.wait_started(KILL_AFTER_CALLS, within=KILL_AFTER_CALLS + 20)
        rig.measure()
        rig.fault_started = time.time()
        rig.engine.kill()
        await asyncio.sleep(DOWN_S)
        rig.engine.start()
        await rig.engine.wait_healthy(30)
        rig.fault_ended = time.time()
        in_flight = rig.in_flight(rig.fault_started)
        await rig.drain()
        assert caller.proc.returncode == 0, caller.output()[-2000:]
        result = await rig.settle()
        live = await rig.live_problems()
        usage = rig.usage_problems()
        phones = rig.phone_problems()
        ivr = await rig.ivr_problems()
    print(f"engine killed at {rig.fault_started:.1f} with {sorted(in_flight)} in flight, back at {rig.fault_ended:.1f}")
    assert in_flight, "the engine was killed with no call in progress"
    assert result.placed == CALLS, result.summary()
    # Every kind of problem at once: a failure shows the whole picture of the fault.
    problems = [*result.problems, *phones, *ivr, *live, *usage]
    assert not problems, "\n".join([result.summary(), *phones, *ivr, *live, *usage])
