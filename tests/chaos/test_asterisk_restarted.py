"""Asterisk restarted under steady load (the sandbox stopped with `core stop now` and started again).

Calls in progress are cut by Asterisk itself, and callers cannot reach a PBX that is down, so the load runs in two
waves: the first is placed before the restart (the calls still talking are cut), the second once Asterisk and
the engine's AMI connection are back. What is asserted:
- a call of the first wave that the restart cut has exactly one record; an agent had answered it (every call is
  answered within a second or two under this load), so the record is `answered` by that agent with the talk time
  the phones saw up to the cut, its recording is indexed and audible, and it leaves no service record (the caller
  did not abandon: the PBX hung up);
- every other call, before and after the restart, ended well on the phones and is right in every way the other
  chaos tests check;
- queue membership is back (Asterisk's persistent members and the engine's seats), and the live model matches.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from callcenter.config import Config
from callcenter_devtools.chaos import queue_members, restart_asterisk
from callcenter_devtools.sandbox import Sandbox
from tests.chaos.rig import AGENTS, CALLER_PORTS, open_rig

FIRST_WAVE = 20
SECOND_WAVE = 20


async def test_an_asterisk_restarted_under_load_cuts_only_the_calls_in_progress_and_each_has_one_right_record(
    chaos_config: Config, chaos_sandbox: Sandbox, tmp_path: Path
) -> None:
    general = chaos_config.queues.general
    members = {f"PJSIP/{ext}" for ext in AGENTS}
    async with open_rig(chaos_config, chaos_sandbox, tmp_path) as rig:
        first = rig.call("callers-1", "7703", FIRST_WAVE, CALLER_PORTS[0])
        await rig.wait_started(FIRST_WAVE, within=FIRST_WAVE + 20)
        # The last call of the wave is talking to an agent by now.
        await asyncio.sleep(3.0)
        rig.measure()
        rig.fault_started = time.time()
        in_flight = rig.in_flight(rig.fault_started)
        await asyncio.to_thread(restart_asterisk, chaos_sandbox)
        await rig.engine.wait_healthy(60)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and queue_members(chaos_sandbox, general) != members:
            await asyncio.sleep(0.5)
        assert queue_members(chaos_sandbox, general) == members
        rig.fault_ended = time.time()
        rig.call("callers-2", "7704", SECOND_WAVE, CALLER_PORTS[1])
        await rig.drain()
        result = await rig.settle(may_be_cut=frozenset(in_flight))
        live = await rig.live_problems()
        usage = rig.usage_problems()
        phones = rig.phone_problems()
        ivr = await rig.ivr_problems()
        first_output = first.output()
    traces = rig.traces()
    cut = sorted(number for number in in_flight if traces[number].done is None)
    print(f"Asterisk restarted {rig.fault_started:.1f}-{rig.fault_ended:.1f}; in flight {sorted(in_flight)}, cut {cut}")
    assert in_flight, "Asterisk was restarted with no call in progress"
    second = [trace for number, trace in traces.items() if number.startswith("7704")]
    assert len(second) == SECOND_WAVE
    assert all(trace.done is not None for trace in second), first_output[-1500:]
    assert result.placed == FIRST_WAVE + SECOND_WAVE, result.summary()
    # Every kind of problem at once: a failure shows the whole picture of the fault.
    problems = [*result.problems, *phones, *ivr, *live, *usage]
    assert not problems, "\n".join([result.summary(), *phones, *ivr, *live, *usage])
