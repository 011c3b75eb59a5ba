"""The flow engine: walks a caller through the flows over an AGI session and tells the dialplan what next.

Every step taken is kept on the call's path (node, step, keys, result, monotonic and wall time; a node's
closing goto is how the node ends, not a step) and, when someone listens, published as ``IvrStep``; the walk
starts with ``IvrStarted`` and ends with ``IvrEnded`` carrying the whole path and the outcome. A caller who
hangs up mid-menu ends the path at that node. The engine ends by setting CC_QUEUE, CC_PRIORITY, CC_IVR_CHOICE,
__CC_REASON (inherited by the agent's channel) and, last, CC_ACTION (the dialplan obeys only an explicit queue or
hangup).

Two walks: ``FlowEngine.run`` here is the fast walk, the one production (the FastAGI ``ivr`` route) and
``bench/ivr.py`` run, hand-inlined over steps made ready at load so that the engine costs under 10% more than
hand-written AGI calls (docs/benchmarks.md). :mod:`ivr_flows.walk` holds the reference walk
(``ReferenceFlowEngine``): the same walk written plainly, step by step with named types; read it first. The fast
walk must keep giving the reference's results (AGI commands, path and ``IvrEnded`` data, bus events, dialplan
variables): tests/unit/test_flows_walks.py holds them together, and a change of behaviour goes into both.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

from callcenter import dialplan
from callcenter.agi.exceptions import AgiConnectionLost, AgiError, AgiHangup, AgiProtocolError
from ivr_flows.events import IvrChoice, IvrEnded, IvrStarted, IvrStep
from ivr_flows.ports import Clock, EventPublisher, FlowPorts, FlowSession, SystemClock, VoicemailMessage
from ivr_flows.prompts import PromptResolver
from ivr_flows.schema import MENU_DIGITS, Flow, FlowSet, GotoStep, InputStep, MenuStep, PlayStep, Prompt
from ivr_flows.steps import (
    STEP_HANDLERS,
    CallState,
    Finish,
    FlowRuntimeError,
    Outcome,
    PathStep,
    PublishingCallState,
    caller_number,
    clip_detail,
    input_heard,
    menu_key,
    prepare,
    retries_exhausted,
)

log = logging.getLogger("ivr_flows.engine")

# Far more steps than any caller takes; a flow that loops without listening to the caller stops here.
DEFAULT_MAX_STEPS = 1000


class CallResult:
    """How one call's walk ended: the ``IvrEnded`` event's data as published (``data``: plain values, times in
    seconds since the epoch, the path as one dict per step), with typed views of it (times as aware UTC
    datetimes), and what only the engine's caller sees (the outcome as an enum, the error itself, the variables,
    the voicemail messages). ``data`` is the very dict the event carried: read it, do not change it."""

    __slots__ = ("data", "error", "outcome", "variables", "voicemails")

    def __init__(
        self,
        data: dict[str, Any],
        outcome: Outcome,
        error: BaseException | None,
        variables: Mapping[str, str],
        voicemails: tuple[VoicemailMessage, ...],
    ) -> None:
        self.data = data
        self.outcome = outcome
        self.error = error
        self.variables = variables
        self.voicemails = voicemails

    def __repr__(self) -> str:
        return f"CallResult({self.data['linkedid']!r}, {self.outcome}, path of {len(self.data['path'])})"

    @property
    def uniqueid(self) -> str:
        return str(self.data["uniqueid"])

    @property
    def linkedid(self) -> str:
        return str(self.data["linkedid"])

    @property
    def caller_number(self) -> str:
        return str(self.data["caller_number"])

    @property
    def flow(self) -> str:
        """The flow the call started in."""
        return str(self.data["flow"])

    @property
    def language(self) -> str:
        return str(self.data["language"])

    @property
    def queue(self) -> str | None:
        return cast(str | None, self.data["queue"])

    @property
    def priority(self) -> int | None:
        return cast(int | None, self.data["priority"])

    @property
    def choice(self) -> str | None:
        return cast(str | None, self.data["choice"])

    @property
    def started_at(self) -> datetime:
        return datetime.fromtimestamp(self.data["started_at"], UTC)

    @property
    def ended_at(self) -> datetime:
        return datetime.fromtimestamp(self.data["ended_at"], UTC)

    @property
    def duration(self) -> float:
        return float(self.data["duration"])

    @property
    def path_data(self) -> tuple[dict[str, Any], ...]:
        """The path as published: one dict per step (PathStep's fields); ``path`` is the typed view. The event's
        subscribers hold the same entries: read them, do not change them."""
        return tuple(self.data["path"])

    @property
    def path(self) -> tuple[PathStep, ...]:
        return tuple(PathStep.of(entry) for entry in self.path_data)

    @property
    def last(self) -> PathStep | None:
        path = self.path_data
        return PathStep.of(path[-1]) if path else None

    def nodes(self) -> list[str]:
        """The nodes visited, in order, each once per visit (``flow/node``)."""
        visited: list[str] = []
        for entry in self.path_data:
            name = f"{entry['flow']}/{entry['node']}"
            if not visited or visited[-1] != name:
                visited.append(name)
        return visited


# One step of a node as the walk runs it: handler (None for a play step, steps.menu_key for a menu,
# steps.input_heard for an input step: the walk plays their prompts and listens itself), the step
# (steps.prepare), where it is (flow name, node, step kind, index in the node: CallState.where), whether the
# handler is awaited. (Any: the walk tells these apart by identity, which the type checker cannot follow.)
_Planned = tuple[Any, Any, tuple[str, str, str, int], bool]


# A node as the walk runs it: its steps, and where it goes when they all go on (a closing goto, taken without a
# step of its own), or None.
_Node = tuple[tuple[_Planned, ...], str | None]


# Where a jump leads: the node's steps, its closing goto, its flow and the languages that flow speaks.
_Target = tuple[tuple[_Planned, ...], str | None, Flow, tuple[str, ...]]


class _Plan:
    """The flows of one load made ready to walk: each node's steps with their handlers looked up once, and each
    jump resolved once (the first time a call takes it). Calls keep the plan they started with.

    A goto that closes a node after other steps is not a step of the walk: the node goes there when its steps
    are done, and the path shows the next node's steps (a node that is only a goto keeps its step and entry)."""

    __slots__ = ("flows", "jumps", "nodes", "starts")

    def __init__(self, flows: FlowSet) -> None:
        self.flows = flows
        self.nodes: dict[tuple[str, str], _Node] = {}
        for flow in flows.flows.values():
            for node, steps in flow.nodes.items():
                closing: str | None = None
                last = steps[-1] if steps else None
                if len(steps) > 1 and isinstance(last, GotoStep):
                    closing, steps = last.target, steps[:-1]
                planned: list[_Planned] = []
                for index, step in enumerate(steps):
                    where = (flow.name, node, step.KIND, index)
                    if isinstance(step, PlayStep):
                        planned.append((None, prepare(step, flow), where, False))
                        continue
                    if isinstance(step, MenuStep | InputStep):
                        judge = menu_key if isinstance(step, MenuStep) else input_heard
                        planned.append((judge, prepare(step, flow), where, False))
                        continue
                    handler = STEP_HANDLERS[type(step)]
                    planned.append((handler, prepare(step, flow), where, inspect.iscoroutinefunction(handler)))
                self.nodes[flow.name, node] = (tuple(planned), closing)
        # By flow name, then by reference as written in that flow.
        self.jumps: dict[str, dict[str, _Target]] = {name: {} for name in flows.flows}
        # Where a call that starts in a flow begins: its start node's steps and closing goto, and where the
        # answer is traced (CallState.where).
        self.starts: dict[str, tuple[tuple[_Planned, ...], str | None, tuple[str, str, str, int]]] = {
            flow.name: (*self.nodes[flow.name, flow.start_node], (flow.name, flow.start_node, "answer", 0))
            for flow in flows.flows.values()
        }

    def jump(self, current: Flow, target: str) -> _Target:
        """Where ``target`` leads from ``current`` (KeyError when nowhere), remembered for the next call."""
        flow, node = self.flows.resolve(current, target)
        steps, closing = self.nodes[flow.name, node]
        found = (steps, closing, flow, flow.spoken_languages)
        self.jumps[current.name][target] = found
        return found


class FlowEngine:
    """Runs the flows; one instance serves every call. ``replace_flows`` swaps the flows for new calls only.

    ``run`` is the fast walk; ``ivr_flows.walk.ReferenceFlowEngine`` is this engine with the reference walk."""

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
        raise_lost: bool = False,
    ) -> None:
        missing = {"general", "expert"} - set(queues)
        if missing:
            raise ValueError(f"queues needs names for {', '.join(sorted(missing))}")
        if entry not in flows:
            raise ValueError(f"no entry flow {entry!r} (flows: {', '.join(sorted(flows.flows))})")
        self._flows = flows
        self._plan = _Plan(flows)
        self._ports = ports
        self._bus = bus
        wants = getattr(bus, "wants", None)
        # A publisher that cannot tell whether anyone listens is taken to have listeners.
        self._wants: Callable[[type], bool] = wants if callable(wants) else _everyone_listens
        self._prompts = prompts
        self._queues = dict(queues)
        self._clock: Clock = clock or SystemClock()
        self._entry = entry
        self._max_steps = max_steps
        self._answer = answer
        self._raise_lost = raise_lost
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
        self._plan = _Plan(flows)
        self._names = {}

    async def run(self, session: FlowSession, *, flow: str | None = None) -> CallResult:
        """Walks one call from the start of ``flow`` (default: the entry flow). Never raises for the call's
        own troubles: they become the outcome (and the error on the result); only cancellation propagates, and,
        with ``raise_lost``, a lost connection or protocol error once the call is finished and published."""
        plan = self._plan
        flows = plan.flows
        first = flows[flow or self._entry]
        env = session.env
        # The script's query string is parsed once: asked for the linkedid, the session would parse it again.
        params = env.params
        uniqueid = session.uniqueid
        linkedid = params.get("linkedid") or session.linkedid
        did = params.get("did", env.extension)
        clock = self._clock
        started_at = clock.now()
        started = clock.monotonic()
        start_time = started_at.timestamp()
        caller = caller_number(env.callerid)
        steps, closing, answer = plan.starts[first.name]
        # Whoever listens to every step gets an IvrStep event per path entry; nobody listening, none is built.
        state = (PublishingCallState if self._wants(IvrStep) else CallState)(
            session=session,
            flow=first,
            language=first.language,
            ports=self._ports,
            prompts=self._prompts,
            clock=self._clock,
            bus=self._bus,
            queues=self._queues,
            caller=caller,
            uniqueid=uniqueid,
            linkedid=linkedid,
            variables={"caller": caller, "language": first.language, "did": did},
            names=self._names,
            publish_choices=self._wants(IvrChoice),
            where=answer,
            origin=start_time - started,
            monotonic=clock.monotonic,
        )
        self._bus.publish(
            IvrStarted(
                uniqueid=uniqueid,
                linkedid=linkedid,
                caller_number=env.callerid,
                caller_name=env.calleridname,
                did=did,
                flow=first.name,
                language=state.language,
                at=start_time,
            )
        )
        error: BaseException | None = None
        try:
            if self._answer:
                await session.answer()
            # The walk, inlined here: one coroutine frame less for every command of the call to pass through.
            # Every handler traces its own step (a path entry on each way out), so the loop only runs them and
            # follows where they lead.
            current = first
            jumps = plan.jumps[first.name]
            # Steps are counted a node at a time, as the walk leaves it (a node's own steps cannot loop): a walk
            # that has taken the limit and would go on is stopped.
            taken = 0
            limit = self._max_steps
            while True:
                for handler, step, where, awaited in steps:
                    state.where = where
                    if awaited:
                        transition = await handler(step, state)
                    # Play, menu and input steps, the commonest, are run here: no coroutine of their own that the
                    # answer to each prompt would pass through (steps.Spoken: the prompts' names made once per
                    # language); what a menu or input step heard is judged in steps.
                    elif handler is None:
                        for name in step.files.get(state.language) or await step.make_files(state):
                            await session.stream_file(name, "")
                        state.trace(detail=step.detail)
                        continue
                    elif handler is menu_key:
                        files = step.files.get(state.language) or await step.make_files(state)
                        early, last = files[:-1], files[-1]
                        for _attempt in range(step.attempts):
                            # The prompts play listening for any key; one pressed during an early one answers.
                            digit = None
                            for name in early:
                                digit = (await session.stream_file(name, MENU_DIGITS)).digit
                                if digit:
                                    break
                            else:
                                digit = (await session.get_option(last, MENU_DIGITS, step.timeout_ms)).digit
                            transition = menu_key(step.step, state, digit)
                            if transition is not None:
                                break
                            again = step.step.invalid if digit else step.step.no_input
                            if again is not None:
                                await session.stream_file(state.known(again) or await state.playable(again), "")
                        else:
                            transition = retries_exhausted(step, state)
                    elif handler is input_heard:
                        file = (step.files.get(state.language) or await step.make_files(state))[0]
                        transition = None
                        for _attempt in range(step.attempts):
                            typed = (await session.get_data(file, step.timeout_ms, step.step.max_digits)).digits
                            if input_heard(step, state, typed):
                                break
                            again = step.step.invalid if typed else step.step.no_input
                            if again is not None:
                                await session.stream_file(state.known(again) or await state.playable(again), "")
                        else:
                            transition = retries_exhausted(step, state)
                    else:
                        # Steps that only decide (goto, set, hours...) are plain functions: no coroutine for them.
                        transition = handler(step, state)
                    if transition is not None:
                        break
                else:
                    transition = closing
                    if transition is None:
                        raise FlowRuntimeError(f"node {current.name}/{state.node} ended without handing the call on")
                if type(transition) is Finish:
                    outcome = transition.outcome
                    break
                taken += where[3] + 1
                if taken >= limit:
                    raise FlowRuntimeError(f"{taken} steps and still going: the flow loops without end")
                steps, closing, into, languages = jumps.get(transition) or plan.jump(current, transition)
                if into is not current:
                    current = into
                    state.flow = current
                    jumps = plan.jumps[current.name]
                    if state.language not in languages:
                        state.language = current.language
                        state.variables["language"] = state.language
        except AgiHangup:
            outcome = Outcome.VOICEMAIL if state.voicemails else Outcome.HUNG_UP_IN_IVR
            state.trace("caller_hangup")
        except (AgiConnectionLost, AgiProtocolError) as exc:
            outcome, error = Outcome.ERROR, exc
            log.warning("IVR lost its AGI connection: %s", exc)
            state.trace("connection_lost", detail=type(exc).__name__)
        except asyncio.CancelledError as exc:
            state.trace("cancelled")
            self._finish(state, first.name, Outcome.ERROR, exc, start_time, started)
            raise
        except Exception as exc:
            outcome, error = Outcome.ERROR, exc
            log.exception("IVR failed at %s/%s; the caller goes to the fallback queue", state.flow.name, state.node)
            state.trace("error", detail=clip_detail(f"{type(exc).__name__}: {exc}"))
        # Awaited here, not in a coroutine of its own: every command's answer passes through each frame.
        session = state.session
        try:
            for name, value in _dialplan_variables(state, outcome):
                await session.set_variable(name, value)
        except (AgiError, ValueError) as exc:
            log.info("could not tell the dialplan the IVR outcome %s: %s", outcome, exc)
        result = self._finish(state, first.name, outcome, error, start_time, started)
        if self._raise_lost and error is not None and isinstance(error, AgiConnectionLost | AgiProtocolError):
            raise error
        return result

    def _finish(
        self,
        state: CallState,
        entry_flow: str,
        outcome: Outcome,
        error: BaseException | None,
        start_time: float,
        started: float,
    ) -> CallResult:
        # Like each step's time: the call's wall-clock start plus the monotonic time gone since (state.origin).
        ended = state.monotonic()
        queued = outcome is Outcome.QUEUED
        data: dict[str, Any] = {
            "uniqueid": state.uniqueid,
            "linkedid": state.linkedid,
            "caller_number": state.caller,
            "flow": entry_flow,
            "outcome": str(outcome),
            "path": state.path,
            "language": state.language,
            "queue": state.queue if queued else None,
            "priority": state.priority if queued else None,
            "choice": state.choice,
            "voicemails": [
                {"intent": m.intent, "path": str(m.path), "duration": m.duration, "ended_by": m.ended_by}
                for m in state.voicemails
            ],
            # Seconds since the epoch, like each step's "at": text only where someone reads them.
            "started_at": start_time,
            "ended_at": state.origin + ended,
            "duration": max(0.0, ended - started),
            "error": type(error).__name__ if error is not None else None,
        }
        self._bus.publish(IvrEnded(**data))
        # The state ends with the call: its path, variables and messages are handed on, not copied.
        return CallResult(data, outcome, error, state.variables, tuple(state.voicemails))


def _dialplan_variables(state: CallState, outcome: Outcome) -> list[tuple[str, str]]:
    """The channel variables that tell the dialplan what to do with the call, CC_ACTION last (the dialplan obeys
    only an explicit queue or hangup); none when nobody is left to route (the dialplan ends on AGISTATUS=HANGUP)."""
    if outcome is Outcome.HUNG_UP_IN_IVR or state.session.hung_up:
        return []
    if outcome is Outcome.QUEUED and state.queue is not None:
        told = [(dialplan.VAR_QUEUE, state.queue), (dialplan.VAR_PRIORITY, str(state.priority or 0))]
        if state.choice:
            told += [(dialplan.VAR_IVR_CHOICE, state.choice), (dialplan.inherited(dialplan.VAR_REASON), state.choice)]
        told.append((dialplan.VAR_ACTION, dialplan.ACTION_QUEUE))
        return told
    if outcome is Outcome.HANGUP or outcome is Outcome.VOICEMAIL:
        return [(dialplan.VAR_ACTION, dialplan.ACTION_HANGUP)]
    return [(dialplan.VAR_ACTION, dialplan.ACTION_FALLBACK)]


def _everyone_listens(event_type: type) -> bool:
    return True
