"""The reference walk: how the flow engine walks a call through the flows, written to be read.

Two walks do the same thing:

- the fast walk, :meth:`ivr_flows.engine.FlowEngine.run`: what production runs (the FastAGI ``ivr`` route) and what
  ``bench/ivr.py`` measures. It is hand-inlined for speed (the engine must cost under 10% more than hand-written
  AGI calls, docs/benchmarks.md), over steps made ready at load as positional tuples; hard to follow.
- the reference walk, :class:`ReferenceFlowEngine` here: the same engine (same constructor, flows and ports), whose
  ``run`` walks the call step by step with named types, one function per kind of step the fast walk runs
  itself. Read this one to learn what a call goes through; nothing in production uses it.

The fast walk must keep giving this walk's results for every call: the same AGI commands, the same path and
``IvrEnded`` data (outcome, queue, priority, choice, language, voicemails), the same bus events in the same order
and the same dialplan variables. ``tests/unit/test_flows_walks.py`` drives the shipped flows through both and
compares everything. A change of behaviour is made in both walks; making the fast walk faster leaves this one as it
is.

What the two walks share, and so is written once: the call's state and its path entries
(:class:`ivr_flows.steps.CallState`, whose ``trace`` adds one entry per step), the handlers of the steps the fast
walk does not inline either (say, lookup, queue, voicemail, record, set, goto, hangup, switch_language: plain
functions of :mod:`ivr_flows.steps`), the list of variables that tell the dialplan what to do
(``engine._dialplan_variables``), and the end of the call (``FlowEngine._finish``: the ``IvrEnded`` event and the
:class:`~ivr_flows.engine.CallResult`). What the fast walk inlines or prepares at load (the walk itself, and the
play, menu, input and hours steps) is spelled out here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import NamedTuple, assert_never

from callcenter.agi.exceptions import AgiConnectionLost, AgiError, AgiHangup, AgiProtocolError
from ivr_flows.engine import CallResult, FlowEngine, _dialplan_variables
from ivr_flows.events import IvrChoice, IvrStarted, IvrStep
from ivr_flows.ports import FlowSession
from ivr_flows.schema import (
    MENU_DIGITS,
    Flow,
    FlowSet,
    GotoStep,
    HangupStep,
    HoursStep,
    InputStep,
    LookupStep,
    MenuStep,
    PlayStep,
    QueueStep,
    RecordStep,
    SayStep,
    SetStep,
    Step,
    SwitchLanguageStep,
    VoicemailStep,
)
from ivr_flows.steps import (
    CallState,
    Finish,
    FlowRuntimeError,
    Outcome,
    PublishingCallState,
    Transition,
    caller_number,
    check_input,
    clip_detail,
    evaluate_hours,
    menu_key,
    run_goto,
    run_hangup,
    run_lookup,
    run_queue,
    run_record,
    run_say,
    run_set,
    run_switch_language,
    run_voicemail,
)

log = logging.getLogger("ivr_flows.walk")


class Place(NamedTuple):
    """Where the call is: what each path entry says of the step that made it (``CallState.where``)."""

    flow: str
    node: str
    # The step's kind (play, menu, ...), or "answer" before the first step.
    kind: str
    # The step's position in its node, from 0 (the path entry's ``index``; ``index`` itself is a tuple method).
    position: int


@dataclass(frozen=True, slots=True)
class Node:
    """A node of a flow as the walk runs it.

    A node written as steps followed by ``goto: x`` goes to x once its steps are done: that closing goto is how the
    node ends, not a step of its own (it leaves no path entry). A node that is nothing but a goto keeps it as its
    one step.
    """

    flow: Flow
    name: str
    steps: tuple[Step, ...]
    # Where the node goes when every step went on (its closing goto), or None.
    closing: str | None

    @classmethod
    def of(cls, flow: Flow, name: str) -> Node:
        steps = flow.nodes[name]
        last = steps[-1]
        if len(steps) > 1 and isinstance(last, GotoStep):
            return cls(flow, name, steps[:-1], last.target)
        return cls(flow, name, steps, None)


@dataclass(frozen=True, slots=True)
class Leaving:
    """How the walk leaves a node: to another node (a reference as the flow writes it: ``node`` or
    ``flow:<name>``) or out of the IVR (:class:`~ivr_flows.steps.Finish`), after taking ``steps`` of its steps."""

    to: str | Finish
    steps: int


@dataclass(frozen=True, slots=True)
class Start:
    """When the call came in: the wall-clock time in seconds since the epoch, and the clock's monotonic reading."""

    at: float
    monotonic: float


class ReferenceFlowEngine(FlowEngine):
    """A :class:`~ivr_flows.engine.FlowEngine` that walks each call with the reference walk (this module).

    Built exactly like a FlowEngine, and gives the same results; slower. For reading, and for the tests that hold
    the fast walk to it.
    """

    async def run(self, session: FlowSession, *, flow: str | None = None) -> CallResult:
        """Walks one call from the start of ``flow`` (default: the entry flow). Never raises for the call's own
        troubles: they become the outcome (and the error on the result); only cancellation propagates, and, with
        ``raise_lost``, a lost connection or protocol error once the call is finished and published."""
        # The flows as the call starts: a reload (replace_flows) only reaches the calls that start after it.
        flows = self.flows
        first = flows[flow or self.entry]
        state, start = self._begin(session, first)
        error: BaseException | None = None
        try:
            if self._answer:
                await session.answer()
            outcome = await self._walk(state, flows, first)
        except AgiHangup:
            # The caller hung up. A message left before that still counts: the call ended in voicemail.
            outcome = Outcome.VOICEMAIL if state.voicemails else Outcome.HUNG_UP_IN_IVR
            state.trace("caller_hangup")
        except (AgiConnectionLost, AgiProtocolError) as exc:
            # Asterisk is gone, or talks nonsense: the call cannot be walked further.
            outcome, error = Outcome.ERROR, exc
            log.warning("IVR lost its AGI connection: %s", exc)
            state.trace("connection_lost", detail=type(exc).__name__)
        except asyncio.CancelledError as exc:
            # The engine is stopping: the call is still published as it ended, then the cancellation goes on.
            state.trace("cancelled")
            self._finish(state, first.name, Outcome.ERROR, exc, start.at, start.monotonic)
            raise
        except Exception as exc:
            # Anything else (a broken port, a flow that loops, a jump to nowhere): the dialplan's fallback queue
            # takes the caller.
            outcome, error = Outcome.ERROR, exc
            log.exception("IVR failed at %s/%s; the caller goes to the fallback queue", state.flow.name, state.node)
            state.trace("error", detail=clip_detail(f"{type(exc).__name__}: {exc}"))
        await self._tell_dialplan(state, outcome)
        # The IvrEnded event, and the result made of its data.
        result = self._finish(state, first.name, outcome, error, start.at, start.monotonic)
        if self._raise_lost and isinstance(error, AgiConnectionLost | AgiProtocolError):
            raise error
        return result

    def _begin(self, session: FlowSession, first: Flow) -> tuple[CallState, Start]:
        """The call's state at its start, and ``IvrStarted`` published."""
        env = session.env
        # The dialplan passes the call's linkedid and the number dialled in the script's query string.
        params = env.params
        linkedid = params.get("linkedid") or session.linkedid
        did = params.get("did", env.extension)
        clock = self._clock
        start_at = clock.now().timestamp()
        start_monotonic = clock.monotonic()
        caller = caller_number(env.callerid)
        # Someone listening to every step gets an IvrStep event per path entry (PublishingCallState).
        state_class = PublishingCallState if self._wants(IvrStep) else CallState
        state = state_class(
            session=session,
            flow=first,
            language=first.language,
            ports=self._ports,
            prompts=self._prompts,
            clock=clock,
            bus=self._bus,
            queues=self._queues,
            caller=caller,
            uniqueid=session.uniqueid,
            linkedid=linkedid,
            # What prompts and steps can read as {caller}, {language} and {did}.
            variables={"caller": caller, "language": first.language, "did": did},
            names=self._names,
            publish_choices=self._wants(IvrChoice),
            # Until the first step, what happens is the answer (a hangup before it is traced there).
            where=Place(first.name, first.start_node, "answer", 0),
            # A step's wall-clock time is the call's start plus the monotonic time gone since.
            origin=start_at - start_monotonic,
            monotonic=clock.monotonic,
        )
        self._bus.publish(
            IvrStarted(
                uniqueid=state.uniqueid,
                linkedid=linkedid,
                caller_number=env.callerid,
                caller_name=env.calleridname,
                did=did,
                flow=first.name,
                language=state.language,
                at=start_at,
            )
        )
        return state, Start(start_at, start_monotonic)

    async def _walk(self, state: CallState, flows: FlowSet, first: Flow) -> Outcome:
        """Runs node after node from the start of ``first`` until a step ends the IVR; returns how it ended."""
        node = Node.of(first, first.start_node)
        # Steps taken so far, counted a node at a time as the walk leaves it: a flow that goes round without
        # listening to the caller is stopped at the engine's limit.
        taken = 0
        while True:
            leaving = await self._run_node(node, state)
            if isinstance(leaving.to, Finish):
                return leaving.to.outcome
            taken += leaving.steps
            if taken >= self._max_steps:
                raise FlowRuntimeError(f"{taken} steps and still going: the flow loops without end")
            # A node of the same flow, or flow:<name> for the start of another (KeyError when there is none).
            flow, name = flows.resolve(node.flow, leaving.to)
            if flow is not node.flow:
                # Into another flow: its prompts, schedules and priorities from now on. A caller whose language
                # the new flow does not speak hears its own language from here.
                state.flow = flow
                if state.language not in flow.spoken_languages:
                    state.language = flow.language
                    state.variables["language"] = state.language
            node = Node.of(flow, name)

    async def _run_node(self, node: Node, state: CallState) -> Leaving:
        """Runs the node's steps in order until one hands the call on; else the closing goto leads on."""
        for index, step in enumerate(node.steps):
            state.where = Place(node.flow.name, node.name, step.KIND, index)
            transition = await take_step(step, state)
            if transition is not None:
                return Leaving(transition, index + 1)
        if node.closing is None:
            # The validator refuses such nodes (no_way_out); flows that skipped it end here.
            raise FlowRuntimeError(f"node {node.flow.name}/{node.name} ended without handing the call on")
        return Leaving(node.closing, len(node.steps))

    async def _tell_dialplan(self, state: CallState, outcome: Outcome) -> None:
        """Sets the channel variables the dialplan routes the call by (queue, priority, choice, CC_ACTION last).
        A failure here is logged and the call ends anyway: the dialplan falls back on its own."""
        try:
            for name, value in _dialplan_variables(state, outcome):
                await state.session.set_variable(name, value)
        except (AgiError, ValueError) as exc:
            log.info("could not tell the dialplan the IVR outcome %s: %s", outcome, exc)


async def take_step(step: Step, state: CallState) -> Transition:
    """Runs one step on the call. Returns None to go on with the node's next step, a node reference to jump
    there, or Finish to end the IVR. Each step adds its own entry to the path on every way out."""
    match step:
        case PlayStep():
            # Plays prompts to the caller; keys pressed meanwhile are ignored.
            await play(step, state)
            return None
        case MenuStep():
            # Asks for one key and goes where it leads; asks again on a wrong key or silence, then gives up.
            return await menu(step, state)
        case InputStep():
            # Collects typed digits into a variable; asks again when they do not fit, then gives up.
            return await collect_input(step, state)
        case HoursStep():
            # Goes one way when the center is open, another when closed or on a holiday (by the clock).
            return hours(step, state)
        case SayStep():
            # Reads a number, digits, a date or an amount of money to the caller.
            return await run_say(step, state)
        case LookupStep():
            # Finds the product whose code the caller typed and reads it out; an unknown code goes elsewhere.
            return await run_lookup(step, state)
        case QueueStep():
            # Ends the IVR: the dialplan queues the caller, with a priority from the caller's CRM tier.
            return await run_queue(step, state)
        case VoicemailStep():
            # Plays its prompt and records a message; the message is filed with its intent.
            return await run_voicemail(step, state)
        case RecordStep():
            # Starts recording the call from here on (a complaint); a failure does not stop the call.
            return await run_record(step, state)
        case SetStep():
            # Sets flow variables.
            return run_set(step, state)
        case GotoStep():
            # Jumps to another node (the node's only step: a closing goto is not a step, see Node).
            return run_goto(step, state)
        case HangupStep():
            # Ends the IVR: the dialplan hangs up.
            return run_hangup(step, state)
        case SwitchLanguageStep():
            # Changes the language the caller hears from now on.
            return run_switch_language(step, state)
        case _:
            assert_never(step)


async def play(step: PlayStep, state: CallState) -> None:
    """Plays the step's prompts one after the other, in the caller's language."""
    # Every name is made (a text prompt synthesized the first time) before the first plays, as in the fast walk:
    # a prompt that cannot be made fails the step before the caller hears any of it.
    names = [await state.playable(prompt) for prompt in step.prompts]
    for name in names:
        await state.session.stream_file(name, "")
    state.trace(detail=",".join(step.prompts))


async def menu(step: MenuStep, state: CallState) -> Transition:
    """Asks the caller for one key, up to ``1 + retries`` times; a valid key leads to its node, and when every
    attempt is spent the call goes to ``on_fail``."""
    names = [await state.playable(prompt) for prompt in step.prompt]
    for _attempt in range(step.attempts):
        key = await listen_for_key(state.session, names, int(step.timeout * 1000))
        target = menu_key(step, state, key)
        if target is not None:
            return target
        # Asked again: a word first on why (a wrong key, or nothing heard), when the menu has one.
        again = step.invalid if key else step.no_input
        if again is not None:
            await state.session.stream_file(await state.playable(again), "")
    state.trace("retries_exhausted", detail=step.on_fail)
    return step.on_fail


async def listen_for_key(session: FlowSession, names: list[str], timeout_ms: int) -> str | None:
    """Plays a menu's prompts listening for a key. A key pressed during any prompt but the last answers at once
    (the rest is not played); the last one is played with GET OPTION, which also waits ``timeout_ms`` after it."""
    *early, last = names
    for name in early:
        pressed = (await session.stream_file(name, MENU_DIGITS)).digit
        if pressed:
            return pressed
    return (await session.get_option(last, MENU_DIGITS, timeout_ms)).digit


async def collect_input(step: InputStep, state: CallState) -> Transition:
    """Plays the step's prompt and collects digits (GET DATA: up to ``max_digits``, ``#`` ends), up to
    ``1 + retries`` times. Digits that pass :func:`~ivr_flows.steps.check_input` go into the step's variable and
    the node goes on; when every attempt is spent the call goes to ``on_fail``."""
    name = await state.playable(step.prompt[0])
    for _attempt in range(step.attempts):
        typed = (await state.session.get_data(name, int(step.timeout * 1000), step.max_digits)).digits
        verdict = check_input(step, typed)
        state.trace(verdict, digits=typed)
        if verdict == "accepted":
            state.variables[step.var] = typed
            return None
        # Asked again: a word first on why (digits that do not fit, or none at all), when the step has one.
        again = step.invalid if typed else step.no_input
        if again is not None:
            await state.session.stream_file(await state.playable(again), "")
    state.trace("retries_exhausted", detail=step.on_fail)
    return step.on_fail


def hours(step: HoursStep, state: CallState) -> str:
    """Where the call goes by the clock and the flow's schedule: open, closed, or on a holiday (a schedule's
    holiday is simply closed when the step has no holiday branch)."""
    schedule = state.flow.schedules[step.schedule]
    verdict = evaluate_hours(schedule, state.clock.now(), state.flow.zone(schedule))
    if verdict == "open":
        target = step.open
    elif verdict == "holiday" and step.holiday:
        target = step.holiday
    else:
        target = step.closed
    state.trace(verdict, detail=target)
    return target
