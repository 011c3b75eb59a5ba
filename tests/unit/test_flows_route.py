"""The FastAGI `ivr` route: flows checked when it is made, calls run, reloads that never install broken flows."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from callcenter import dialplan
from callcenter.agi.exceptions import AgiConnectionLost
from callcenter.bus import Bus, Event
from callcenter.config import AsteriskConfig, Config, QueuesConfig
from ivr_flows.ports import FakeClock, in_memory_ports
from ivr_flows.prompts import DryPrompts, TtsPrompts, prompt_name, prompt_path
from ivr_flows.route import SHIPPED_FLOWS, FlowRoute, build_ivr_route
from ivr_flows.simulator import ScriptedSession
from ivr_flows.steps import Outcome
from ivr_flows.validator import UNKNOWN_NODE, FlowValidationError, check_path
from tests.conftest import in_ci

OPEN = datetime(2026, 11, 23, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
QUEUES = {"general": "support", "expert": "expert"}


def route_for(directory: Path, **kw: object) -> FlowRoute:
    return FlowRoute.from_directory(
        directory,
        ports=kw.pop("ports", None) or in_memory_ports(),  # type: ignore[arg-type]
        bus=kw.pop("bus", None) or Bus(),  # type: ignore[arg-type]
        prompts=kw.pop("prompts", None) or DryPrompts(),  # type: ignore[arg-type]
        queues=QUEUES,
        clock=FakeClock(OPEN),
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def flows_dir(tmp_path: Path) -> Path:
    target = tmp_path / "flows"
    shutil.copytree(SHIPPED_FLOWS, target)
    return target


async def test_the_route_runs_a_call_and_tells_the_dialplan(flows_dir: Path) -> None:
    events: list[Event] = []
    bus = Bus()
    bus.subscribe("ivr.started", events.append)
    route = route_for(flows_dir, bus=bus)
    session = ScriptedSession(["7"], caller="5550123", caller_name="Dana Caller")
    await route(session)  # type: ignore[arg-type]
    assert session.variables_set[dialplan.VAR_ACTION] == dialplan.ACTION_QUEUE
    assert session.variables_set[dialplan.VAR_IVR_CHOICE] == "suggestion"
    (started,) = events
    assert (started.data["caller_number"], started.data["caller_name"], started.data["did"]) == (
        "5550123",
        "Dana Caller",
        "4000",
    )


def test_broken_flows_stop_the_route_from_being_made(tmp_path: Path) -> None:
    (tmp_path / "main.yaml").write_text("name: main\nnodes:\n  a: {goto: nowhere}\n", encoding="utf-8")
    with pytest.raises(FlowValidationError) as caught:
        route_for(tmp_path)
    assert UNKNOWN_NODE in {issue.kind for issue in caught.value.issues}


def test_parsed_flows_are_checked_again_by_the_route(tmp_path: Path) -> None:
    (tmp_path / "main.yaml").write_text("name: main\nnodes:\n  a: {goto: nowhere}\n", encoding="utf-8")
    flows = check_path(tmp_path).flows
    with pytest.raises(FlowValidationError, match="unknown node 'nowhere'"):
        FlowRoute(flows, ports=in_memory_ports(), bus=Bus(), prompts=DryPrompts(), queues=QUEUES)


def test_the_entry_flow_must_exist(flows_dir: Path) -> None:
    with pytest.raises(FlowValidationError, match="no flow 'reception'"):
        route_for(flows_dir, entry="reception")


async def test_a_lost_connection_is_raised_to_the_server(flows_dir: Path) -> None:
    class LosingSession(ScriptedSession):
        async def answer(self) -> None:
            raise AgiConnectionLost("socket closed")

    with pytest.raises(AgiConnectionLost):
        await route_for(flows_dir)(LosingSession([]))  # type: ignore[arg-type]


def test_a_broken_reload_keeps_the_running_flows(flows_dir: Path) -> None:
    route = route_for(flows_dir)
    before = route.flows
    main = flows_dir / "main.yaml"
    main.write_text(main.read_text(encoding="utf-8").replace("on_fail: agent_fallback", "on_fail: nowhere", 1))
    problems = route.reload()
    assert [issue.kind for issue in problems] == [UNKNOWN_NODE]
    assert str(problems[0]).startswith(f"{main}:")
    assert route.flows is before


async def test_a_good_reload_serves_new_calls_and_lets_running_ones_finish(flows_dir: Path) -> None:
    route = route_for(flows_dir)
    main = flows_dir / "main.yaml"
    changed = main.read_text(encoding="utf-8").replace("reason: fault_consultation", "reason: fault_hotline")

    class ReloadingSession(ScriptedSession):
        async def get_option(self, filename: str, escape_digits: str, timeout_ms: int = 0):  # type: ignore[no-untyped-def]
            main.write_text(changed, encoding="utf-8")
            assert route.reload() == []
            return await super().get_option(filename, escape_digits, timeout_ms)

    running = ReloadingSession(["", "2"])
    await route(running)  # type: ignore[arg-type]
    assert running.variables_set[dialplan.VAR_IVR_CHOICE] == "fault_consultation"
    later = ScriptedSession(["2"])
    await route(later)  # type: ignore[arg-type]
    assert later.variables_set[dialplan.VAR_IVR_CHOICE] == "fault_hotline"


async def test_a_changed_prompt_text_is_synthesized_again_after_reload(tmp_path: Path) -> None:
    if (shutil.which("espeak-ng") is None or shutil.which("sox") is None) and not in_ci():
        pytest.skip("needs espeak-ng and sox (installed by scripts/setup.sh; CI fails instead of skipping)")
    flows = tmp_path / "flows"
    flows.mkdir()
    text = "name: main\nprompts:\n  hello: {en: Hello there.}\nnodes:\n  start:\n    - play: hello\n    - hangup\n"
    (flows / "main.yaml").write_text(text, encoding="utf-8")
    sounds = tmp_path / "sounds"
    route = route_for(flows, prompts=TtsPrompts(sounds))
    first = await route.prepare()
    assert first is not None
    assert (first.made, first.kept) == (1, 0)
    again = await route.prepare()
    assert again is not None
    assert (again.made, again.kept) == (0, 1)
    (flows / "main.yaml").write_text(text.replace("Hello there.", "Hello again."), encoding="utf-8")
    assert route.reload() == []
    session = ScriptedSession([])
    result = await route.run(session)  # type: ignore[arg-type]
    assert result.outcome is Outcome.HANGUP
    (played,) = [name for _verb, name in session.played]
    assert played == prompt_name("hello", "en", "Hello again.")
    assert prompt_path(sounds, played).is_file()
    assert prompt_path(sounds, prompt_name("hello", "en", "Hello there.")).is_file()


def test_the_composition_root_builds_the_route_from_the_config(tmp_path: Path) -> None:
    config = Config(
        asterisk=AsteriskConfig(sounds_dir=tmp_path),
        queues=QueuesConfig(general="helpdesk", expert="specialists"),
    )
    route = build_ivr_route(config, bus=Bus(), ports=in_memory_ports())
    assert set(route.flows.flows) == {"main", "after_hours", "holiday"}
    assert route.engine.entry == "main"
