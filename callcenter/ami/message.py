"""Pure AMI parsing and building: bytes in, messages (or typed errors) out; no sockets, no logging.

The wire format (Asterisk's manager.c):

    Asterisk Call Manager/10.0.0\\r\\n          the banner, once, on its own line
    Response: Success\\r\\n                      a reply to an action: matched by ActionID
    ActionID: cc-1a2b3c4d-7\\r\\n
    Message: Authentication accepted\\r\\n
    \\r\\n                                        a blank line ends every message
    Event: Newchannel\\r\\n                      an event
    ...

Header names repeat (``ChanVariable:``, ``Variable:``, ``Output:``), so a message keeps every header in order and
answers lookups case-insensitively with the first value. Values are text from callers (CallerIDName and
ConnectedLineName reach us from a SIP display name): they are kept verbatim, decoded as UTF-8 with replacement,
and never interpreted here.

Limits: Asterisk reads action lines of at most 1024 bytes (it silently drops longer ones) and at most 128 headers
per action, so :func:`build_action` refuses anything beyond that instead of letting Asterisk truncate it. The
parser applies the same caps to what it receives so that its memory stays bounded whatever the peer sends: the
partial line it holds never exceeds ``max_line`` (+1 for a CR), a message never holds more than ``max_headers``.
A message that breaks a cap is dropped (its line ends still frame the stream, so the parser keeps its place) and
reported as a recoverable :class:`AmiProtocolError`; only a bad banner makes the stream unreadable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from callcenter.ami.exceptions import AmiInjectionError, AmiProtocolError

BANNER_PREFIX = "Asterisk Call Manager/"
MAX_LINE = 1024
MAX_HEADERS = 128
END_COMMAND = "--END COMMAND--"

# Replies whose Response header means the action worked ("Goodbye" answers Logoff, "Follows" is the legacy
# Command output, "Pong" the legacy Ping reply).
_SUCCESS = frozenset({"success", "goodbye", "follows", "pong"})
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_FORBIDDEN = ("\r", "\n", "\x00")
# Headers of a legacy "Response: Follows" reply before the command output starts.
_FOLLOWS_HEADERS = ("privilege:", "actionid:")


class AmiMessage:
    """One AMI message: its headers in order, duplicates kept, looked up by name case-insensitively."""

    __slots__ = ("_first", "headers")

    def __init__(self, headers: Iterable[tuple[str, str]], first: dict[str, str] | None = None) -> None:
        self.headers: tuple[tuple[str, str], ...] = tuple(headers)
        if first is None:
            first = {}
            for name, value in self.headers:
                first.setdefault(name.lower(), value)
        # The first value of each header, by lower-cased name (the parser builds it as it reads).
        self._first = first

    @classmethod
    def of(cls, *headers: tuple[str, str], **named: str) -> AmiMessage:
        """A message built by hand (tests, fixtures): ``AmiMessage.of(("Event", "Hangup"), Channel="PJSIP/1")``."""
        return cls([*headers, *named.items()])

    def get(self, name: str, default: str = "") -> str:
        return self._first.get(name.lower(), default)

    def get_all(self, name: str) -> list[str]:
        """Every value of a header that may repeat (``ChanVariable``, ``Variable``, ``Output``), in order."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def variables(self, name: str = "ChanVariable") -> dict[str, str]:
        """``NAME=value`` headers as a mapping (the first ``=`` splits; a header without one is skipped)."""
        found: dict[str, str] = {}
        for item in self.get_all(name):
            key, sep, value = item.partition("=")
            if sep and key not in found:
                found[key] = value
        return found

    def __getitem__(self, name: str) -> str:
        try:
            return self._first[name.lower()]
        except KeyError:
            raise KeyError(name) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.headers)

    def __len__(self) -> int:
        return len(self.headers)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AmiMessage) and self.headers == other.headers

    def __hash__(self) -> int:
        return hash(self.headers)

    def __repr__(self) -> str:
        kind = f"Event {self.event!r}" if self.is_event else f"Response {self.response!r}"
        return f"<AmiMessage {kind} {len(self.headers)} headers>"

    def to_dict(self) -> dict[str, str]:
        """The first value of each header, under its name as sent."""
        found: dict[str, str] = {}
        for name, value in self.headers:
            found.setdefault(name, value)
        return found

    @property
    def event(self) -> str:
        """The event's name, or "" for a reply."""
        return self._first.get("event", "")

    @property
    def response(self) -> str:
        """The reply's status (Success, Error, Goodbye, Follows), or "" for an event."""
        return self._first.get("response", "")

    @property
    def action_id(self) -> str:
        return self._first.get("actionid", "")

    @property
    def event_list(self) -> str:
        """``start`` on the reply that opens a list, ``Complete`` on the event that closes it, else ""."""
        return self._first.get("eventlist", "")

    @property
    def is_event(self) -> bool:
        return "event" in self._first

    @property
    def is_response(self) -> bool:
        return "response" in self._first

    @property
    def ok(self) -> bool:
        """For a reply: Asterisk accepted the action."""
        return self.response.lower() in _SUCCESS


@dataclass(frozen=True, slots=True)
class AmiResult:
    """What an action gave back: the reply and, for actions that answer with a list, the list's events.

    ``complete`` is the event that closed the list (``CoreShowChannelsComplete``, ``QueueStatusComplete``...).
    """

    response: AmiMessage
    events: tuple[AmiMessage, ...] = ()
    complete: AmiMessage | None = None

    def get(self, name: str, default: str = "") -> str:
        return self.response.get(name, default)

    @property
    def message(self) -> str:
        return self.response.get("Message")


class AmiParser:
    """An incremental parser: feed it bytes as they arrive, it returns the messages they complete.

    Lines end with CRLF (LF alone is tolerated). The first line must be the banner when ``expect_banner``;
    its text is then in :attr:`banner`. After a recoverable :class:`AmiProtocolError` the parser has already
    skipped the damaged message and read the rest of the chunk: take ``error.messages`` and keep feeding. After a
    non-recoverable one every further ``feed`` raises again.
    """

    def __init__(self, *, expect_banner: bool = True, max_line: int = MAX_LINE, max_headers: int = MAX_HEADERS) -> None:
        if max_line < 16 or max_headers < 1:
            raise ValueError("max_line must be at least 16 and max_headers at least 1")
        self.max_line = max_line
        self.max_headers = max_headers
        self.banner: str | None = None if expect_banner else ""
        self._buffer = bytearray()
        self._headers: list[tuple[str, str]] = []
        self._first: dict[str, str] = {}
        # True while the end of a line that was already too long is still to come (its bytes are not kept).
        self._skip_line = False
        # Why the message being read will be dropped, and its start (for the error).
        self._damage: tuple[str, str] | None = None
        # In a legacy "Response: Follows" reply: the lines are command output until --END COMMAND--.
        self._follows = False
        self._output = False
        self._fatal: AmiProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for a line not yet complete (never more than ``max_line`` + 1)."""
        return len(self._buffer)

    @property
    def pending_headers(self) -> int:
        """Headers held for a message not yet complete (never more than ``max_headers``)."""
        return len(self._headers)

    def feed(self, data: bytes) -> list[AmiMessage]:
        if self._fatal is not None:
            raise AmiProtocolError(str(self._fatal))
        buffer = self._buffer
        buffer += data
        end = buffer.rfind(b"\n")
        if end < 0:
            self._check_tail()
            return []
        chunk = bytes(buffer[:end])
        del buffer[: end + 1]
        out: list[AmiMessage] = []
        errors: list[tuple[str, str]] = []
        limit = self.max_line
        if chunk.isascii():
            lines: list[str | None] = list(chunk.decode("ascii").split("\n"))
        else:
            # Lengths are counted in bytes, so over-long lines are marked before decoding.
            lines = [
                None if len(raw) - raw.endswith(b"\r") > limit else raw.decode("utf-8", errors="replace")
                for raw in chunk.split(b"\n")
            ]
        for line in lines:
            if self._skip_line:
                self._skip_line = False
                continue
            if line is not None and line.endswith("\r"):
                line = line[:-1]
            if line is None or len(line) > limit:
                if self.banner is None:
                    self._fail("banner line too long", "" if line is None else line[:80])
                self._damaged(f"line longer than {limit} bytes", "" if line is None else line[:80])
                continue
            if self.banner is None:
                if not line.startswith(BANNER_PREFIX):
                    self._fail("not an AMI banner", line[:80])
                self.banner = line
                continue
            if self._follows:
                self._follows_line(line, out, errors)
                continue
            if not line:
                if self._damage is not None:
                    errors.append(self._damage)
                    self._reset()
                elif self._headers:
                    out.append(AmiMessage(self._headers, self._first))
                    self._reset()
                continue
            if self._damage is not None:
                continue
            colon = line.find(":")
            if colon <= 0:
                self._damaged("not a header line", line[:80])
                continue
            name = line[:colon].strip()
            value = line[colon + 1 :]
            if value.startswith(" "):
                value = value[1:]
            self._add(name, value)
            if len(self._headers) == 1 and name.lower() == "response" and value.lower() == "follows":
                self._follows = True
        self._check_tail()
        if errors:
            reason, raw = errors[0]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise AmiProtocolError(f"message dropped: {reason}{more}", raw, messages=out, recoverable=True)
        return out

    def _add(self, name: str, value: str) -> None:
        if len(self._headers) >= self.max_headers:
            self._damaged(f"more than {self.max_headers} headers", f"{name}: {value}"[:80])
            return
        self._headers.append((name, value))
        self._first.setdefault(name.lower(), value)

    def _follows_line(self, line: str, out: list[AmiMessage], errors: list[tuple[str, str]]) -> None:
        finished = line.endswith(END_COMMAND)
        if self._damage is not None:
            if finished or not line:
                errors.append(self._damage)
                self._reset()
            return
        if finished:
            rest = line[: -len(END_COMMAND)]
            if rest:
                self._add("Output", rest)
            if self._damage is not None:
                errors.append(self._damage)
            else:
                out.append(AmiMessage(self._headers, self._first))
            self._reset()
        elif not self._output and line.lower().startswith(_FOLLOWS_HEADERS):
            name, _, value = line.partition(":")
            self._add(name.strip(), value[1:] if value.startswith(" ") else value)
        else:
            self._output = True
            self._add("Output", line)

    def _check_tail(self) -> None:
        """An incomplete line longer than the cap: forget its bytes and skip it up to its end."""
        buffer = self._buffer
        if len(buffer) <= self.max_line + 1:
            return
        raw = bytes(buffer[:80]).decode("utf-8", errors="replace")
        buffer.clear()
        if self.banner is None:
            self._fatal = AmiProtocolError("banner line too long", raw)
            raise self._fatal
        self._skip_line = True
        self._damaged(f"line longer than {self.max_line} bytes", raw)

    def _damaged(self, reason: str, raw: str) -> None:
        if self._damage is None:
            self._damage = (reason, raw)
        # A damaged message is dropped whole: free what it held at once.
        self._headers = []
        self._first = {}

    def _reset(self) -> None:
        self._headers = []
        self._first = {}
        self._damage = None
        self._follows = False
        self._output = False

    def _fail(self, reason: str, raw: str) -> NoReturn:
        self._fatal = AmiProtocolError(reason, raw)
        self._buffer.clear()
        self._reset()
        raise self._fatal


def check_header(name: str, value: str, *, max_line: int = MAX_LINE) -> bytes:
    """One header line, encoded, or :class:`AmiInjectionError` when it cannot be sent as it is.

    A CR or LF would end the header (or the whole action) early and let the rest be read as headers or as
    another action; a NUL would cut the value short inside Asterisk; a ':' in a name would shift the split.
    Asterisk drops lines longer than 1024 bytes (CRLF included) without telling anyone, so they are refused too.
    """
    if not _NAME.match(name):
        raise AmiInjectionError(f"header name {name[:40]!r} must be letters, digits, '_', '.' or '-'")
    if any(ch in value for ch in _FORBIDDEN):
        raise AmiInjectionError(f"value of {name} contains CR, LF or NUL: {value[:40]!r}")
    try:
        line = f"{name}: {value}\r\n".encode()
    except UnicodeEncodeError as exc:
        raise AmiInjectionError(f"value of {name} is not encodable as UTF-8") from exc
    if len(line) > max_line:
        raise AmiInjectionError(f"header {name} makes a line of {len(line)} bytes (Asterisk reads at most {max_line})")
    return line


def build_action(
    name: str,
    action_id: str,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    *,
    max_line: int = MAX_LINE,
    max_headers: int = MAX_HEADERS,
) -> bytes:
    """The bytes of one action, ending with the blank line; every header checked before anything is returned.

    ``Action`` and ``ActionID`` come first and only from the arguments: a header of either name in ``headers``
    is refused, since a second ActionID would let a reply be matched to the wrong caller.
    """
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if len(pairs) + 2 > max_headers:
        raise AmiInjectionError(f"{name}: {len(pairs) + 2} headers (Asterisk reads at most {max_headers})")
    if not name or not action_id:
        raise AmiInjectionError("an action needs a name and an ActionID")
    parts = [check_header("Action", name, max_line=max_line), check_header("ActionID", action_id, max_line=max_line)]
    for key, value in pairs:
        if key.lower() in ("action", "actionid"):
            raise AmiInjectionError(f"{name}: header {key!r} is set by the connection")
        parts.append(check_header(key, value, max_line=max_line))
    parts.append(b"\r\n")
    return b"".join(parts)
