"""Python bytecodes per call of the flow engine and of the hand-written calls of bench/ivr.py, by function.

A deterministic companion to ``bench/ivr.py``, whose CPU times move with the load of a shared machine: it runs
one call of each arm (direct mode, after a few warm-up calls) under ``sys.settrace`` with opcode events, counts
the bytecodes executed in each function, and prints the functions whose counts differ between the engine and the
hand-written call, the largest difference first. The totals say how much more Python the engine runs per call;
the rows say where. Counts, not time: a bytecode that calls into C (a dict lookup, a socket write) counts one.

Usage: ``.venv/bin/python bench/ivr_opcodes.py [product_then_agent|after_hours_complaint] [--peer bare]
[--lines FUNCTION]`` (``--lines``: count that function's bytecodes line by line).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ivr

WARMUP = 5


def count(scenario: ivr.Scenario, arm: str, lines: str | None) -> Counter[str]:
    counts: Counter[str] = Counter()

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            where = f"{Path(code.co_filename).name}:{code.co_name}"
            counts[f"{where}:{frame.f_lineno}" if code.co_name == lines else where] += 1
        return tracer

    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="cc-bench-ivr-ops-") as tmp:
            kit = ivr.make_kit(scenario, Path(tmp))
            runner = ivr.Runner("direct", kit, scenario, ivr.HAND[scenario.key](kit), ivr.BARE[scenario.key](kit))
            for _ in range(WARMUP):
                await runner.one(arm, ivr.FakeAsterisk(scenario.keys), [0.0])
            sys.settrace(tracer)
            try:
                await runner.one(arm, ivr.FakeAsterisk(scenario.keys), [0.0])
            finally:
                sys.settrace(None)

    asyncio.run(main())
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("scenario", nargs="?", default=ivr.PRODUCT.key, choices=[s.key for s in ivr.SCENARIOS])
    parser.add_argument("--peer", default="hand", choices=["hand", "bare"])
    parser.add_argument("--lines", metavar="FUNCTION", help="count this function's bytecodes line by line")
    args = parser.parse_args(argv)
    scenario = next(s for s in ivr.SCENARIOS if s.key == args.scenario)
    peer = count(scenario, args.peer, args.lines)
    engine = count(scenario, "engine", args.lines)
    total_peer, total_engine = sum(peer.values()), sum(engine.values())
    extra = (total_engine - total_peer) / total_peer * 100
    print(f"{scenario.key}: bytecodes per call, {args.peer} {total_peer}, engine {total_engine} ({extra:+.1f}%)")
    print(f"{'engine - ' + args.peer:>14} {args.peer:>8} {'engine':>8}  function")
    for name in sorted(set(peer) | set(engine), key=lambda key: peer[key] - engine[key]):
        if peer[name] != engine[name]:
            print(f"{engine[name] - peer[name]:>+14d} {peer[name]:>8d} {engine[name]:>8d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
