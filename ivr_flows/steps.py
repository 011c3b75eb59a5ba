"""What each step type does, and the per-call state the steps share.

A handler runs one step on the call and returns what happens next: ``None`` to go on with the node's next
step, a node reference to jump there, or :class:`Finish` to end the IVR. Each handler records what it did on
the call's path (``state.trace``) on every way out (the walk does not check); the table :data:`STEP_HANDLERS`
maps a step type to its handler. Play, menu and input steps, the commonest, have none: the walk
(``ivr_flows.engine``) plays their prompts and listens itself, made ready by :func:`prepare`; what a menu or an
input step heard is judged by :func:`menu_key` and :func:`input_heard`.
"""

from __future__ import annotations

import enum
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, Literal, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from ivr_flows.events import IvrChoice, IvrStep
from ivr_flows.ports import Clock, EventPublisher, FlowPorts, FlowSession, VoicemailMessage
from ivr_flows.prompts import PromptResolver
from ivr_flows.schema import (
    PLACEHOLDER,
    WEEKDAYS,
    Flow,
    GotoStep,
    HangupStep,
    HoursStep,
    InputStep,
    LookupStep,
    MenuStep,
    PlayStep,
    Prompt,
    QueueStep,
    RecordStep,
    SayStep,
    Schedule,
    SetStep,
    SwitchLanguageStep,
    VoicemailStep,
)

log = logging.getLogger("ivr_flows.steps")

# What GET DATA can hand back as typed keys ('#' ends the input and is not part of it).
INPUT_CHARS = frozenset("0123456789*")
# A product code as data: only keys a phone can send, and short. The input step's pattern is the real gate.
_PRODUCT_CODE = re.compile(r"[0-9*]{1,32}")
# Recording format "wav" is 8 kHz signed linear: RECORD FILE reports its end position in samples.
_WAV_RATE = 8000
# Caller-controlled text kept on the path and in events is cut to this length.
_CLIP = 64
_DETAIL_CLIP = 200
_VALUE_LIMIT = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Fixed prompt names remembered per engine (every prompt of every flow in every language is far fewer).
_NAMES_LIMIT = 4096


class Outcome(enum.StrEnum):
    QUEUED = "queued"
    VOICEMAIL = "voicemail"
    HUNG_UP_IN_IVR = "hung_up_in_ivr"
    ERROR = "error"
    # The flow itself ended the call (a hangup step) without a voicemail.
    HANGUP = "hangup"


class FlowRuntimeError(Exception):
    """The flow cannot go on (a loop without end, a node without a way out that slipped past validation)."""


@dataclass(frozen=True, slots=True)
class PathStep:
    """One thing that happened in the IVR: which step of which node, the keys pressed, and how it ended.

    The walk keeps each entry as the plain dict the ``IvrEnded`` event carries (built once, for the event and the
    call record alike); this is the typed view of one (:attr:`ivr_flows.engine.CallResult.path`). Times are
    numbers, from one clock reading per step: ``monotonic`` is the clock's monotonic time, ``at`` the wall-clock
    time in seconds since the epoch (the call's wall-clock start plus the monotonic time gone since). They become
    text only where someone reads them (:attr:`wall`, the API, the simulator).
    """

    flow: str
    node: str
    step: str
    index: int
    digits: str | None
    result: str | None
    detail: str | None
    monotonic: float
    at: float

    @classmethod
    def of(cls, entry: Mapping[str, Any]) -> PathStep:
        return cls(**entry)

    @property
    def wall(self) -> datetime:
        return datetime.fromtimestamp(self.at, UTC)

    def as_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "node": self.node,
            "step": self.step,
            "index": self.index,
            "digits": self.digits,
            "result": self.result,
            "detail": self.detail,
            "monotonic": self.monotonic,
            "at": self.at,
        }


class Finish(NamedTuple):
    outcome: Outcome


# What a handler returns: None to go on with the node's next step, a node reference (``node`` or
# ``flow:<name>``, as written in the flow) to jump there, or Finish to end the IVR. A jump is the reference
# itself, not an object made for it: every call takes several.
Transition = str | Finish | None

QUEUED = Finish(Outcome.QUEUED)
VOICEMAIL = Finish(Outcome.VOICEMAIL)
HUNG_UP = Finish(Outcome.HUNG_UP_IN_IVR)
HANGUP = Finish(Outcome.HANGUP)


def clip(text: str | None, limit: int = _CLIP) -> str | None:
    """Caller-controlled text made safe to log and store: no control characters, bounded length."""
    if not text or (len(text) <= limit and text.isprintable()):
        return text
    cleaned = _CONTROL.sub("?", text)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "…"


@dataclass(slots=True)
class CallState:
    """Everything one call's walk through the flows knows and has done."""

    session: FlowSession
    flow: Flow
    language: str
    ports: FlowPorts
    prompts: PromptResolver
    clock: Clock
    bus: EventPublisher
    queues: Mapping[str, str]
    caller: str
    # The call's ids, read once: the session works them out of the AGI environment on every access.
    uniqueid: str = ""
    linkedid: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    # The path as the IvrEnded event carries it, one dict per step (see PathStep for the fields).
    path: list[dict[str, Any]] = field(default_factory=list)
    # Names of fixed prompts already made, shared by every call of one engine (see :meth:`playable`).
    names: dict[tuple[int, str, str], tuple[Prompt, str]] = field(default_factory=dict)
    # Whether anyone listens to ``IvrChoice``: nobody reading it, no event is built (``IvrStep``: see
    # PublishingCallState).
    publish_choices: bool = True
    # The step being run: flow name, node, step kind, index in the node (one tuple per step, made at load).
    where: tuple[str, str, str, int] = ("", "", "", 0)
    queue: str | None = None
    priority: int | None = None
    choice: str | None = None
    voicemails: list[VoicemailMessage] = field(default_factory=list)
    # Wall-clock seconds since the epoch at monotonic time 0 (the call's start, read once): a step's wall-clock
    # time is this plus its monotonic time.
    origin: float = 0.0
    # The clock's monotonic reading, looked up once per call (every step reads it).
    monotonic: Callable[[], float] = field(default=time.monotonic)

    @property
    def node(self) -> str:
        return self.where[1]

    def trace(self, result: str | None = None, *, digits: str | None = None, detail: str | None = None) -> None:
        """Adds the current step's entry to the path. ``digits`` are the caller's and are clipped here (see clip);
        ``detail`` is kept as given: text that comes from the caller, the database or an error passes through
        :func:`clip_detail` first (the flow's own names and numbers need no clipping)."""
        if digits and not (len(digits) <= _CLIP and digits.isprintable()):
            digits = clip(digits)
        flow, node, kind, index = self.where
        # One clock reading per step: the wall-clock time follows from the call's start (see ``origin``).
        monotonic = self.monotonic()
        entry = {
            "flow": flow,
            "node": node,
            "step": kind,
            "index": index,
            "digits": digits,
            "result": result,
            "detail": detail,
            "monotonic": monotonic,
            "at": self.origin + monotonic,
        }
        self.path.append(entry)

    def known(self, prompt: str) -> str | None:
        """The name of a fixed prompt already made (no await needed), or None: then ask :meth:`playable`."""
        spec = self.flow.prompts[prompt]
        if spec.file is not None:
            return spec.file
        known = self.names.get((id(spec), self.language, prompt))
        # The entry holds the spec, so an id reused by a newer prompt never matches.
        return known[1] if known is not None and known[0] is spec else None

    async def playable(self, prompt: str, values: Mapping[str, str] | None = None) -> str:
        """The name Asterisk plays for a prompt of the current flow in the caller's language."""
        spec = self.flow.prompts[prompt]
        if spec.file is not None:
            return spec.file
        key = (id(spec), self.language, prompt)
        if values is None:
            # A fixed prompt is made once per engine; the entry holds the spec, so its id cannot be reused.
            known = self.names.get(key)
            if known is not None and known[0] is spec:
                return known[1]
        spoken = spec.text(self.language) or spec.text(self.flow.language)
        if spoken is None:
            raise FlowRuntimeError(f"prompt {prompt!r} has no text for {self.language}")
        text, voice = spoken
        if values is not None:
            return await self.prompts.text(prompt, self.language, render(text, values), voice)
        name = await self.prompts.text(prompt, self.language, text, voice)
        if len(self.names) >= _NAMES_LIMIT:
            self.names.clear()
        self.names[key] = (spec, name)
        return name

    async def speak(self, slug: str, text: str) -> None:
        name = await self.prompts.text(slug, self.language, text)
        await self.session.stream_file(name, "")


@dataclass(slots=True)
class PublishingCallState(CallState):
    """The call's state when someone listens to ``IvrStep``: every path entry is also published as one."""

    def trace(self, result: str | None = None, *, digits: str | None = None, detail: str | None = None) -> None:
        CallState.trace(self, result, digits=digits, detail=detail)
        self.bus.publish(IvrStep(uniqueid=self.uniqueid, linkedid=self.linkedid, **self.path[-1]))


def clip_detail(text: str) -> str:
    """A path entry's detail that holds text from the caller, the database or an error, made safe (see clip)."""
    return clip(text, _DETAIL_CLIP) or ""


_S = TypeVar("_S", PlayStep, MenuStep, InputStep)


@dataclass(slots=True, eq=False)
class Spoken(Generic[_S]):
    """A step that plays prompts of its own (play, menu, input) as the walk runs it, made at load: its numbers
    worked out once, and the names of its prompts remembered per language the first time a call hears them.
    It lives as long as the flows it was made from (a reload makes new ones), so the names cannot go stale."""

    step: _S
    prompts: tuple[str, ...]
    # How long a listening step waits for keys, in ms, and how many times it asks.
    timeout_ms: int = 0
    attempts: int = 1
    # What the step's path entry says (play: the prompts it played).
    detail: str | None = None
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)

    async def make_files(self, state: CallState) -> tuple[str, ...]:
        """The names of the step's prompts in the caller's language, made (or looked up) and remembered."""
        names = tuple([state.known(prompt) or await state.playable(prompt) for prompt in self.prompts])
        self.files[state.language] = names
        return names


@dataclass(frozen=True, slots=True)
class Clocked:
    """An hours step as the walk runs it: its schedule and the schedule's time zone looked up once."""

    step: HoursStep
    schedule: Schedule
    zone: ZoneInfo


def prepare(step: object, flow: Flow) -> object:
    """What the walk hands a step's handler: the step itself, or for play, menu and input a :class:`Spoken`,
    for hours a :class:`Clocked` (``flow``: the step's own)."""
    if isinstance(step, HoursStep):
        schedule = flow.schedules.get(step.schedule)
        if schedule is None:
            # The validator refuses such flows (unknown_schedule); flows that skipped it fail here, not mid-call.
            raise ValueError(f"flow {flow.name!r}: an hours step names no schedule of the flow ({step.schedule!r})")
        return Clocked(step, schedule, flow.zone(schedule))
    if isinstance(step, PlayStep):
        return Spoken(step, step.prompts, detail=",".join(step.prompts))
    if isinstance(step, MenuStep):
        return Spoken(step, step.prompt, int(step.timeout * 1000), step.attempts)
    if isinstance(step, InputStep):
        return Spoken(step, step.prompt[:1], int(step.timeout * 1000), step.attempts)
    return step


def render(template: str, values: Mapping[str, str]) -> str:
    """Fills ``{name}`` placeholders; nothing else in the text is interpreted (no format spec, no attributes)."""
    try:
        # The template made into a format string whose only fields are its plain names (str.format in C).
        return _format_string(template).format_map(values)
    except KeyError:
        # A name with no value: it is spoken as nothing.
        return PLACEHOLDER.sub(lambda match: values.get(match.group(1), ""), template)


@functools.lru_cache(maxsize=1024)
def _format_string(template: str) -> str:
    # Text, placeholder name, text, ...: every brace of the text is doubled (spoken as written), and each
    # placeholder becomes a field that names a key and nothing more (PLACEHOLDER allows no dots, brackets or
    # format specs). A flow's templates are few and each is filled on many calls.
    parts = PLACEHOLDER.split(template)
    return "".join(
        "{" + part + "}" if index % 2 else part.replace("{", "{{").replace("}", "}}")
        for index, part in enumerate(parts)
    )


# -- spoken values --------------------------------------------------------------------------------------

_CURRENCY_WORDS = {
    "en": {"CNY": ("yuan", "fen"), "USD": ("dollars", "cents"), "EUR": ("euros", "cents")},
    "zh": {"CNY": ("元", "分"), "USD": ("美元", "美分"), "EUR": ("欧元", "欧分")},
}
_ZH_WEEKDAYS = "一二三四五六日"


def money_text(amount: Decimal, currency: str, lang: str) -> str:
    cents_total = int((amount.copy_abs() * 100).to_integral_value())
    whole, cents = divmod(cents_total, 100)
    sign = "-" if amount < 0 else ""
    words = _CURRENCY_WORDS.get(lang, _CURRENCY_WORDS["en"])
    unit, sub = words.get(currency, words["CNY"])
    if lang == "zh":
        if currency == "CNY":
            jiao, fen = divmod(cents, 10)
            text = f"{sign}{whole}元"
            if jiao:
                text += f"{jiao}角"
            if fen:
                text += f"{'零' if not jiao else ''}{fen}分"
            return text
        return f"{sign}{whole}{unit}" + (f"{cents}{sub}" if cents else "")
    text = f"{sign}{whole} {unit}"
    return text + (f" {cents} {sub}" if cents else "")


def date_text(day: date, lang: str) -> str:
    if lang == "zh":
        return f"{day.year}年{day.month}月{day.day}日，星期{_ZH_WEEKDAYS[day.weekday()]}"  # noqa: RUF001
    return f"{day:%A}, {day:%B} {day.day}, {day.year}"


def digits_text(digits: str) -> str:
    # One token per key, so the synthesizer reads "1 0 0 1" and not "one thousand and one".
    return " ".join(digits)


# -- business hours -------------------------------------------------------------------------------------


def evaluate_hours(schedule: Schedule, at: datetime, zone: ZoneInfo) -> Literal["open", "closed", "holiday"]:
    """Open, closed or holiday at ``at`` (aware), in the schedule's time zone.

    A special day decides alone; then a holiday; then the weekday's spans.
    """
    local = at.astimezone(zone)
    day = local.date()
    minute = local.hour * 60 + local.minute
    if day in schedule.special:
        return "open" if any(span.contains(minute) for span in schedule.special[day]) else "closed"
    if any(holiday.covers(day) for holiday in schedule.holidays):
        return "holiday"
    weekday = WEEKDAYS[day.weekday()]
    spans = next((spans for key, spans in schedule.weekly.items() if key == weekday), ())
    return "open" if any(span.contains(minute) for span in spans) else "closed"


# -- the handlers ---------------------------------------------------------------------------------------


def menu_key(step: MenuStep, state: CallState, digit: str | None) -> str | None:
    """What a key heard by a menu does (both walks play the menu's prompts themselves): the node a valid key
    chooses (traced, and published as ``IvrChoice``), or None when the menu asks again (traced as ``no_input`` or
    ``invalid``; the step's ``no_input`` or ``invalid`` prompt plays first)."""
    if not digit:
        state.trace("no_input")
        return None
    if len(digit) == 1 and digit in step.options:
        target = step.options[digit]
        state.trace("chosen", digits=digit, detail=target)
        if state.publish_choices:
            state.bus.publish(
                IvrChoice(
                    uniqueid=state.uniqueid,
                    linkedid=state.linkedid,
                    digits=digit,
                    flow=state.flow.name,
                    node=state.node,
                    target=target,
                )
            )
        return target
    state.trace("invalid", digits=digit)
    return None


def retries_exhausted(listening: Spoken[MenuStep] | Spoken[InputStep], state: CallState) -> str:
    """Where a menu or an input step sends the call once it has asked as many times as it may (traced)."""
    state.trace("retries_exhausted", detail=listening.step.on_fail)
    return listening.step.on_fail


def check_input(step: InputStep, digits: str) -> str:
    """Why typed input is refused, or ``accepted``. Length comes first, so no pattern ever sees a flood."""
    if not digits:
        return "no_input"
    if len(digits) > step.max_digits:
        return "too_long"
    if not set(digits) <= INPUT_CHARS:
        return "not_digits"
    if len(digits) < step.min_digits:
        return "too_short"
    if step.regex.fullmatch(digits) is None:
        return "no_match"
    return "accepted"


def input_heard(prompted: Spoken[InputStep], state: CallState, digits: str) -> bool:
    """Whether keys typed into an input step are taken (the walk plays its prompt and collects them itself, see
    ``ivr_flows.engine``): traced with the verdict of :func:`check_input`; taken keys are kept in the step's
    variable. Refused ones make the step ask again (its ``no_input`` or ``invalid`` prompt plays first)."""
    step = prompted.step
    verdict = check_input(step, digits)
    state.trace(verdict, digits=digits)
    if verdict == "accepted":
        state.variables[step.var] = digits
        return True
    return False


async def run_say(step: SayStep, state: CallState) -> Transition:
    value = render(step.value, state.variables).strip()
    lang = state.language
    try:
        if step.format == "digits":
            if not value.isdigit() or len(value) > _CLIP:
                raise ValueError(value)
            # Asterisk's own recordings exist for English; other languages are synthesized.
            if lang == "en":
                await state.session.say_digits(value)
            else:
                await state.speak("say-digits", digits_text(value))
        elif step.format == "number":
            number = int(value)
            if abs(number) > 10**12:
                raise ValueError(value)
            if lang == "en":
                await state.session.say_number(number)
            else:
                await state.speak("say-number", str(number))
        elif step.format == "date":
            day = state.clock.now().astimezone(state.flow.zone()).date() if value == "today" else None
            day = day or date.fromisoformat(value)
            await state.speak("say-date", date_text(day, lang))
        else:
            amount = Decimal(value)
            if not amount.is_finite() or abs(amount) > 10**12:
                raise ValueError(value)
            await state.speak("say-money", money_text(amount, step.currency, lang))
    except (ValueError, InvalidOperation):
        # A variable that does not hold what the step says it holds: skip the read-out, keep the call going.
        state.trace("skipped", detail=f"not a {step.format}: {clip(value, 32)}")
        return None
    state.trace(step.format, detail=clip_detail(value))
    return None


async def run_lookup(step: LookupStep, state: CallState) -> Transition:
    code = state.variables.get(step.code, "")
    if _PRODUCT_CODE.fullmatch(code) is None:
        # Only a set step could put such a value here; the input step's pattern refuses it before any lookup.
        state.trace("invalid_code", digits=code)
        return step.not_found
    product = await state.ports.catalog.find(code)
    if product is None:
        state.trace("not_found", digits=code, detail=step.not_found)
        return step.not_found
    lang = state.language
    words = step.availability.get(product.availability, {})
    values = {
        "code": digits_text(code),
        "name": db_text(product.name),
        "price": money_text(product.price, step.currency, lang),
        "availability": db_text(next((text for key, text in words.items() if key == lang), product.availability)),
        "spoken": db_text(product.spoken.get(lang, "")),
    }
    name = await state.playable(step.found, values)
    await state.session.stream_file(name, "")
    state.variables["product_name"] = values["name"]
    state.trace("found", digits=code, detail=clip_detail(product.name))
    return None


def db_text(text: str) -> str:
    """Text from the database made safe to speak: no control characters, bounded."""
    # Text from the database is spoken, never interpreted: espeak-ng reads it from stdin without SSML.
    if len(text) <= _VALUE_LIMIT and text.isprintable():
        # No control character in it (they are not printable): nothing to replace.
        return text
    return _CONTROL.sub(" ", text)[:_VALUE_LIMIT]


def run_hours(hours: Clocked, state: CallState) -> Transition:
    step = hours.step
    verdict = evaluate_hours(hours.schedule, state.clock.now(), hours.zone)
    if verdict == "open":
        target = step.open
    elif verdict == "holiday" and step.holiday:
        target = step.holiday
    else:
        target = step.closed
    state.trace(verdict, detail=target)
    return target


def caller_number(raw: str) -> str:
    """Asterisk says ``unknown`` when there is no caller ID; anything else is kept, as data, bounded."""
    value = raw.strip()
    if not value or value.lower() == "unknown":
        return ""
    return _CONTROL.sub("", value)[:_CLIP]


async def run_queue(step: QueueStep, state: CallState) -> Transition:
    priority = step.priority
    tier: str | None = None
    if priority is None:
        if state.caller:
            try:
                tier = await state.ports.directory.tier(state.caller)
            except Exception:
                # The caller still gets an agent when the CRM does not answer, just without VIP priority.
                log.warning("customer tier lookup failed; queueing with the default priority", exc_info=True)
        priority = state.flow.priorities.get(tier, state.flow.default_priority) if tier else None
        if priority is None:
            priority = state.flow.default_priority
    state.queue = state.queues[step.queue]
    state.priority = priority
    state.choice = step.reason
    detail = f"{state.queue} priority={priority} tier={tier or '-'} reason={step.reason}"
    # The tier is the CRM's text.
    state.trace("queued", detail=clip_detail(detail) if tier else detail)
    return QUEUED


async def run_voicemail(step: VoicemailStep, state: CallState) -> Transition:
    if step.prompt is not None:
        await state.session.stream_file(state.known(step.prompt) or await state.playable(step.prompt), "")
    target = await state.ports.voicemail.allocate(uniqueid=state.uniqueid, intent=step.intent)
    started = state.clock.monotonic()
    recorded_at = state.clock.now()
    result = await state.session.record_file(
        target.record_as,
        target.fmt,
        "#",
        step.max_seconds * 1000,
        beep=step.beep,
        silence_seconds=step.silence_seconds,
    )
    elapsed = max(0.0, state.clock.monotonic() - started)
    duration = result.endpos / _WAV_RATE if result.endpos is not None else elapsed
    if duration <= 0:
        state.trace("empty", digits=result.digit, detail=clip_detail(result.reason))
        return HUNG_UP if result.reason == "hangup" else None
    message = VoicemailMessage(
        intent=step.intent,
        caller_number=state.caller,
        path=target.path,
        duration=round(duration, 3),
        uniqueid=state.uniqueid,
        linkedid=state.linkedid,
        recorded_at=recorded_at,
        language=state.language,
        flow=state.flow.name,
        ended_by=result.reason,
        did=state.variables.get("did", ""),
    )
    # Stored even when the caller hung up while speaking: what was said is kept.
    await state.ports.voicemail.store(message)
    state.voicemails.append(message)
    # How the recording ended is Asterisk's own word, passed on as it came.
    state.trace(
        "recorded",
        digits=result.digit,
        detail=clip_detail(f"{step.intent} {message.duration}s ended_by={result.reason}"),
    )
    if result.reason == "hangup":
        return VOICEMAIL
    return None


async def run_record(step: RecordStep, state: CallState) -> Transition:
    session = state.session
    try:
        await state.ports.recording.start_on_demand(
            uniqueid=state.uniqueid, linkedid=state.linkedid, channel=session.env.channel, reason=step.reason
        )
    except Exception:
        # Losing the recording is bad; losing the caller over it is worse.
        log.warning("could not start the on-demand recording (%s)", step.reason, exc_info=True)
        state.trace("failed", detail=step.reason)
        return None
    state.trace("started", detail=step.reason)
    return None


def run_set(step: SetStep, state: CallState) -> Transition:
    state.variables.update(step.values)
    state.trace(detail=",".join(f"{key}={value}" for key, value in step.values.items()))
    return None


def run_goto(step: GotoStep, state: CallState) -> Transition:
    state.trace(detail=step.target)
    return step.target


def run_hangup(step: HangupStep, state: CallState) -> Transition:
    state.trace()
    return VOICEMAIL if state.voicemails else HANGUP


def run_switch_language(step: SwitchLanguageStep, state: CallState) -> Transition:
    spoken = list(state.flow.spoken_languages)
    if step.to == "next":
        position = spoken.index(state.language) if state.language in spoken else -1
        state.language = spoken[(position + 1) % len(spoken)]
    else:
        state.language = step.to
    state.variables["language"] = state.language
    state.trace(state.language)
    return None


# A handler is a coroutine function when its step talks to the caller or the outside; the steps that only decide
# (hours, set, goto, hangup, switch_language) are plain functions, called without a coroutine per step.
StepHandler = Callable[[Any, CallState], Awaitable[Transition]] | Callable[[Any, CallState], Transition]

STEP_HANDLERS: Mapping[type, StepHandler] = {
    SayStep: run_say,
    LookupStep: run_lookup,
    HoursStep: run_hours,
    QueueStep: run_queue,
    VoicemailStep: run_voicemail,
    RecordStep: run_record,
    SetStep: run_set,
    GotoStep: run_goto,
    HangupStep: run_hangup,
    SwitchLanguageStep: run_switch_language,
}
