"""Pure FastAGI parsing: the environment block Asterisk sends first, and the responses to commands.

No sockets and no logging here: text in, objects or typed errors out.

Responses (from Asterisk's res_agi):
    200 result=1 (data with spaces) endpos=1234      success; data and key=value pairs optional
    510 Invalid or unknown command                   unknown command
    511 Command Not Permitted on a dead channel ...  the channel has hung up
    520 Invalid command syntax.  Proper usage not available.
    520-Invalid command syntax.  Proper usage follows:
    <usage lines>
    520 End of proper usage.
    HANGUP                                           sent on its own when the channel hangs up
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote_plus

from callcenter.agi.exceptions import (
    AgiArgumentError,
    AgiCommandError,
    AgiDeadChannel,
    AgiInvalidCommand,
    AgiProtocolError,
    AgiUsageError,
)
from callcenter.callerid import from_sip_display

HANGUP_LINE = "HANGUP"
MAX_LINE = 8192
# The query parameter of the AGI URL that carries the shared secret (agi://host:port/ivr?...&secret=...).
SECRET_PARAM = "secret"  # noqa: S105 - a parameter name, not a secret

_ENV_LINE = re.compile(r"^(agi_[a-z0-9_]{1,64}): ?(.*)$")
_SUCCESS = re.compile(r"^200 result=(\S*)(?: \((.*)\))?((?: [A-Za-z_]+=\S*)*)\s*$")
_INTEGER = re.compile(r"^-?[0-9]{1,18}$")
_USAGE_START = "520-"
_USAGE_END = "520 "
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class AgiEnvironment:
    """The ``agi_*`` variables of one session. Caller ID values are hostile text: store, never interpret."""

    values: Mapping[str, str]
    args: tuple[str, ...] = ()

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name if name.startswith("agi_") else f"agi_{name}", default)

    @property
    def network_script(self) -> str:
        return self.get("network_script")

    @property
    def script(self) -> str:
        """The route name: the script path without its query string or slashes."""
        path = self.network_script.partition("?")[0]
        return path.strip("/")

    @property
    def params(self) -> dict[str, str]:
        """Named parameters from the script's query string (``ivr?linkedid=...``)."""
        query = self.network_script.partition("?")[2]
        return dict(parse_qsl(query, keep_blank_values=True))

    @property
    def uniqueid(self) -> str:
        return self.get("uniqueid")

    @property
    def linkedid(self) -> str:
        # The dialplan passes it in the query string; an inbound call's first channel shares its uniqueid.
        return self.params.get("linkedid") or self.uniqueid

    @property
    def channel(self) -> str:
        return self.get("channel")

    @property
    def callerid(self) -> str:
        return self.get("callerid")

    @property
    def calleridname(self) -> str:
        """The display name as the caller sent it (its SIP quoted pairs undone: callcenter.callerid)."""
        return from_sip_display(self.get("calleridname"))

    @property
    def extension(self) -> str:
        return self.get("extension")

    @property
    def dnid(self) -> str:
        return self.get("dnid")


def parse_environment_line(line: str) -> tuple[str, str] | None:
    """One line of the environment block; ``None`` for the blank line that ends it."""
    if len(line) > MAX_LINE:
        raise AgiProtocolError("environment line too long", line[:200])
    stripped = line.rstrip("\r\n")
    if stripped == "":
        return None
    match = _ENV_LINE.match(stripped)
    if match is None:
        raise AgiProtocolError("not an AGI environment line", stripped)
    return match.group(1), match.group(2)


def parse_environment(lines: Iterable[str]) -> AgiEnvironment:
    """Builds the environment from its lines (the terminating blank line is optional here)."""
    pairs: list[tuple[str, str]] = []
    for line in lines:
        item = parse_environment_line(line)
        if item is None:
            break
        pairs.append(item)
    return environment_from_pairs(pairs)


def parse_environment_block(text: str, max_lines: int) -> AgiEnvironment:
    """The whole environment block at once (without its terminating blank line), as the server reads it."""
    pairs: list[tuple[str, str]] = []
    match = _ENV_LINE.match
    for line in text.split("\n"):
        if len(line) > MAX_LINE:
            raise AgiProtocolError("environment line too long", line[:200])
        found = match(line.rstrip("\r"))
        if found is None:
            raise AgiProtocolError("not an AGI environment line", line)
        pairs.append((found.group(1), found.group(2)))
    if len(pairs) > max_lines:
        raise AgiProtocolError(f"environment longer than {max_lines} lines")
    return environment_from_pairs(pairs)


def environment_from_pairs(pairs: Iterable[tuple[str, str]]) -> AgiEnvironment:
    """Builds the environment from ``(name, value)`` pairs already checked by :func:`parse_environment_line`.

    A name given twice is refused: whichever copy won, a forged later line could override what Asterisk said.
    """
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in values:
            raise AgiProtocolError("environment repeats a variable", name)
        values[name] = value
    if "agi_request" not in values and "agi_network_script" not in values:
        raise AgiProtocolError("environment has neither agi_request nor agi_network_script")
    args = []
    index = 1
    while f"agi_arg_{index}" in values:
        args.append(values[f"agi_arg_{index}"])
        index += 1
    return AgiEnvironment(values=values, args=tuple(args))


def take_secret(env: AgiEnvironment) -> tuple[AgiEnvironment, str | None]:
    """Splits the shared secret off the AGI URL: the environment without it, and the secret (None when absent).

    The secret is removed from ``agi_network_script`` and ``agi_request`` alike, so that nothing after the check
    (routes, flows, logs, events) ever holds it. A secret given twice is refused rather than one copy picked.
    """
    found: list[str] = []
    values = dict(env.values)
    for name in ("agi_network_script", "agi_request"):
        text = values.get(name)
        if text is None or "?" not in text:
            continue
        path, _, query = text.partition("?")
        kept = []
        secrets_here = []
        for part in query.split("&"):
            key, _, value = part.partition("=")
            if unquote_plus(key) == SECRET_PARAM:
                secrets_here.append(unquote_plus(value))
            else:
                kept.append(part)
        if len(secrets_here) > 1:
            raise AgiProtocolError("the AGI URL repeats its secret")
        found.extend(secrets_here)
        values[name] = f"{path}?{'&'.join(kept)}" if kept else path
    if len(set(found)) > 1:
        raise AgiProtocolError("agi_request and agi_network_script disagree on the secret")
    return AgiEnvironment(values=values, args=env.args), (found[0] if found else None)


@dataclass(frozen=True, slots=True)
class AgiResponse:
    """A ``200`` response: the integer result, the parenthesised data and any ``key=value`` extras."""

    result: int
    data: str | None = None
    # GET DATA answers with the digits typed ("007", "12*"), so the text is kept as sent.
    text: str = ""
    extras: Mapping[str, str] = field(default_factory=dict)
    raw: str = ""

    @property
    def endpos(self) -> int | None:
        value = self.extras.get("endpos")
        return int(value) if value is not None and _INTEGER.match(value) else None


def is_usage_start(line: str) -> bool:
    """True for the first line of a multi-line 520 usage block: more lines follow until ``520 ``."""
    return line.startswith(_USAGE_START)


def is_usage_end(line: str) -> bool:
    return line.startswith(_USAGE_END)


def parse_response(lines: list[str]) -> AgiResponse:
    """Parses one complete response (one line, or a whole 520 usage block). Errors come as exceptions."""
    if not lines:
        raise AgiProtocolError("empty response")
    first = lines[0].rstrip("\r\n")
    if first.startswith("200 "):
        match = _SUCCESS.match(first)
        if match is None:
            raise AgiProtocolError("malformed 200 response", first)
        extras: dict[str, str] = {}
        for pair in match.group(3).split():
            key, _, value = pair.partition("=")
            extras[key] = value
        text = match.group(1)
        if _INTEGER.match(text):
            result = int(text)
        elif re.fullmatch(r"[0-9*#]*", text):
            result = 0  # digits or nothing: the text carries the answer
        else:
            raise AgiProtocolError("result is neither a number nor digits", first)
        return AgiResponse(result=result, data=match.group(2), text=text, extras=extras, raw=first)
    if first.startswith("510"):
        raise AgiInvalidCommand(510, first[4:] or "invalid or unknown command", first)
    if first.startswith("511"):
        raise AgiDeadChannel(first)
    if first.startswith("520"):
        if is_usage_start(first):
            block = [first, *(line.rstrip("\r\n") for line in lines[1:])]
            body = block[1:-1] if len(block) > 1 and is_usage_end(block[-1]) else block[1:]
            raise AgiUsageError("\n".join(body), "\n".join(block))
        raise AgiUsageError("", first)
    if first == HANGUP_LINE:
        raise AgiProtocolError("HANGUP is not a command response", first)
    code = first[:3]
    if code.isascii() and code.isdigit():
        raise AgiCommandError(int(code), first[4:], first)
    raise AgiProtocolError("not an AGI response", first)


def quote_argument(value: str) -> str:
    """Quotes one command argument the way res_agi's parser reads it; refuses control characters.

    A CR or LF inside an argument would end the command early and let the rest run as a new command,
    so such values are refused rather than cleaned: the caller sees an error and nothing reaches the socket.
    """
    if _FORBIDDEN.search(value):
        raise AgiArgumentError(f"argument contains control characters: {value[:60]!r}")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def build_command(verb: str, *args: str | int) -> str:
    """One command line, ending in a newline. The verb is ours; every argument is quoted."""
    if _FORBIDDEN.search(verb) or not verb:
        raise AgiArgumentError(f"bad command verb: {verb!r}")
    parts = [verb]
    for arg in args:
        parts.append(str(arg) if isinstance(arg, int) else quote_argument(arg))
    return " ".join(parts) + "\n"


def record_file_arguments(
    filename: str, fmt: str, escape_digits: str, timeout_ms: int, *, beep: bool, silence_seconds: int | None
) -> list[str | int]:
    """RECORD FILE's arguments in res_agi's order: file, format, escape digits, timeout, offset, BEEP, s=N."""
    args: list[str | int] = [filename, fmt, escape_digits, timeout_ms, 0]
    if beep:
        args.append("BEEP")
    if silence_seconds is not None:
        args.append(f"s={silence_seconds}")
    return args


def digit_from_result(result: int) -> str | None:
    """Commands that wait for a key report the key's ASCII code; 0 means no key was pressed."""
    if result <= 0:
        return None
    try:
        return chr(result)
    except (ValueError, OverflowError):
        return None
