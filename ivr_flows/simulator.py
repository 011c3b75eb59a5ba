"""Runs the real flow engine against a scripted caller, without Asterisk.

The script is one entry per moment the caller could press keys (a menu, an input): the keys pressed (``"1"``,
``"1234#"``), an empty string for silence, or ``H`` to hang up right there (during a recording too: the
message keeps what was said). When the script runs out the caller hangs up, unless told to stay silent.
Each command the engine issues is kept as the AGI line it would have sent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from callcenter.agi.exceptions import AgiHangup
from callcenter.agi.protocol import AgiEnvironment, build_command, record_file_arguments
from callcenter.agi.session import DataResult, DigitResult, RecordResult
from ivr_flows.engine import CallResult, FlowEngine
from ivr_flows.ports import EventPublisher, FakeClock, FlowPorts, in_memory_ports
from ivr_flows.prompts import DryPrompts
from ivr_flows.schema import FlowSet

HANGUP_TOKENS = frozenset({"H", "h", "hangup"})
# res_agi lets these run on a dead channel; everything else answers 511 (AgiHangup).
_DEAD_OK = frozenset({"GET VARIABLE", "SET VARIABLE", "VERBOSE", "CHANNEL STATUS", "HANGUP"})
_WAV_RATE = 8000


class _Hangup:
    pass


_HANGUP = _Hangup()


@dataclass(frozen=True, slots=True)
class Script:
    inputs: Sequence[str] = ()
    # The 1-based number of the command during which the caller hangs up (any command, not only listening ones).
    hangup_at: int | None = None
    # What the caller does when the inputs run out.
    when_done: Literal["hangup", "silence"] = "hangup"
    # Hand each entry back verbatim instead of as GET DATA would (cut at '#' and at max_digits): for testing
    # the engine's own guards against input Asterisk would not send.
    raw: bool = False
    record_seconds: float = 8.0
    prompt_seconds: float = 2.0


class _NoClock:
    def advance(self, seconds: float) -> None:
        return None


class ScriptedSession:
    """A fake :class:`callcenter.agi.session.AgiSession` that follows a script."""

    def __init__(
        self,
        script: Script | Sequence[str] = (),
        *,
        caller: str = "5551234",
        caller_name: str = "Simulated Caller",
        uniqueid: str = "1700000000.1",
        linkedid: str = "1700000000.1",
        did: str = "4000",
        channel: str = "PJSIP/pstn-00000001",
        clock: FakeClock | None = None,
        channel_variables: Mapping[str, str] | None = None,
    ) -> None:
        self.script = script if isinstance(script, Script) else Script(inputs=tuple(script))
        self.env = AgiEnvironment(
            values={
                "agi_network": "yes",
                "agi_network_script": f"ivr?linkedid={linkedid}&did={did}",
                "agi_channel": channel,
                "agi_language": "en",
                "agi_uniqueid": uniqueid,
                "agi_callerid": caller,
                "agi_calleridname": caller_name,
                "agi_dnid": did,
                "agi_extension": did,
                "agi_context": "cc-inbound",
            }
        )
        self.hung_up = False
        self.commands: list[str] = []
        # Every file played, in order, with the verb that played it.
        self.played: list[tuple[str, str]] = []
        self.variables_set: dict[str, str] = {}
        self.channel_variables = dict(channel_variables or {})
        self._inputs = list(self.script.inputs)
        self._clock: FakeClock | _NoClock = clock or _NoClock()
        self.consumed = 0

    @property
    def uniqueid(self) -> str:
        return self.env.uniqueid

    @property
    def linkedid(self) -> str:
        return self.env.linkedid

    @property
    def remaining_inputs(self) -> list[str]:
        return list(self._inputs)

    # -- the script -------------------------------------------------------------------------------------

    def _issue(self, verb: str, *args: str | int) -> bool:
        """Records the command; True when the caller hangs up during it (hangup_at)."""
        self.commands.append(build_command(verb, *args).rstrip("\n"))
        if verb in _DEAD_OK:
            return False
        if self.hung_up:
            raise AgiHangup("caller hung up")
        at = self.script.hangup_at
        return at is not None and len(self.commands) >= at

    def _media(self, verb: str, *args: str | int) -> None:
        if self._issue(verb, *args):
            self.hung_up = True
            raise AgiHangup("caller hung up")

    def _next(self) -> str | _Hangup:
        if not self._inputs:
            if self.script.when_done == "silence":
                return ""
            return _HANGUP
        self.consumed += 1
        entry = self._inputs.pop(0)
        return _HANGUP if entry in HANGUP_TOKENS else entry

    def _listen(self) -> str:
        entry = self._next()
        if isinstance(entry, _Hangup):
            self.hung_up = True
            raise AgiHangup("caller hung up")
        return entry

    def _peek_keys(self) -> str | None:
        """The next entry when it holds keys (so they can interrupt a prompt), without consuming silence."""
        if self._inputs and self._inputs[0] and self._inputs[0] not in HANGUP_TOKENS:
            return self._inputs[0]
        return None

    # -- the commands -----------------------------------------------------------------------------------

    async def answer(self) -> None:
        self._media("ANSWER")

    async def stream_file(self, filename: str, escape_digits: str = "") -> DigitResult:
        self._media("STREAM FILE", filename, escape_digits)
        self.played.append(("STREAM FILE", filename))
        self._clock.advance(self.script.prompt_seconds)
        keys = self._peek_keys() if escape_digits else None
        if keys is not None and self.script.raw:
            self._next()
            return DigitResult(keys, 800)
        if keys is not None:
            pressed = next((key for key in keys if key in escape_digits), None)
            if pressed is not None:
                self._next()
                return DigitResult(pressed, 800)
        return DigitResult(None, 16000)

    async def get_option(self, filename: str, escape_digits: str, timeout_ms: int = 0) -> DigitResult:
        self._media("GET OPTION", filename, escape_digits, timeout_ms)
        self.played.append(("GET OPTION", filename))
        self._clock.advance(self.script.prompt_seconds)
        keys = self._listen()
        if self.script.raw:
            return DigitResult(keys or None, 800)
        # Asterisk ignores keys that are not escape digits.
        pressed = next((key for key in keys if key in escape_digits), None)
        if pressed is None:
            self._clock.advance(timeout_ms / 1000)
        return DigitResult(pressed, 800)

    async def get_data(self, filename: str, timeout_ms: int = 5000, max_digits: int = 1) -> DataResult:
        self._media("GET DATA", filename, timeout_ms, max_digits)
        self.played.append(("GET DATA", filename))
        self._clock.advance(self.script.prompt_seconds)
        keys = self._listen()
        if self.script.raw:
            return DataResult(keys, timed_out=not keys)
        ended = "#" in keys
        digits = keys.split("#", 1)[0][:max_digits]
        timed_out = not ended and len(digits) < max_digits
        if timed_out:
            self._clock.advance(timeout_ms / 1000)
        return DataResult(digits, timed_out)

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        self._media("WAIT FOR DIGIT", timeout_ms)
        keys = self._listen()
        if not keys:
            self._clock.advance(max(0, timeout_ms) / 1000)
        return keys[0] if keys else None

    async def say_number(self, number: int, escape_digits: str = "") -> DigitResult:
        self._media("SAY NUMBER", number, escape_digits)
        self._clock.advance(1.0)
        return DigitResult(None, None)

    async def say_digits(self, digits: str, escape_digits: str = "") -> DigitResult:
        if not digits.isdigit():
            raise ValueError(f"say_digits wants digits, got {digits!r}")
        self._media("SAY DIGITS", digits, escape_digits)
        self._clock.advance(0.5 * len(digits))
        return DigitResult(None, None)

    async def record_file(
        self,
        filename: str,
        fmt: str = "wav",
        escape_digits: str = "#",
        timeout_ms: int = 60_000,
        *,
        beep: bool = True,
        silence_seconds: int | None = None,
    ) -> RecordResult:
        args = record_file_arguments(
            filename, fmt, escape_digits, timeout_ms, beep=beep, silence_seconds=silence_seconds
        )
        seconds = min(self.script.record_seconds, timeout_ms / 1000)
        hangs_up = self._issue("RECORD FILE", *args)
        if not hangs_up and self._inputs and self._inputs[0] in HANGUP_TOKENS:
            self._next()
            hangs_up = True
        self._clock.advance(seconds)
        if hangs_up:
            # As Asterisk reports it: result=-1 (hangup) with the position reached, and the file kept.
            self.hung_up = True
            return RecordResult(digit=None, endpos=int(seconds * _WAV_RATE), reason="hangup")
        return RecordResult(digit="#", endpos=int(seconds * _WAV_RATE), reason="dtmf")

    async def set_variable(self, name: str, value: str) -> None:
        if not name or not all(ch.isalnum() or ch in "_()" for ch in name):
            raise ValueError(f"unsafe variable name {name!r}")
        self._media("SET VARIABLE", name, value)
        self.variables_set[name] = value
        self.channel_variables[name] = value

    async def get_variable(self, name: str) -> str | None:
        self._media("GET VARIABLE", name)
        return self.channel_variables.get(name)

    async def exec(self, application: str, options: str = "") -> int:
        self._media("EXEC", application, options)
        return 0

    async def verbose(self, message: str, level: int = 1) -> None:
        self._media("VERBOSE", message, level)

    async def hangup(self) -> None:
        with contextlib.suppress(AgiHangup):
            self._media("HANGUP")
        self.hung_up = True


@dataclass(slots=True)
class Simulation:
    result: CallResult
    session: ScriptedSession
    prompts: DryPrompts
    ports: FlowPorts
    at: datetime
    events: list[object] = field(default_factory=list)

    def played_prompts(self) -> list[tuple[str, str]]:
        """Each file played, in order, with the text it speaks (or ``(sound file)``)."""
        out = []
        for _verb, name in self.session.played:
            spoken = self.prompts.spoken.get(name)
            out.append((name, spoken.text if spoken else "(sound file)"))
        return out

    def report(self) -> str:
        result = self.result
        lines = [f"flow {result.flow}, caller {result.caller_number or '(none)'}, at {self.at.isoformat()}", "path:"]
        for entry in result.path:
            where = f"{entry.flow}/{entry.node}[{entry.index}]"
            # The path keeps times as numbers; here they are read by a person: the time of day in the call's zone.
            at = entry.wall.astimezone(self.at.tzinfo).strftime("%H:%M:%S")
            parts = [f"  {at} {entry.monotonic:7.1f}s  {where:<36} {entry.step:<15}"]
            if entry.digits is not None:
                parts.append(f"keys={entry.digits!r}")
            if entry.result:
                parts.append(entry.result)
            if entry.detail:
                parts.append(f"({entry.detail})")
            lines.append(" ".join(parts).rstrip())
        lines.append("prompts:")
        for name, text in self.played_prompts():
            lines.append(f"  {name}  {text!r}")
        lines.append("commands:")
        lines.extend(f"  {command}" for command in self.session.commands)
        lines.append(f"language: {result.language}")
        for message in result.voicemails:
            lines.append(
                f"voicemail: intent={message.intent} duration={message.duration}s ended_by={message.ended_by} "
                f"file={message.path}"
            )
        if result.queue is not None:
            lines.append(f"queue: {result.queue} priority={result.priority} choice={result.choice}")
        lines.append(f"outcome: {result.outcome}")
        return "\n".join(lines)


class _Recorder:
    def __init__(self, events: list[object]) -> None:
        self._events = events

    def publish(self, event: object) -> object:
        self._events.append(event)
        return None


DEFAULT_QUEUES = {"general": "support", "expert": "expert"}


async def simulate(
    flows: FlowSet,
    flow: str,
    *,
    inputs: Sequence[str] = (),
    at: datetime | None = None,
    caller: str = "5551234",
    ports: FlowPorts | None = None,
    queues: Mapping[str, str] | None = None,
    script: Script | None = None,
    bus: EventPublisher | None = None,
    voicemail_dir: Path = Path("/var/spool/callcenter/voicemail"),
) -> Simulation:
    """One simulated call into ``flow``; ``at`` without a time zone is local time in the flow's zone."""
    start_flow = flows[flow]
    zone = ZoneInfo(start_flow.timezone)
    when = at or datetime.now(zone)
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    clock = FakeClock(when)
    events: list[object] = []
    publisher: EventPublisher = bus or _Recorder(events)
    ports = ports or in_memory_ports(voicemail_dir=voicemail_dir)
    prompts = DryPrompts()
    engine = FlowEngine(
        flows,
        ports=ports,
        bus=publisher,
        prompts=prompts,
        queues=queues or DEFAULT_QUEUES,
        clock=clock,
        entry=flow,
    )
    session = ScriptedSession(script or Script(inputs=tuple(inputs)), caller=caller, clock=clock)
    result = await engine.run(session)
    return Simulation(result=result, session=session, prompts=prompts, ports=ports, at=when, events=events)
