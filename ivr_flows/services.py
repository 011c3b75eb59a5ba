"""The running flows as the rest of the engine sees them: reloads, the flows with their state, diagrams.

A reload (SIGHUP or ``POST /api/v1/flows/reload``) checks the files in a thread, installs them only when no
problem is found, then makes the text prompts that changed, so the next caller hears the new words at once.
Reloads run one at a time; calls already in the IVR finish on the flows they started with.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ivr_flows.events import FlowsReloaded
from ivr_flows.graph import build_graph, to_mermaid
from ivr_flows.ports import EventPublisher
from ivr_flows.prompts import PrepareReport
from ivr_flows.route import FlowRoute
from ivr_flows.schema import Flow
from ivr_flows.validator import FlowIssue, LoadedFlow, check_loaded, flow_files, load_flow_file

log = logging.getLogger("ivr_flows.services")


class UnknownFlow(LookupError):
    """No running flow has this name."""


def issue_json(issue: FlowIssue) -> dict[str, Any]:
    return {"file": issue.file, "line": issue.line, "kind": issue.kind, "message": issue.message}


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What one reload found and did."""

    ok: bool
    trigger: str
    directory: str
    flows: tuple[str, ...]
    issues: tuple[FlowIssue, ...]
    at: datetime
    prompts: PrepareReport | None = None
    prompts_error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "trigger": self.trigger,
            "directory": self.directory,
            "flows": list(self.flows),
            "issues": [issue_json(issue) for issue in self.issues],
            "at": self.at.isoformat(),
            "prompts": None if self.prompts is None else {"made": self.prompts.made, "kept": self.prompts.kept},
            "prompts_error": self.prompts_error,
        }


@dataclass(frozen=True, slots=True)
class FlowState:
    """One flow: what runs now, and whether its file on disk would load as it is now."""

    name: str | None
    file: str
    running: bool
    valid: bool
    issues: tuple[FlowIssue, ...]
    flow: Flow | None

    def as_json(self) -> dict[str, Any]:
        flow = self.flow
        return {
            "name": self.name,
            "file": self.file,
            "running": self.running,
            "valid": self.valid,
            "issues": [issue_json(issue) for issue in self.issues],
            "description": flow.description if flow else None,
            "language": flow.language if flow else None,
            "languages": list(flow.spoken_languages) if flow else [],
            "timezone": flow.timezone if flow else None,
            "start": flow.start_node if flow else None,
            "nodes": len(flow.nodes) if flow else 0,
        }


@dataclass(frozen=True, slots=True)
class FlowListing:
    directory: str
    entry: str
    valid: bool
    items: tuple[FlowState, ...]
    issues: tuple[FlowIssue, ...]
    last_reload: ReloadResult | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "entry": self.entry,
            "valid": self.valid,
            "items": [item.as_json() for item in self.items],
            "issues": [issue_json(issue) for issue in self.issues],
            "last_reload": None if self.last_reload is None else self.last_reload.as_json(),
        }


@dataclass(slots=True)
class _Scan:
    loaded: list[LoadedFlow]
    issues: list[FlowIssue] = field(default_factory=list)


class FlowsService:
    def __init__(self, route: FlowRoute, *, bus: EventPublisher, prepare_prompts: bool = True) -> None:
        self._route = route
        self._bus = bus
        self._prepare_prompts = prepare_prompts
        self._lock = asyncio.Lock()
        self._last: ReloadResult | None = None
        self._startup: asyncio.Task[PrepareReport | None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def route(self) -> FlowRoute:
        return self._route

    @property
    def last_reload(self) -> ReloadResult | None:
        return self._last

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Starts making the text prompts in the background: a first start can take a few seconds of espeak-ng,
        and a caller who arrives meanwhile gets a missing prompt made on demand."""
        if self._prepare_prompts:
            self._startup = asyncio.create_task(self._prepare("start"))

    async def wait_ready(self) -> PrepareReport | None:
        """The start-up prompt making, awaited (tests and the demo wait for it before the first call)."""
        if self._startup is None:
            return None
        return await asyncio.shield(self._startup)

    async def close(self) -> None:
        pending = [task for task in (self._startup, *self._tasks) if task is not None and not task.done()]
        for task in pending:
            task.cancel()
        for task in pending:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # already logged by the task itself
                log.debug("background flows task failed", exc_info=True)

    async def _prepare(self, why: str) -> PrepareReport | None:
        try:
            report = await self._route.prepare()
        except Exception as exc:
            log.error("IVR prompts not made (%s): %s; each is tried again when a caller needs it", why, exc)
            return None
        if report is not None:
            log.info("IVR prompts ready (%s): %d made, %d kept", why, report.made, report.kept)
        return report

    # -- reloads --------------------------------------------------------------------------------------

    async def reload(self, trigger: str = "api") -> ReloadResult:
        """Checks the flow files and installs them when they have no problem; the running flows stay otherwise."""
        async with self._lock:
            report = await asyncio.to_thread(self._route.check)
            issues = self._route.install(report)
            prompts: PrepareReport | None = None
            prompts_error: str | None = None
            if not issues and self._prepare_prompts:
                try:
                    prompts = await self._route.prepare()
                except Exception as exc:
                    prompts_error = f"{type(exc).__name__}: {exc}"[:300]
                    log.error("IVR prompts not made after the reload: %s", prompts_error)
            result = ReloadResult(
                ok=not issues,
                trigger=trigger,
                directory=str(self._route.directory),
                flows=tuple(sorted(self._route.flows.flows)),
                issues=tuple(issues),
                at=datetime.now(UTC),
                prompts=prompts,
                prompts_error=prompts_error,
            )
            self._last = result
        self._bus.publish(
            FlowsReloaded(
                ok=result.ok,
                trigger=trigger,
                flows=tuple(result.flows),
                issues=len(result.issues),
                at=result.at.isoformat(),
            )
        )
        return result

    def request_reload(self, trigger: str = "sighup") -> asyncio.Task[ReloadResult]:
        """Starts a reload from synchronous code (a signal handler); its outcome is logged."""
        task = asyncio.get_running_loop().create_task(self.reload(trigger))
        self._tasks.add(task)
        task.add_done_callback(self._reloaded)
        return task

    def _reloaded(self, task: asyncio.Task[ReloadResult]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("IVR flows reload failed", exc_info=error)
            return
        result = task.result()
        if result.ok:
            log.info("IVR flows reloaded (%s): %s", result.trigger, ", ".join(result.flows))
        else:
            log.warning(
                "IVR flows not reloaded (%s); the running flows stay:\n%s",
                result.trigger,
                "\n".join(f"  {issue}" for issue in result.issues[:50]),
            )

    # -- reading --------------------------------------------------------------------------------------

    async def listing(self) -> FlowListing:
        """The running flows and the files on disk, each with the problems a reload would find in it now."""
        scan = await asyncio.to_thread(self._scan)
        running = self._route.flows
        by_file: dict[str, list[FlowIssue]] = defaultdict(list)
        for issue in scan.issues:
            by_file[issue.file].append(issue)
        items: list[FlowState] = []
        seen: set[str] = set()
        for item in scan.loaded:
            name = item.name
            is_running = name is not None and name in running and running.source(name).file == item.file
            if is_running and name is not None:
                seen.add(name)
            flow = running[name] if is_running and name is not None else item.flow
            problems = tuple(by_file.get(item.file, ()))
            items.append(FlowState(name, item.file, is_running, not problems, problems, flow))
        for name, flow in running.flows.items():
            if name not in seen:
                # Running from a file that has since been removed or renamed: a reload would drop it.
                items.append(FlowState(name, running.source(name).file, True, False, (), flow))
        directory = self._route.directory
        return FlowListing(
            directory=str(directory) if directory else "",
            entry=self._route.engine.entry,
            valid=not scan.issues,
            items=tuple(sorted(items, key=lambda state: (state.name or "", state.file))),
            issues=tuple(scan.issues),
            last_reload=self._last,
        )

    def _scan(self) -> _Scan:
        directory = self._route.directory
        if directory is None:
            return _Scan([])
        files: Sequence[Path] = flow_files(directory)
        loaded = [load_flow_file(file, default_timezone=self._route.default_timezone) for file in files]
        if not loaded:
            report = self._route.check()
            return _Scan([], list(report.issues))
        report = check_loaded(loaded, sounds_dir=self._route.sounds_dir, entry=self._route.engine.entry)
        return _Scan(loaded, list(report.issues))

    def graph(self, name: str) -> str:
        """The running flow ``name`` as Mermaid text."""
        flows = self._route.flows
        if name not in flows:
            raise UnknownFlow(name)
        return to_mermaid(build_graph(flows[name]))
