"""The engine's AMI connection severed under steady load (a TCP proxy of the test's between the engine and
Asterisk's AMI port closes both ends and refuses new connections for a while), then let through again.

Asterisk and the FastAGI server are untouched: calls keep flowing, and the engine must rebuild its live model
after it reconnects and still write every call right: answered by the agent whose phone took it, with the talk
time the phones saw, its full recording indexed and audible, and no service record.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from callcenter.config import Config
from callcenter_devtools.chaos import TcpProxy
from callcenter_devtools.sandbox import Sandbox
from tests.chaos.rig import CALLER_PORTS, open_rig

CALLS = 45
CUT_AFTER_CALLS = 15
CUT_S = 8.0


async def test_an_ami_connection_cut_under_load_loses_no_call_record_recording_or_caller(
    chaos_config: Config, chaos_sandbox: Sandbox, tmp_path: Path
) -> None:
    proxy = TcpProxy((chaos_config.ami.host, chaos_config.ami.port))
    port = proxy.start()
    try:
        async with open_rig(chaos_config, chaos_sandbox, tmp_path, ami_port=port) as rig:
            caller = rig.call("callers", "7702", CALLS, CALLER_PORTS[0])
            await rig.wait_started(CUT_AFTER_CALLS, within=CUT_AFTER_CALLS + 20)
            rig.measure()
            rig.fault_started = time.time()
            proxy.cut()
            await asyncio.sleep(1.0)
            assert not await rig.engine.healthy(), "the engine still says its AMI is connected"
            await asyncio.sleep(CUT_S - 1.0)
            proxy.restore()
            await rig.engine.wait_healthy(45)
            rig.fault_ended = time.time()
            in_flight = rig.in_flight(rig.fault_started)
            await rig.drain()
            assert caller.proc.returncode == 0, caller.output()[-2000:]
            result = await rig.settle()
            live = await rig.live_problems()
            usage = rig.usage_problems()
            phones = rig.phone_problems()
            ivr = await rig.ivr_problems()
    finally:
        proxy.close()
    print(f"AMI cut at {rig.fault_started:.1f} with {sorted(in_flight)} in flight, back at {rig.fault_ended:.1f}")
    assert proxy.accepted >= 2, "the engine never reconnected through the proxy"
    assert in_flight, "the AMI was cut with no call in progress"
    assert result.placed == CALLS, result.summary()
    # Every kind of problem at once: a failure shows the whole picture of the fault.
    problems = [*result.problems, *phones, *ivr, *live, *usage]
    assert not problems, "\n".join([result.summary(), *phones, *ivr, *live, *usage])
