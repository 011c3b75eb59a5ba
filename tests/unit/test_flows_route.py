"""The FastAGI `ivr` route: flows checked when it is made, calls run, reloads that never install broken flows."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from callcenter import dialplan
from callcenter.agi.exceptions import AgiConnectionLost
from callcenter.bus import Bus
from callcenter.config import AsteriskConfig, Config, ConfigError, FlowsConfig, QueuesConfig, load_config
from callcenter.keys import AGI_SERVER
from ivr_flows.events import IvrStarted
from ivr_flows.ports import FakeClock, ShiftedClock, in_memory_ports
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
    events: list[IvrStarted] = []
    bus = Bus()
    bus.subscribe(IvrStarted, events.append)
    route = route_for(flows_dir, bus=bus)
    session = ScriptedSession(["7"], caller="5550123", caller_name="Dana Caller")
    await route(session)  # type: ignore[arg-type]
    assert session.variables_set[dialplan.VAR_ACTION] == dialplan.ACTION_QUEUE
    assert session.variables_set[dialplan.VAR_IVR_CHOICE] == "suggestion"
    (started,) = events
    assert (started.caller_number, started.caller_name, started.did) == (
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


def test_the_flows_config_has_working_defaults_and_environment_overrides(tmp_path: Path) -> None:
    defaults = load_config(environ={})
    assert (defaults.flows.directory, defaults.flows.entry, defaults.flows.timezone) == (None, "main", "UTC")
    assert defaults.flows.prepare_prompts is True
    config = load_config(
        environ={
            "CALLCENTER_FLOWS_DIRECTORY": str(tmp_path),
            "CALLCENTER_FLOWS_TIMEZONE": "Asia/Shanghai",
            "CALLCENTER_FLOWS_PREPARE_PROMPTS": "false",
        }
    )
    assert (config.flows.directory, config.flows.timezone, config.flows.prepare_prompts) == (
        tmp_path,
        "Asia/Shanghai",
        False,
    )
    with pytest.raises(ConfigError, match=r"flows\.timezone: .*unknown time zone 'Mars/Olympus'"):
        load_config(environ={"CALLCENTER_FLOWS_TIMEZONE": "Mars/Olympus"})
    with pytest.raises(ConfigError, match=r"flows\.entry"):
        load_config(environ={"CALLCENTER_FLOWS_ENTRY": "Main Menu"})


def test_the_route_follows_the_flows_config(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    text = "name: reception\nprompts:\n  hi: {en: Hi.}\nnodes:\n  start:\n    - play: hi\n    - hangup\n"
    (flows / "reception.yaml").write_text(text, encoding="utf-8")
    config = Config(
        asterisk=AsteriskConfig(sounds_dir=tmp_path / "sounds"),
        flows=FlowsConfig(directory=flows, entry="reception", timezone="America/New_York"),
    )
    route = build_ivr_route(config, bus=Bus(), ports=in_memory_ports(), prompts=DryPrompts())
    assert route.engine.entry == "reception"
    assert route.directory == flows
    # A flow that names no zone gets the configured one; one that names its own keeps it.
    assert route.flows["reception"].timezone == "America/New_York"
    (flows / "reception.yaml").write_text(text.replace("name: reception\n", "name: reception\ntimezone: UTC\n"))
    assert route.reload() == []
    assert route.flows["reception"].timezone == "UTC"


def test_a_shifted_clock_starts_at_the_given_time_and_runs_on() -> None:
    start = datetime(2026, 11, 23, 22, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    clock = ShiftedClock(start)
    first = clock.now()
    assert timedelta(0) <= first - start < timedelta(seconds=5)
    assert clock.now() >= first
    assert clock.monotonic() <= clock.monotonic()
    with pytest.raises(ValueError, match="aware"):
        ShiftedClock(datetime(2026, 11, 23, 22, 0))


async def test_the_composition_root_runs_the_flows_on_the_ivr_route(tmp_path: Path) -> None:
    from callcenter.app import build_app
    from ivr_flows.keys import FLOWS

    config = load_config(
        environ={
            "CALLCENTER_PATHS_DATA_DIR": str(tmp_path),
            "CALLCENTER_ASTERISK_SOUNDS_DIR": str(tmp_path / "sounds"),
        }
    )
    clock = FakeClock(OPEN)
    app = build_app(config, clock=clock)
    route = app[AGI_SERVER]._routes[dialplan.ROUTE_IVR]
    assert route is app[FLOWS].route
    assert isinstance(route, FlowRoute)
    # The injected clock decides the time of day: 10:00 on a Monday is open, so "7" queues a suggestion.
    result = await route.run(ScriptedSession(["7"]))  # type: ignore[arg-type]
    assert result.path[0].wall == OPEN
    assert (result.outcome, result.queue, result.choice) == (Outcome.QUEUED, "support", "suggestion")


def test_broken_flows_stop_the_engine_from_being_built(tmp_path: Path) -> None:
    from callcenter.app import build_app

    (tmp_path / "main.yaml").write_text("name: main\nnodes:\n  a: {goto: nowhere}\n", encoding="utf-8")
    config = load_config(
        environ={"CALLCENTER_PATHS_DATA_DIR": str(tmp_path / "data"), "CALLCENTER_FLOWS_DIRECTORY": str(tmp_path)}
    )
    with pytest.raises(FlowValidationError, match="unknown node 'nowhere'"):
        build_app(config)


async def test_voicemail_is_allocated_in_the_recordings_store_as_kind_voicemail(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from callcenter.adapters import VoicemailFiler
    from recordings.storage import RecordingStore

    recordings = tmp_path / "recordings"
    recordings.mkdir()
    # Allocating a place touches no database (the index row comes when the message is stored).
    service = SimpleNamespace(store=RecordingStore(recordings))
    filer = VoicemailFiler(service, outbox=None)  # type: ignore[arg-type]
    first = await filer.allocate(uniqueid="1700000000.7", intent="complaint")
    second = await filer.allocate(uniqueid="../../etc/passwd", intent="x")
    assert first.path.is_relative_to(recordings / "voicemail")
    assert first.path.parent.is_dir()
    assert first.path.suffix == ".wav"
    # RECORD FILE names the file without its extension; Asterisk adds the format's.
    assert first.record_as == str(first.path.with_suffix(""))
    assert first.path != second.path
    assert second.path.parent == first.path.parent
