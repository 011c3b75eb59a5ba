"""bench/ivr.py's fairness check: the hand-written calls do exactly the engine's work, and a difference is caught."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ivr_flows.events import IvrEnded

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ivr.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_ivr", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ivr"] = module
    spec.loader.exec_module(module)
    return module


bench = _load()


@pytest.mark.parametrize("scenario", bench.SCENARIOS, ids=lambda scenario: scenario.key)
async def test_the_hand_written_calls_leave_the_engines_commands_and_events(scenario: Any, tmp_path: Path) -> None:
    kit = bench.make_kit(scenario, tmp_path)
    runner = bench.Runner("direct", kit, scenario, bench.HAND[scenario.key](kit), bench.BARE[scenario.key](kit))
    commands, steps = await bench.check_same_output(runner)
    hand, hand_events = await runner.output("hand")
    engine, engine_events = await runner.output("engine")
    assert hand == engine
    assert len(hand) == commands
    assert [kind for kind, _data in engine_events] == ["IvrStarted", "IvrEnded"]
    ended = engine_events[-1][1]
    assert ended["outcome"] == str(scenario.outcome)
    assert len(ended["path"]) == steps
    assert hand_events == engine_events


async def test_a_hand_written_call_that_leaves_another_path_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = bench.PRODUCT
    kit = bench.make_kit(scenario, tmp_path)
    publish = kit.bus.publish

    def without_last_step(event: object) -> Any:
        if isinstance(event, IvrEnded) and event.path:
            event = dataclasses.replace(event, path=event.path[:-1])
        return publish(event)

    async def sloppy(session: Any) -> None:
        # The same commands as the honest hand-written call, but its path misses the last step.
        with monkeypatch.context() as patch:
            patch.setattr(kit.bus, "publish", without_last_step)
            await bench.HAND[scenario.key](kit)(session)

    runner = bench.Runner("direct", kit, scenario, sloppy, bench.BARE[scenario.key](kit))
    with pytest.raises(SystemExit, match="other events than the engine"):
        await bench.check_same_output(runner)
