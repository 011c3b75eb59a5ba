"""One FastAGI session: the connection of one channel, with typed coroutines for the commands we use.

Every read has a deadline, so a silent or half-open Asterisk connection cannot hold a task forever, and a
caller hangup surfaces as :class:`AgiHangup` whichever way Asterisk reports it (a ``HANGUP`` line, a 511,
or ``result=-1`` from a media command on a channel that turns out to be dead).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from callcenter.agi import protocol
from callcenter.agi.connection import AgiConnection
from callcenter.agi.exceptions import (
    AgiCommandFailed,
    AgiConnectionLost,
    AgiDeadChannel,
    AgiHangup,
    AgiProtocolError,
)
from callcenter.agi.protocol import AgiEnvironment, AgiResponse

log = logging.getLogger("callcenter.agi")

# Extra seconds a command that waits on the caller gets beyond its own timeout before we give up on it.
_SLACK = 5.0


@dataclass(frozen=True, slots=True)
class DigitResult:
    """What a prompt command returned: the key pressed (``None`` for none) and where playback stopped."""

    digit: str | None
    endpos: int | None = None


@dataclass(frozen=True, slots=True)
class DataResult:
    """GET DATA: the digits collected and whether the caller stopped typing before the end."""

    digits: str
    timed_out: bool


@dataclass(frozen=True, slots=True)
class RecordResult:
    digit: str | None
    endpos: int | None
    reason: str  # "dtmf", "timeout", "hangup" or Asterisk's own word


@dataclass(slots=True)
class SessionStats:
    commands: int = 0
    started: float = field(default_factory=time.monotonic)
    # When the connection was accepted and when the first command went out (time.monotonic).
    connected: float | None = None
    first_command: float | None = None

    @property
    def answer_seconds(self) -> float | None:
        """How long the call waited for the engine's first command after Asterisk connected."""
        if self.connected is None or self.first_command is None:
            return None
        return self.first_command - self.connected


class AgiSession:
    """The commands a flow may run on its channel. One instance per call, used by one task."""

    def __init__(
        self,
        env: AgiEnvironment,
        connection: AgiConnection,
        *,
        read_timeout: float = 30.0,
        command_timeout: float = 120.0,
    ) -> None:
        self.env = env
        self._connection = connection
        self._read_timeout = read_timeout
        self._command_timeout = command_timeout
        self.hung_up = False
        self.stats = SessionStats(connected=connection.connected_at)
        self.variables_set: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._broken: str | None = None

    @property
    def uniqueid(self) -> str:
        return self.env.uniqueid

    @property
    def linkedid(self) -> str:
        return self.env.linkedid

    # -- the wire ---------------------------------------------------------------------------------------

    async def command(self, verb: str, *args: str | int, timeout: float | None = None) -> AgiResponse:  # noqa: ASYNC109
        """Sends one command and returns its parsed 200 response; every other answer raises.

        Commands are never pipelined: res_agi reads them with buffered stdio but waits for the next one by
        polling the socket, so a second command that arrived in the same packet would sit unseen in its
        buffer and stall the call.
        """
        line = protocol.build_command(verb, *args)
        async with self._lock:
            if self.hung_up and verb not in _ALLOWED_WHEN_DEAD:
                raise AgiHangup("caller hung up")
            if self._broken is not None:
                raise AgiConnectionLost(f"session unusable: {self._broken}")
            if self.stats.first_command is None:
                self.stats.first_command = time.monotonic()
            try:
                self._connection.write(line.encode("utf-8"))
                await self._connection.drain(self._read_timeout)
                self.stats.commands += 1
                lines = await self._read_response(timeout)
            except BaseException as exc:
                # Timed out, cancelled or cut off before the answer arrived: a late answer would be read as
                # the next command's. The session cannot be trusted any more, so the connection goes.
                self._broken = f"{verb} got no answer ({type(exc).__name__})"
                self._connection.close()
                raise
            try:
                return protocol.parse_response(lines)
            except AgiDeadChannel:
                # 511 is a hangup report like the HANGUP line: later commands must see the dead channel.
                self.hung_up = True
                raise

    async def _read_response(self, timeout: float | None) -> list[str]:  # noqa: ASYNC109
        deadline = self._read_timeout if timeout is None else timeout
        while True:
            first = await self._connection.readline(deadline)
            if first == protocol.HANGUP_LINE:
                # Asterisk announces the hangup on its own; the command's answer still follows.
                self.hung_up = True
                continue
            if protocol.is_usage_start(first):
                block = [first]
                while True:
                    more = await self._connection.readline(self._read_timeout)
                    block.append(more)
                    if protocol.is_usage_end(more):
                        return block
                    if len(block) > 200:
                        raise AgiProtocolError("520 usage block never ended", first)
            return [first]

    async def _media(self, verb: str, *args: str | int, timeout: float | None = None) -> AgiResponse:  # noqa: ASYNC109
        """A command that plays or listens: ``result=-1`` means hangup or failure, and we find out which."""
        response = await self.command(verb, *args, timeout=timeout or self._command_timeout)
        return await self._checked(verb, response)

    async def _checked(self, verb: str, response: AgiResponse) -> AgiResponse:
        if response.result >= 0:
            return response
        if not self.hung_up and await self._channel_alive():
            raise AgiCommandFailed(200, f"{verb} failed", response.raw)
        self.hung_up = True
        raise AgiHangup("caller hung up")

    async def _channel_alive(self) -> bool:
        try:
            status = await self.command("CHANNEL STATUS")
        except AgiHangup:
            return False
        # 6 is "line is up", 4 ringing; -1 means no such channel.
        return status.result >= 0 and not self.hung_up

    # -- typed commands ---------------------------------------------------------------------------------

    async def answer(self) -> None:
        response = await self.command("ANSWER")
        if response.result != 0:
            if await self._channel_alive():
                raise AgiCommandFailed(200, "ANSWER failed", response.raw)
            self.hung_up = True
            raise AgiHangup("caller hung up before answer")

    async def stream_file(self, filename: str, escape_digits: str = "") -> DigitResult:
        response = await self._media("STREAM FILE", filename, escape_digits)
        return DigitResult(protocol.digit_from_result(response.result), response.endpos)

    async def get_option(self, filename: str, escape_digits: str, timeout_ms: int = 0) -> DigitResult:
        response = await self._media(
            "GET OPTION",
            filename,
            escape_digits,
            timeout_ms,
            timeout=self._command_timeout + timeout_ms / 1000,
        )
        return DigitResult(protocol.digit_from_result(response.result), response.endpos)

    async def get_data(self, filename: str, timeout_ms: int = 5000, max_digits: int = 1) -> DataResult:
        response = await self._media(
            "GET DATA",
            filename,
            timeout_ms,
            max_digits,
            timeout=self._command_timeout + timeout_ms / 1000 * max(1, max_digits),
        )
        # GET DATA answers with the digits themselves, not a character code, and "(timeout)" when the
        # caller stopped typing before max_digits.
        digits = response.text
        return DataResult(digits=digits, timed_out=response.data == "timeout")

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        # -1 asks Asterisk to wait for ever; we still bound it by the command timeout.
        limit = self._command_timeout if timeout_ms < 0 else timeout_ms / 1000 + _SLACK
        response = await self._media("WAIT FOR DIGIT", timeout_ms, timeout=limit)
        return protocol.digit_from_result(response.result)

    async def say_number(self, number: int, escape_digits: str = "") -> DigitResult:
        response = await self._media("SAY NUMBER", number, escape_digits)
        return DigitResult(protocol.digit_from_result(response.result), None)

    async def say_digits(self, digits: str, escape_digits: str = "") -> DigitResult:
        if not digits.isdigit():
            raise ValueError(f"say_digits wants digits, got {digits!r}")
        response = await self._media("SAY DIGITS", digits, escape_digits)
        return DigitResult(protocol.digit_from_result(response.result), None)

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
        args = protocol.record_file_arguments(
            filename, fmt, escape_digits, timeout_ms, beep=beep, silence_seconds=silence_seconds
        )
        response = await self.command("RECORD FILE", *args, timeout=timeout_ms / 1000 + self._command_timeout)
        if response.result == -1 and response.data == "hangup":
            # The usual end of a voicemail: the caller hangs up. What was said is kept, up to endpos.
            self.hung_up = True
            return RecordResult(digit=None, endpos=response.endpos, reason="hangup")
        response = await self._checked("RECORD FILE", response)
        digit = protocol.digit_from_result(response.result)
        reason = response.data or ("dtmf" if digit else "timeout")
        return RecordResult(digit=digit, endpos=response.endpos, reason=reason)

    async def set_variable(self, name: str, value: str) -> None:
        if not name or not all(ch.isalnum() or ch in "_()" for ch in name):
            raise ValueError(f"unsafe variable name {name!r}")
        await self.command("SET VARIABLE", name, value)
        self.variables_set[name] = value

    async def get_variable(self, name: str) -> str | None:
        response = await self.command("GET VARIABLE", name)
        return response.data if response.result == 1 else None

    async def exec(self, application: str, options: str = "") -> int:
        if not application.isalnum():
            raise ValueError(f"unsafe application name {application!r}")
        response = await self.command("EXEC", application, options, timeout=self._command_timeout)
        if response.result == -2:
            raise AgiCommandFailed(200, f"application {application} not found", response.raw)
        return response.result

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.command("VERBOSE", message, level)

    async def hangup(self) -> None:
        with contextlib.suppress(AgiHangup):
            await self.command("HANGUP")
        self.hung_up = True


# Asterisk lets these run after the hangup (res_agi marks them dead-safe), so a flow can still tidy up.
_ALLOWED_WHEN_DEAD = frozenset({"GET VARIABLE", "SET VARIABLE", "VERBOSE", "CHANNEL STATUS", "GET FULL VARIABLE"})
