"""The shape of a flow file, as pydantic models.

A flow is a set of named nodes; a node is a list of typed steps run in order (or one step on its own). Each
step is written as a mapping with one key, the step type: ``- play: welcome``, ``- menu: {...}``, or the bare
word for steps without arguments (``- hangup``). Steps that hand the call on (goto, menu, hours, queue, hangup)
end their node; the others run in sequence, and ``input`` and ``lookup`` leave the node only on failure.

A node reference is a node id of the same flow, or ``flow:<name>`` for the start of another flow.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from ivr_flows.loader import YamlPath, line_of

Lang = Literal["en", "zh"]
LANGUAGES: tuple[Lang, ...] = ("en", "zh")
# Keys a caller can press; GET OPTION reports any of them.
MENU_DIGITS = "0123456789*#"
FLOW_REF_PREFIX = "flow:"

IDENT = r"^[a-z][a-z0-9_]{0,63}$"
_IDENT = re.compile(IDENT)
# A sound file as Asterisk names it: a path under the sounds directory, without extension.
_SOUND_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}$")
_SPAN = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")
# Template placeholders in prompt text: {name}; nothing else is interpreted.
PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Ident = Annotated[str, Field(pattern=IDENT)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_ref(value: str) -> str:
    target = value.removeprefix(FLOW_REF_PREFIX)
    if not _IDENT.match(target):
        raise ValueError(f"{value!r} is not a node id (lowercase letters, digits, '_') or flow:<name>")
    return value


NodeRef = Annotated[str, Field(min_length=1, max_length=80)]


# -- prompts --------------------------------------------------------------------------------------------


class VoicedText(_Model):
    """Text spoken in another voice than the caller's language (``中文服务请按9`` inside the English menu)."""

    text: str = Field(min_length=1, max_length=2000)
    voice: Lang


PromptText = Annotated[str, Field(min_length=1, max_length=2000)] | VoicedText


class Prompt(_Model):
    """Either a sound file Asterisk already has, or text per language that is synthesized with espeak-ng."""

    file: str | None = None
    en: PromptText | None = None
    zh: PromptText | None = None

    @field_validator("file")
    @classmethod
    def _file_name(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not _SOUND_FILE.match(value) or ".." in value.split("/"):
            raise ValueError("a sound file is a relative path under the sounds directory, without extension")
        if value.rsplit("/", 1)[-1].count(".") and value.rsplit(".", 1)[-1] in {"wav", "gsm", "ulaw", "alaw"}:
            raise ValueError("leave the extension out: Asterisk picks the format")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Prompt:
        texts = [lang for lang in LANGUAGES if getattr(self, lang) is not None]
        if self.file is not None and texts:
            raise ValueError("a prompt is either a sound file or text per language, not both")
        if self.file is None and not texts:
            raise ValueError("a prompt needs a sound file (file: ...) or text per language (en: ..., zh: ...)")
        return self

    @property
    def is_file(self) -> bool:
        return self.file is not None

    def text(self, lang: str) -> tuple[str, str] | None:
        """The text for ``lang`` and the voice to speak it in, or None when the prompt has none for it."""
        value = getattr(self, lang, None) if lang in LANGUAGES else None
        if value is None:
            return None
        if isinstance(value, VoicedText):
            return value.text, value.voice
        return value, lang

    def languages(self) -> tuple[str, ...]:
        return tuple(lang for lang in LANGUAGES if getattr(self, lang) is not None)

    def placeholders(self) -> set[str]:
        found: set[str] = set()
        for lang in self.languages():
            spoken = self.text(lang)
            if spoken is not None:
                found.update(PLACEHOLDER.findall(spoken[0]))
        return found


# -- business hours -------------------------------------------------------------------------------------


class Span(_Model):
    """Opening hours within one day, in minutes since midnight; ``end`` may be 24:00."""

    start: int = Field(ge=0, le=24 * 60)
    end: int = Field(ge=0, le=24 * 60)

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, raw: Any) -> Any:
        if isinstance(raw, int):  # bool too
            raise ValueError('write hours as a quoted "HH:MM-HH:MM" (YAML reads 09:00 as a number)')
        if not isinstance(raw, str):
            return raw
        match = _SPAN.match(raw.strip())
        if not match:
            raise ValueError(f'{raw!r} is not "HH:MM-HH:MM"')
        h1, m1, h2, m2 = (int(part) for part in match.groups())
        if m1 > 59 or m2 > 59 or h1 > 23 or h2 > 24 or (h2 == 24 and m2 != 0):
            raise ValueError(f"{raw!r} is not a time of day")
        return {"start": h1 * 60 + m1, "end": h2 * 60 + m2}

    @model_validator(mode="after")
    def _ordered(self) -> Span:
        if self.end <= self.start:
            raise ValueError("a span must end after it starts (split a span that crosses midnight in two)")
        return self

    def contains(self, minute: int) -> bool:
        return self.start <= minute < self.end

    def __str__(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"


def _spans(raw: Any) -> Any:
    """``"09:00-18:00"``, a list of such strings, or ``closed``."""
    if raw is None or raw == "closed" or raw is False:
        return []
    if isinstance(raw, str | int):
        return [raw]
    return raw


Spans = Annotated[tuple[Span, ...], Field(max_length=8)]


class Holiday(_Model):
    start: date
    end: date
    name: str = ""

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, raw: Any) -> Any:
        if isinstance(raw, date):
            return {"start": raw, "end": raw}
        if isinstance(raw, str):
            first, sep, last = raw.partition("..")
            try:
                start = date.fromisoformat(first.strip())
                end = date.fromisoformat(last.strip()) if sep else start
            except ValueError as exc:
                raise ValueError(f"{raw!r} is not YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD") from exc
            return {"start": start, "end": end}
        if isinstance(raw, dict) and "date" in raw:
            rest = {key: value for key, value in raw.items() if key != "date"}
            return {"start": raw["date"], "end": raw["date"], **rest}
        return raw

    @model_validator(mode="after")
    def _ordered(self) -> Holiday:
        if self.end < self.start:
            raise ValueError("a holiday must end on or after its first day")
        if self.end - self.start > timedelta(days=366):
            raise ValueError("a holiday longer than a year is a mistake")
        return self

    def covers(self, day: date) -> bool:
        return self.start <= day <= self.end


class Schedule(_Model):
    """Opening hours per weekday in a time zone, holidays (the holiday branch), and special days.

    A special day wins over everything (a working weekend, an early close); a holiday over the weekly hours.
    """

    timezone: str | None = None
    weekly: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], Spans] = Field(default_factory=dict)
    holidays: tuple[Holiday, ...] = ()
    special: dict[date, Spans] = Field(default_factory=dict)

    @field_validator("weekly", "special", mode="before")
    @classmethod
    def _normalise(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            return {key: _spans(value) for key, value in raw.items()}
        return raw

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else _check_zone(value)


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)") from exc
    return value


# -- steps ----------------------------------------------------------------------------------------------


class _Step(_Model):
    """A step is written ``{kind: body}``; ``_expand`` turns the short forms of a body into a mapping."""

    KIND: ClassVar[str]
    # Ends its node: nothing after it in the same node can run.
    TERMINAL: ClassVar[bool] = False
    SHAPE: ClassVar[str] = "a mapping"

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, raw: Any) -> Any:
        if isinstance(raw, str) and raw == cls.KIND:
            body: Any = None
        elif isinstance(raw, dict) and len(raw) == 1 and cls.KIND in raw:
            body = raw[cls.KIND]
        else:
            return raw
        body = {} if body is None else cls._expand(body)
        if not isinstance(body, dict):
            raise ValueError(f"{cls.KIND} takes {cls.SHAPE}")
        return body

    @classmethod
    def _expand(cls, body: Any) -> Any:
        return {} if body is None else body

    def targets(self) -> Iterator[tuple[str, str]]:
        """The nodes this step can send the call to, each with the field that names it."""
        return iter(())

    def prompt_names(self) -> Iterator[tuple[str, str]]:
        """The prompts this step plays, each with the field that names it."""
        return iter(())


def _names(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class PlayStep(_Step):
    KIND = "play"
    SHAPE = "a prompt name, a list of prompt names, or {prompts: [...]}"
    prompts: Annotated[tuple[Ident, ...], Field(min_length=1, max_length=16)]

    @classmethod
    def _expand(cls, body: Any) -> Any:
        if isinstance(body, str | list):
            return {"prompts": _names(body)}
        return body

    def prompt_names(self) -> Iterator[tuple[str, str]]:
        for name in self.prompts:
            yield "prompts", name


class _Listening(_Step):
    prompt: Annotated[tuple[Ident, ...], Field(min_length=1, max_length=8)]
    retries: int = Field(2, ge=0, le=9)
    timeout: float = Field(5.0, ge=0.5, le=60)
    invalid: Ident | None = None
    no_input: Ident | None = None
    on_fail: NodeRef

    @field_validator("prompt", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return _names(value)

    @field_validator("on_fail")
    @classmethod
    def _ref(cls, value: str) -> str:
        return _check_ref(value)

    def prompt_names(self) -> Iterator[tuple[str, str]]:
        for name in self.prompt:
            yield "prompt", name
        if self.invalid is not None:
            yield "invalid", self.invalid
        if self.no_input is not None:
            yield "no_input", self.no_input

    @property
    def attempts(self) -> int:
        return 1 + self.retries


class MenuStep(_Listening):
    """Plays its prompt(s) listening for one key; a valid key goes to its node. Invalid keys and silence
    play their prompts and ask again, ``retries`` times; then the call goes to ``on_fail``."""

    KIND = "menu"
    TERMINAL = True
    options: dict[str, NodeRef] = Field(min_length=1)

    @field_validator("options")
    @classmethod
    def _digits(cls, value: dict[str, str]) -> dict[str, str]:
        for digit, target in value.items():
            if len(digit) != 1 or digit not in MENU_DIGITS:
                raise ValueError(f"menu key {digit!r} is not one of 0-9, * or # (quote * and #)")
            _check_ref(target)
        return value

    def targets(self) -> Iterator[tuple[str, str]]:
        for digit, target in self.options.items():
            yield f"options.{digit}", target
        yield "on_fail", self.on_fail


class InputStep(_Listening):
    """Collects up to ``max_digits`` keys ended by ``#`` into a variable; the pattern must match all of it."""

    KIND = "input"
    var: Ident
    max_digits: int = Field(ge=1, le=32)
    min_digits: int = Field(1, ge=1, le=32)
    pattern: str | None = Field(None, max_length=200)
    # GET DATA always ends on '#' (app.c ast_app_getdata); it is the only terminator Asterisk offers.
    terminator: Literal["#"] = "#"
    timeout: float = Field(6.0, ge=0.5, le=60)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _bounds(self) -> InputStep:
        if self.min_digits > self.max_digits:
            raise ValueError("min_digits is larger than max_digits")
        if len(self.prompt) != 1:
            raise ValueError("input plays one prompt (GET DATA takes one file); put others in a play step before")
        return self

    @functools.cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern or f"[0-9]{{{self.min_digits},{self.max_digits}}}")

    def targets(self) -> Iterator[tuple[str, str]]:
        yield "on_fail", self.on_fail


class SayStep(_Step):
    """Speaks a value: a number, digits, a date (YYYY-MM-DD or ``today``) or an amount of money."""

    KIND = "say"
    SHAPE = "{number|digits|date|money: value} or {format: ..., value: ...}"
    format: Literal["number", "digits", "date", "money"]
    # A literal, or {var} for a flow variable.
    value: str = Field(min_length=1, max_length=64)
    currency: Literal["CNY", "USD", "EUR"] = "CNY"

    @classmethod
    def _expand(cls, body: Any) -> Any:
        if isinstance(body, dict) and len(body) == 1:
            ((key, value),) = body.items()
            if key in ("number", "digits", "date", "money"):
                return {"format": key, "value": str(value)}
        return body


class LookupStep(_Step):
    """Finds a product by the code in a variable and speaks the ``found`` template; else ``not_found``."""

    KIND = "lookup"
    code: Ident = "product_code"
    found: Ident
    not_found: NodeRef
    currency: Literal["CNY", "USD", "EUR"] = "CNY"
    # Words for the catalog's availability states, per language.
    availability: dict[Annotated[str, Field(pattern=IDENT)], dict[Lang, str]] = Field(default_factory=dict)

    @field_validator("not_found")
    @classmethod
    def _ref(cls, value: str) -> str:
        return _check_ref(value)

    def targets(self) -> Iterator[tuple[str, str]]:
        yield "not_found", self.not_found

    def prompt_names(self) -> Iterator[tuple[str, str]]:
        yield "found", self.found


class HoursStep(_Step):
    KIND = "hours"
    TERMINAL = True
    schedule: Ident
    open: NodeRef
    closed: NodeRef
    # Where a holiday goes; without it a holiday is simply closed.
    holiday: NodeRef | None = None

    @field_validator("open", "closed", "holiday")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        return None if value is None else _check_ref(value)

    def targets(self) -> Iterator[tuple[str, str]]:
        yield "open", self.open
        yield "closed", self.closed
        if self.holiday is not None:
            yield "holiday", self.holiday


class QueueStep(_Step):
    """Ends the IVR: the dialplan queues the caller. ``reason`` is the IVR choice attached to the call."""

    KIND = "queue"
    TERMINAL = True
    SHAPE = "general, expert, or {queue: ..., reason: ...}"
    queue: Literal["general", "expert"] = "general"
    reason: Ident
    # A fixed priority; without it the caller's CRM tier picks one from the flow's priorities.
    priority: int | None = Field(None, ge=0, le=100)

    @classmethod
    def _expand(cls, body: Any) -> Any:
        if isinstance(body, str):
            return {"queue": body}
        return body


class VoicemailStep(_Step):
    """Plays its prompt, beeps and records until ``#``, silence, the time limit or the caller's hangup."""

    KIND = "voicemail"
    intent: Ident
    prompt: Ident | None = None
    max_seconds: int = Field(120, ge=5, le=600)
    silence_seconds: int | None = Field(5, ge=1, le=60)
    beep: bool = True

    def prompt_names(self) -> Iterator[tuple[str, str]]:
        if self.prompt is not None:
            yield "prompt", self.prompt


class RecordStep(_Step):
    """Starts an on-demand recording of the call from here on (a complaint is recorded from the start)."""

    KIND = "record"
    SHAPE = "a reason, or {reason: ...}"
    reason: Ident

    @classmethod
    def _expand(cls, body: Any) -> Any:
        if isinstance(body, str):
            return {"reason": body}
        return body


class SetStep(_Step):
    """Sets flow variables: ``- set: {intent: complaint}``."""

    KIND = "set"
    SHAPE = "a mapping of variable names to values"
    values: dict[Annotated[str, Field(pattern=IDENT)], Annotated[str, Field(max_length=200)]] = Field(min_length=1)

    @classmethod
    def _expand(cls, body: Any) -> Any:
        if isinstance(body, dict) and "values" not in body:
            return {"values": {key: _scalar(value) for key, value in body.items()}}
        return body


def _scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return str(value)
    return value


class GotoStep(_Step):
    KIND = "goto"
    TERMINAL = True
    SHAPE = "a node id or flow:<name>"
    target: NodeRef

    @classmethod
    def _expand(cls, body: Any) -> Any:
        if isinstance(body, str):
            return {"target": body}
        return body

    @field_validator("target")
    @classmethod
    def _ref(cls, value: str) -> str:
        return _check_ref(value)

    def targets(self) -> Iterator[tuple[str, str]]:
        yield "target", self.target


class HangupStep(_Step):
    """Ends the IVR and tells the dialplan to hang up."""

    KIND = "hangup"
    TERMINAL = True


class SwitchLanguageStep(_Step):
    """Changes the caller's language: to one language, or ``next`` in the flow's list (the "press 9" key)."""

    KIND = "switch_language"
    SHAPE = "en, zh or next"
    to: Literal["en", "zh", "next"] = "next"

    @classmethod
    def _expand(cls, body: Any) -> Any:
        if isinstance(body, str):
            return {"to": body}
        return body


STEP_TYPES: tuple[type[_Step], ...] = (
    PlayStep,
    MenuStep,
    InputStep,
    SayStep,
    LookupStep,
    HoursStep,
    QueueStep,
    VoicemailStep,
    RecordStep,
    SetStep,
    GotoStep,
    HangupStep,
    SwitchLanguageStep,
)
STEP_KINDS: dict[str, type[_Step]] = {cls.KIND: cls for cls in STEP_TYPES}


def step_kind(raw: Any) -> str | None:
    """The step type a raw YAML value names (the pydantic discriminator)."""
    if isinstance(raw, _Step):
        return raw.KIND
    if isinstance(raw, dict) and len(raw) == 1:
        key = next(iter(raw))
        return key if key in STEP_KINDS else None
    if isinstance(raw, str) and raw in STEP_KINDS:
        return raw
    return None


STEP_ERROR = "a step is a mapping with one key, the step type: " + ", ".join(STEP_KINDS)

Step = Annotated[
    Annotated[PlayStep, Tag("play")]
    | Annotated[MenuStep, Tag("menu")]
    | Annotated[InputStep, Tag("input")]
    | Annotated[SayStep, Tag("say")]
    | Annotated[LookupStep, Tag("lookup")]
    | Annotated[HoursStep, Tag("hours")]
    | Annotated[QueueStep, Tag("queue")]
    | Annotated[VoicemailStep, Tag("voicemail")]
    | Annotated[RecordStep, Tag("record")]
    | Annotated[SetStep, Tag("set")]
    | Annotated[GotoStep, Tag("goto")]
    | Annotated[HangupStep, Tag("hangup")]
    | Annotated[SwitchLanguageStep, Tag("switch_language")],
    Discriminator(step_kind, custom_error_type="step_type", custom_error_message=STEP_ERROR),
]


# -- the flow -------------------------------------------------------------------------------------------


class Flow(_Model):
    name: Ident
    description: str = ""
    language: Lang = "en"
    # Every language the flow speaks; each text prompt needs text for each. Defaults to `language` alone.
    languages: tuple[Lang, ...] = ()
    timezone: str = "UTC"
    # The node a call starts at; defaults to the first node.
    start: Ident | None = None
    # CRM tier -> queue priority (higher is answered first, so VIP gets the largest number).
    priorities: dict[Annotated[str, Field(pattern=IDENT)], Annotated[int, Field(ge=0, le=100)]] = Field(
        default_factory=dict
    )
    default_priority: int = Field(0, ge=0, le=100)
    schedules: dict[Annotated[str, Field(pattern=IDENT)], Schedule] = Field(default_factory=dict)
    prompts: dict[Annotated[str, Field(pattern=IDENT)], Prompt] = Field(default_factory=dict)
    nodes: dict[Annotated[str, Field(pattern=IDENT)], Annotated[tuple[Step, ...], Field(min_length=1)]] = Field(
        min_length=1
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_zone(value)

    @model_validator(mode="after")
    def _languages(self) -> Flow:
        if self.languages and self.language not in self.languages:
            raise ValueError(f"language {self.language!r} is not in languages {list(self.languages)}")
        return self

    @property
    def spoken_languages(self) -> tuple[str, ...]:
        return self.languages or (self.language,)

    @property
    def start_node(self) -> str:
        return self.start or next(iter(self.nodes))

    def zone(self, schedule: Schedule | None = None) -> ZoneInfo:
        return ZoneInfo((schedule.timezone if schedule else None) or self.timezone)


def normalise(data: Any, lines: Mapping[YamlPath, int]) -> tuple[Any, dict[YamlPath, int]]:
    """A node written as one step becomes a list of one, in the data and in the line map alike."""
    new_lines = dict(lines)
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict):
        return data, new_lines
    nodes: dict[str, Any] = {}
    for node_id, body in data["nodes"].items():
        if isinstance(body, list):
            nodes[node_id] = body
            continue
        nodes[node_id] = [body]
        prefix: YamlPath = ("nodes", node_id)
        for path, line in lines.items():
            if path[:2] == prefix and len(path) > 2:
                new_lines[(*prefix, 0, *path[2:])] = line
        new_lines[(*prefix, 0)] = lines.get(prefix, 1)
    return {**data, "nodes": nodes}, new_lines


@dataclass(frozen=True, slots=True)
class FlowSource:
    """Where a flow came from: its file and the line of every value in it."""

    file: str
    lines: Mapping[YamlPath, int] = field(default_factory=dict)

    def line(self, *path: str | int) -> int | None:
        return line_of(self.lines, path)


@dataclass(frozen=True, slots=True)
class FlowSet:
    """Flows by name, each with its source, as loaded and validated together."""

    flows: Mapping[str, Flow]
    sources: Mapping[str, FlowSource] = field(default_factory=dict)

    def __contains__(self, name: object) -> bool:
        return name in self.flows

    def __getitem__(self, name: str) -> Flow:
        return self.flows[name]

    def source(self, name: str) -> FlowSource:
        return self.sources.get(name) or FlowSource(file=f"<{name}>")

    def resolve(self, current: Flow, ref: str) -> tuple[Flow, str]:
        """The flow and node a reference points at, seen from ``current``; KeyError if there is none."""
        if ref.startswith(FLOW_REF_PREFIX):
            target = self.flows[ref.removeprefix(FLOW_REF_PREFIX)]
            return target, target.start_node
        if ref not in current.nodes:
            raise KeyError(ref)
        return current, ref
