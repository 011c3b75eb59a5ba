"""The FastAGI ``ivr`` route: the flow engine behind ``AGI(agi://engine/ivr)``.

The flows are checked when the route is made, so an engine with broken flows does not start. Reloading (SIGHUP,
``POST /api/v1/flows/reload``) checks the new files the same way and keeps the running flows when any problem
is found; calls already in the IVR finish on the flows they started with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from callcenter.agi.session import AgiSession
from callcenter.config import Config
from ivr_flows.engine import CallResult, FlowEngine
from ivr_flows.ports import Clock, EventPublisher, FlowPorts
from ivr_flows.prompts import PrepareReport, PromptResolver, TtsPrompts
from ivr_flows.schema import FlowSet
from ivr_flows.validator import (
    MISSING_FLOW,
    FlowIssue,
    FlowValidationError,
    Report,
    check_flow_set,
    check_path,
    load_flows,
)

log = logging.getLogger("ivr_flows.route")

SHIPPED_FLOWS = Path(__file__).resolve().parent / "flows"
ENTRY_FLOW = "main"


class FlowRoute:
    def __init__(
        self,
        flows: FlowSet,
        *,
        ports: FlowPorts,
        bus: EventPublisher,
        prompts: PromptResolver,
        queues: Mapping[str, str],
        clock: Clock | None = None,
        entry: str = ENTRY_FLOW,
        sounds_dir: Path | None = None,
        directory: Path | None = None,
        default_timezone: str | None = None,
    ) -> None:
        issues = check_flow_set(flows, sounds_dir=sounds_dir)
        if entry not in flows:
            issues.append(FlowIssue(str(directory or "<flows>"), None, MISSING_FLOW, f"no entry flow {entry!r}"))
        if issues:
            raise FlowValidationError(issues)
        self._prompts = prompts
        self._sounds_dir = sounds_dir
        self._directory = directory
        self._default_timezone = default_timezone
        self._engine = FlowEngine(
            flows,
            ports=ports,
            bus=bus,
            prompts=prompts,
            queues=queues,
            clock=clock,
            entry=entry,
            # An unusable session (lost connection, protocol error) is raised once the call is finished, so that
            # the FastAGI server counts and logs it as such.
            raise_lost=True,
        )

    @classmethod
    def from_directory(
        cls,
        directory: Path,
        *,
        ports: FlowPorts,
        bus: EventPublisher,
        prompts: PromptResolver,
        queues: Mapping[str, str],
        clock: Clock | None = None,
        entry: str = ENTRY_FLOW,
        sounds_dir: Path | None = None,
        default_timezone: str | None = None,
    ) -> FlowRoute:
        flows = load_flows(directory, sounds_dir=sounds_dir, entry=entry, default_timezone=default_timezone)
        return cls(
            flows,
            ports=ports,
            bus=bus,
            prompts=prompts,
            queues=queues,
            clock=clock,
            entry=entry,
            sounds_dir=sounds_dir,
            directory=directory,
            default_timezone=default_timezone,
        )

    @property
    def engine(self) -> FlowEngine:
        return self._engine

    @property
    def directory(self) -> Path | None:
        return self._directory

    @property
    def sounds_dir(self) -> Path | None:
        return self._sounds_dir

    @property
    def default_timezone(self) -> str | None:
        return self._default_timezone

    @property
    def prompts(self) -> PromptResolver:
        return self._prompts

    @property
    def flows(self) -> FlowSet:
        return self._engine.flows

    # Plain functions handing back the engine's coroutine: the route adds no frame of its own that every command
    # of the call would pass through.
    def __call__(self, session: AgiSession) -> Awaitable[Any]:
        return self._engine.run(session)

    def run(self, session: AgiSession) -> Coroutine[Any, Any, CallResult]:
        """Runs one call; an unusable session (AgiConnectionLost, AgiProtocolError) is raised after it ends."""
        return self._engine.run(session)

    def check(self, directory: Path | None = None) -> Report:
        """Loads and checks the flow files as a reload would, changing nothing (safe to run in a thread)."""
        source = directory or self._directory
        if source is None:
            issue = FlowIssue("<flows>", None, MISSING_FLOW, "the route was not made from a directory")
            return Report(FlowSet({}), [issue])
        return check_path(
            source, sounds_dir=self._sounds_dir, entry=self._engine.entry, default_timezone=self._default_timezone
        )

    def install(self, report: Report, directory: Path | None = None) -> list[FlowIssue]:
        """Makes the checked flows of ``report`` the running ones, unless it found any problem."""
        source = directory or self._directory
        if report.issues:
            log.warning("flows in %s not reloaded (%d problem(s)); the running flows stay", source, len(report.issues))
            return report.issues
        self._engine.replace_flows(report.flows)
        self._directory = source
        log.info("flows reloaded from %s: %s", source, ", ".join(sorted(report.flows.flows)))
        return []

    def reload(self, directory: Path | None = None) -> list[FlowIssue]:
        """Loads the flows again; returns the problems found, and replaces the running flows only when none."""
        return self.install(self.check(directory), directory)

    async def prepare(self) -> PrepareReport | None:
        """Makes every fixed text prompt before the first call (in a thread: espeak-ng and sox take a while)."""
        if isinstance(self._prompts, TtsPrompts):
            return await asyncio.to_thread(self._prompts.prepare, self.flows)
        return None


def build_ivr_route(
    config: Config,
    *,
    bus: EventPublisher,
    ports: FlowPorts,
    clock: Clock | None = None,
    directory: Path | None = None,
    prompts: PromptResolver | None = None,
) -> FlowRoute:
    """The route as the composition root makes it from the config (``[flows]`` and Asterisk's sounds)."""
    sounds = config.asterisk.sounds_path
    return FlowRoute.from_directory(
        directory or config.flows.directory or SHIPPED_FLOWS,
        ports=ports,
        bus=bus,
        prompts=prompts or TtsPrompts(sounds),
        queues={"general": config.queues.general, "expert": config.queues.expert},
        clock=clock,
        entry=config.flows.entry,
        # File prompts are checked only where Asterisk's sounds are (the sandbox may not be installed yet).
        sounds_dir=sounds if sounds.is_dir() else None,
        default_timezone=config.flows.timezone,
    )
