"""The flow engine: walks a caller through the flows over an AGI session and tells the dialplan what next.

Every step taken is kept on the call's path (node, step, keys, result, monotonic and wall time) and published as
``ivr.step``; the walk starts with ``ivr.started`` and ends with ``ivr.ended`` carrying the whole path and the
outcome. A caller who hangs up mid-menu ends the path at that node. The engine ends by setting CC_QUEUE,
CC_PRIORITY, CC_IVR_CHOICE, __CC_REASON (inherited by the agent's channel) and, last, CC_ACTION (the dialplan
obeys only an explicit queue or hangup).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from callcenter import dialplan
from callcenter.agi.exceptions import AgiConnectionLost, AgiError, AgiHangup, AgiProtocolError
from ivr_flows.ports import Clock, EventPublisher, FlowPorts, FlowSession, SystemClock, VoicemailMessage
from ivr_flows.prompts import PromptResolver
from ivr_flows.schema import FlowSet, Prompt
from ivr_flows.steps import (
    STEP_HANDLERS,
    CallState,
    Finish,
    FlowRuntimeError,
    Outcome,
    PathStep,
    caller_number,
)

log = logging.getLogger("ivr_flows.engine")

# Far more steps than any caller takes; a flow that loops without listening to the caller stops here.
DEFAULT_MAX_STEPS = 1000


@dataclass(frozen=True, slots=True)
class CallResult:
    uniqueid: str
    linkedid: str
    caller_number: str
    flow: str
    outcome: Outcome
    path: tuple[PathStep, ...]
    language: str
    queue: str | None
    priority: int | None
    choice: str | None
    variables: Mapping[str, str]
    voicemails: tuple[VoicemailMessage, ...]
    started_at: datetime
    ended_at: datetime
    duration: float
    error: BaseException | None = None

    @property
    def last(self) -> PathStep | None:
        return self.path[-1] if self.path else None

    def nodes(self) -> list[str]:
        """The nodes visited, in order, each once per visit (``flow/node``)."""
        visited: list[str] = []
        for entry in self.path:
            name = f"{entry.flow}/{entry.node}"
            if not visited or visited[-1] != name:
                visited.append(name)
        return visited

    def event_data(self) -> dict[str, Any]:
        return {
            "uniqueid": self.uniqueid,
            "linkedid": self.linkedid,
            "caller_number": self.caller_number,
            "flow": self.flow,
            "outcome": str(self.outcome),
            "path": [entry.as_dict() for entry in self.path],
            "language": self.language,
            "queue": self.queue,
            "priority": self.priority,
            "choice": self.choice,
            "voicemails": [
                {"intent": m.intent, "path": str(m.path), "duration": m.duration, "ended_by": m.ended_by}
                for m in self.voicemails
            ],
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
            "duration": self.duration,
            "error": type(self.error).__name__ if self.error is not None else None,
        }


def _wants(bus: EventPublisher, event_type: str) -> bool:
    """Whether the bus has listeners for ``event_type`` (a publisher that cannot tell is assumed to have)."""
    wants = getattr(bus, "wants", None)
    return bool(wants(event_type)) if callable(wants) else True


class FlowEngine:
    """Runs the flows; one instance serves every call. ``replace_flows`` swaps the flows for new calls only."""

    def __init__(
        self,
        flows: FlowSet,
        *,
        ports: FlowPorts,
        bus: EventPublisher,
        prompts: PromptResolver,
        queues: Mapping[str, str],
        clock: Clock | None = None,
        entry: str = "main",
        max_steps: int = DEFAULT_MAX_STEPS,
        answer: bool = True,
    ) -> None:
        missing = {"general", "expert"} - set(queues)
        if missing:
            raise ValueError(f"queues needs names for {', '.join(sorted(missing))}")
        if entry not in flows:
            raise ValueError(f"no entry flow {entry!r} (flows: {', '.join(sorted(flows.flows))})")
        self._flows = flows
        self._ports = ports
        self._bus = bus
        self._prompts = prompts
        self._queues = dict(queues)
        self._clock: Clock = clock or SystemClock()
        self._entry = entry
        self._max_steps = max_steps
        self._answer = answer
        # Names of fixed prompts already made (CallState.playable); emptied when the flows change.
        self._names: dict[tuple[int, str, str], tuple[Prompt, str]] = {}

    @property
    def flows(self) -> FlowSet:
        return self._flows

    @property
    def entry(self) -> str:
        return self._entry

    def replace_flows(self, flows: FlowSet) -> None:
        """Calls already in the IVR finish on the flows they started with."""
        if self._entry not in flows:
            raise ValueError(f"no entry flow {self._entry!r}")
        self._flows = flows
        self._names = {}

    async def run(self, session: FlowSession, *, flow: str | None = None) -> CallResult:
        """Walks one call from the start of ``flow`` (default: the entry flow). Never raises for the call's
        own troubles: they become the outcome (and the error on the result); only cancellation propagates."""
        flows = self._flows
        first = flows[flow or self._entry]
        env = session.env
        uniqueid, linkedid = session.uniqueid, session.linkedid
        did = env.params.get("did", env.extension)
        state = CallState(
            session=session,
            flows=flows,
            flow=first,
            language=first.language,
            ports=self._ports,
            prompts=self._prompts,
            clock=self._clock,
            bus=self._bus,
            queues=self._queues,
            caller=caller_number(env.callerid),
            uniqueid=uniqueid,
            linkedid=linkedid,
            names=self._names,
            publish_steps=_wants(self._bus, "ivr.step"),
            publish_choices=_wants(self._bus, "ivr.choice"),
        )
        state.variables.update(caller=state.caller, language=state.language, did=did)
        state.begin(first.start_node, 0, "answer")
        started_at = self._clock.now()
        started = self._clock.monotonic()
        self._bus.publish(
            "ivr.started",
            uniqueid=uniqueid,
            linkedid=linkedid,
            caller_number=env.callerid,
            caller_name=env.calleridname,
            did=did,
            flow=first.name,
            language=state.language,
            at=started_at.isoformat(),
        )
        error: BaseException | None = None
        try:
            if self._answer:
                await session.answer()
            outcome = await self._walk(state)
        except AgiHangup:
            outcome = Outcome.VOICEMAIL if state.voicemails else Outcome.HUNG_UP_IN_IVR
            state.trace("caller_hangup")
        except (AgiConnectionLost, AgiProtocolError) as exc:
            outcome, error = Outcome.ERROR, exc
            log.warning("IVR lost its AGI connection: %s", exc)
            state.trace("connection_lost", detail=type(exc).__name__)
        except asyncio.CancelledError as exc:
            state.trace("cancelled")
            self._finish(state, first.name, Outcome.ERROR, exc, started_at, started)
            raise
        except Exception as exc:
            outcome, error = Outcome.ERROR, exc
            log.exception("IVR failed at %s/%s; the caller goes to the fallback queue", state.flow.name, state.node)
            state.trace("error", detail=f"{type(exc).__name__}: {exc}")
        await self._tell_dialplan(state, outcome)
        return self._finish(state, first.name, outcome, error, started_at, started)

    async def _walk(self, state: CallState) -> Outcome:
        flow = state.flow
        node = flow.start_node
        taken = 0
        while True:
            state.flow = flow
            steps = flow.nodes[node]
            for index, step in enumerate(steps):
                taken += 1
                if taken > self._max_steps:
                    raise FlowRuntimeError(f"more than {self._max_steps} steps: the flow loops without end")
                # state.begin(), inlined: this loop runs for every step of every call.
                state.node, state.step_index, state.step_kind, state.step_traced = node, index, step.KIND, False
                transition = await STEP_HANDLERS[type(step)](step, state)
                if not state.step_traced:
                    state.trace()
                if transition is None:
                    continue
                if isinstance(transition, Finish):
                    return transition.outcome
                flow, node = state.flows.resolve(flow, transition.target)
                if state.language not in flow.spoken_languages:
                    state.language = flow.language
                state.variables["language"] = state.language
                break
            else:
                raise FlowRuntimeError(f"node {flow.name}/{node} ended without handing the call on")

    async def _tell_dialplan(self, state: CallState, outcome: Outcome) -> None:
        session = state.session
        if session.hung_up or outcome is Outcome.HUNG_UP_IN_IVR:
            # Nobody left to route: the dialplan ends on AGISTATUS=HANGUP.
            return
        try:
            if outcome is Outcome.QUEUED and state.queue is not None:
                await session.set_variable(dialplan.VAR_QUEUE, state.queue)
                await session.set_variable(dialplan.VAR_PRIORITY, str(state.priority or 0))
                if state.choice:
                    await session.set_variable(dialplan.VAR_IVR_CHOICE, state.choice)
                    await session.set_variable(dialplan.inherited(dialplan.VAR_REASON), state.choice)
                await session.set_variable(dialplan.VAR_ACTION, dialplan.ACTION_QUEUE)
            elif outcome in (Outcome.HANGUP, Outcome.VOICEMAIL):
                await session.set_variable(dialplan.VAR_ACTION, dialplan.ACTION_HANGUP)
            else:
                await session.set_variable(dialplan.VAR_ACTION, dialplan.ACTION_FALLBACK)
        except (AgiError, ValueError) as exc:
            log.info("could not tell the dialplan the IVR outcome %s: %s", outcome, exc)

    def _finish(
        self,
        state: CallState,
        entry_flow: str,
        outcome: Outcome,
        error: BaseException | None,
        started_at: datetime,
        started: float,
    ) -> CallResult:
        result = CallResult(
            uniqueid=state.uniqueid,
            linkedid=state.linkedid,
            caller_number=state.caller,
            flow=entry_flow,
            outcome=outcome,
            path=tuple(state.path),
            language=state.language,
            queue=state.queue if outcome is Outcome.QUEUED else None,
            priority=state.priority if outcome is Outcome.QUEUED else None,
            choice=state.choice,
            variables=dict(state.variables),
            voicemails=tuple(state.voicemails),
            started_at=started_at,
            ended_at=self._clock.now(),
            duration=max(0.0, self._clock.monotonic() - started),
            error=error,
        )
        self._bus.publish("ivr.ended", **result.event_data())
        return result
