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
from itertools import repeat
from operator import itemgetter
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
# The parts of ``line.partition(": ")``.
_PART_NAME, _PART_SEPARATOR, _PART_VALUE = itemgetter(0), itemgetter(1), itemgetter(2)
# A message's header names as the parser's fast path keeps them: the names, lower-cased, all different,
# whether the first is "Response" (a legacy "Response: Follows" reply is left to the line path), and a dict of
# the lower-cased names, copied for each message's first values.
_Shape = tuple[tuple[str, ...], tuple[str, ...], bool, bool, dict[str, str]]
_MAX_SHAPES = 1024


class AmiMessage:
    """One AMI message: its headers in order, duplicates kept, looked up by name case-insensitively."""

    __slots__ = ("_first", "_headers", "_names", "_values")

    def __init__(self, headers: Iterable[tuple[str, str]], first: dict[str, str] | None = None) -> None:
        self._headers: tuple[tuple[str, str], ...] | None = tuple(headers)
        self._names: Sequence[str] = ()
        self._values: Sequence[str] = ()
        if first is None:
            first = {}
            for name, value in self._headers:
                first.setdefault(name.lower(), value)
        # The first value of each header, by lower-cased name (the parser builds it as it reads).
        self._first = first

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        headers = self._headers
        if headers is None:
            headers = self._headers = tuple(zip(self._names, self._values, strict=True))
            self._names = self._values = ()
        return headers

    @classmethod
    def of(cls, *headers: tuple[str, str], **named: str) -> AmiMessage:
        """A message built by hand (tests, fixtures): ``AmiMessage.of(("Event", "Hangup"), Channel="PJSIP/1")``."""
        return cls([*headers, *named.items()])

    def get(self, name: str, default: str = "") -> str:
        return self._first.get(name.lower(), default)

    @property
    def lowered(self) -> Mapping[str, str]:
        """The first value of each header under its lower-cased name, for reading only:
        ``message.lowered.get("uniqueid", "")`` is ``message.get("Uniqueid")`` without lower-casing the name on
        each lookup (the live-model reducer's hot path)."""
        return self._first

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
        return len(self._values) if self._headers is None else len(self._headers)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AmiMessage) and self.headers == other.headers

    def __hash__(self) -> int:
        return hash(self.headers)

    def __repr__(self) -> str:
        kind = f"Event {self.event!r}" if self.is_event else f"Response {self.response!r}"
        return f"<AmiMessage {kind} {len(self)} headers>"

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

    Two paths give the same messages (the engine's speed depends on it: see bench/ami.py). The line path reads
    one line at a time and handles everything: the banner, bare LFs, over-long lines, damaged messages, legacy
    ``Response: Follows`` output. The fast path takes all the whole messages of a chunk at once, with calls that
    each go over every line in C, when they are what Asterisk writes: CRLF line ends, one blank line after each
    message, every line ``Name: value`` with a name free of ':' and whitespace, no line over ``max_line`` bytes,
    at most ``max_headers`` headers, no ``Response: Follows``. Anything else goes to the line path, as does
    everything read while the line path is inside a message. The complete lines of a message whose end has not
    arrived yet wait as bytes (at most ``2 * max_line`` bytes and ``max_headers`` lines) so that the message can
    take the fast path when its end comes; beyond that they are read line by line at once.
    """

    def __init__(self, *, expect_banner: bool = True, max_line: int = MAX_LINE, max_headers: int = MAX_HEADERS) -> None:
        if max_line < 16 or max_headers < 1:
            raise ValueError("max_line must be at least 16 and max_headers at least 1")
        self.max_line = max_line
        self.max_headers = max_headers
        self.banner: str | None = None if expect_banner else ""
        # Complete lines of an unfinished message (fast path only), then the incomplete last line.
        self._buffer = bytearray()
        self._raw_cap = 2 * max_line
        # The header names of the messages seen (each distinct sequence once, by its names joined with LF).
        self._shapes: dict[str, _Shape] = {}
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
        buffer = self._buffer
        return len(buffer) - buffer.rfind(b"\n") - 1

    @property
    def pending_headers(self) -> int:
        """Headers held for a message not yet complete (never more than ``max_headers``)."""
        return len(self._headers) + self._buffer.count(b"\n")

    def feed(self, data: bytes) -> list[AmiMessage]:
        if self._fatal is not None:
            raise AmiProtocolError(str(self._fatal))
        buffer = self._buffer
        buffer += data
        out: list[AmiMessage] = []
        errors: list[tuple[str, str]] = []
        # Inside a message (or before the banner): read line by line up to the next blank line, then look again.
        while not self._at_boundary():
            end = buffer.rfind(b"\n") + 1
            if end == 0:
                break
            cut = _blank_line_end(buffer, end)
            piece = bytes(buffer[:cut])
            del buffer[:cut]
            self._lines(piece, out, errors)
        if self._at_boundary():
            cut = buffer.rfind(b"\n\r\n") + 3
            if cut > 2:
                segment = bytes(buffer[:cut])
                del buffer[:cut]
                self._messages(segment, out, errors)
        # The complete lines of an unfinished message wait as bytes, unless they may already be a message (an LF
        # blank line, a legacy reply that ends without one) or are too many. A blank line first (between two
        # messages) would hide a legacy reply's first line from the check: the line path takes those.
        end = buffer.rfind(b"\n") + 1
        if end and not (
            self._at_boundary()
            and end <= self._raw_cap
            and buffer.count(b"\n", 0, end) <= self.max_headers
            and buffer.find(b"\n\n", 0, end) < 0
            and not buffer.startswith((b"\n", b"\r\n"))
            and b"follows" not in buffer[: buffer.find(b"\n") + 1].lower()
        ):
            piece = bytes(buffer[:end])
            del buffer[:end]
            self._lines(piece, out, errors)
        self._check_tail(out, errors)
        if errors:
            reason, raw = errors[0]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise AmiProtocolError(f"message dropped: {reason}{more}", raw, messages=out, recoverable=True)
        return out

    def _at_boundary(self) -> bool:
        """Between two messages, with the banner read: where the fast path may start."""
        return (
            self.banner is not None
            and not self._headers
            and self._damage is None
            and not self._follows
            and not self._skip_line
        )

    def _messages(self, segment: bytes, out: list[AmiMessage], errors: list[tuple[str, str]]) -> None:
        """Whole messages (``segment`` starts between two messages and ends with a blank line): the fast path."""
        parsed: list[AmiMessage] | None = None
        crlf = segment.count(b"\r\n")
        # Every LF and every CR belongs to a CRLF (a lone CR inside a value is left to the line path).
        if segment.count(b"\n") == crlf == segment.count(b"\r"):
            if segment.isascii():
                parsed = self._split(segment.decode("ascii"), crlf)
            elif max(map(len, segment.split(b"\r\n"))) <= self.max_line:
                # Line lengths are counted in bytes, before decoding; decoding never adds or removes a CR or LF.
                parsed = self._split(segment.decode("utf-8", errors="replace"), crlf)
        if parsed is None:
            self._lines(segment, out, errors)
        else:
            out += parsed

    def _split(self, text: str, crlf: int) -> list[AmiMessage] | None:
        """``text`` (``crlf`` CRLFs, no other CR or LF, a blank line after each message) as messages, or None for
        the line path.

        Each message's line ends become ``": \\r"`` and the result is split at every ``": "``: when each line
        holds exactly one ``": "`` the pieces are name, value, name, value..., every name but the first starting
        with the CR of its line end and no value holding one. A CR is always the first character of a piece
        (it follows the ``": "`` put before it), so counting the CRs among the names of every message, against
        the line ends of the whole text, proves that each line was split once, at its first ``": "``. A message
        where that fails (a value holding ``": "``) is split line by line instead.
        """
        body = text[:-4]
        shapes = self._shapes
        max_headers = self.max_headers
        max_line = self.max_line
        blocks = body.split("\r\n\r\n")
        lines = 0
        parsed: list[AmiMessage] = []
        append = parsed.append
        new_message = object.__new__
        for block in blocks:
            if len(block) > max_line and max(map(len, block.split("\r\n"))) > max_line:
                return None
            tokens = block.replace("\r\n", ": \r").split(": ")
            names: Sequence[str] = tokens[::2]
            key = "\n".join(names)
            count = len(names)
            if len(tokens) == 2 * count and key.count("\r") == count - 1:
                values: Sequence[str] = tokens[1::2]
            else:
                # Some value holds ": " too: each line is split at its first one. A line without one (a blank
                # line between messages too: rare, the line path skips them) sends the text to the line path.
                parts = list(map(str.partition, block.split("\r\n"), repeat(": ")))
                if not all(map(_PART_SEPARATOR, parts)):
                    return None
                names = list(map(_PART_NAME, parts))
                values = list(map(_PART_VALUE, parts))
                key = "\n\r".join(names)
                count = len(parts)
            if count > max_headers:
                return None
            lines += count
            shape = shapes.get(key)
            if shape is None:
                shape = _shape(key.split("\n\r"))
                if shape is None:
                    return None
                if len(shapes) < _MAX_SHAPES:
                    shapes[key] = shape
            names, keys, unique, reply, template = shape
            if reply and values[0].lower() == "follows":
                return None
            # Made here rather than through __init__: the (name, value) pairs are only built if headers is read.
            message = new_message(AmiMessage)
            message._headers = None
            message._names = names
            message._values = values
            if unique:
                # A copy of the shape's dict of names is already the right size: filling it beats dict(zip()).
                first = template.copy()
                first.update(zip(keys, values))  # noqa: B905 - as many values as keys here
                message._first = first
            else:
                # A repeated header: the first value wins.
                message._first = dict(zip(reversed(keys), reversed(values)))  # noqa: B905
            append(message)
        # The line ends within messages are the CRLFs but the blank line after each message (two CRLFs each).
        if lines - len(blocks) != crlf - 2 * len(blocks):
            return None
        return parsed

    def _lines(self, piece: bytes, out: list[AmiMessage], errors: list[tuple[str, str]]) -> None:
        """Complete lines (``piece`` ends with LF), one at a time: the line path."""
        if not piece:
            return
        chunk = piece[:-1]
        limit = self.max_line
        if chunk.isascii():
            lines: list[str | bytes] = list(chunk.decode("ascii").split("\n"))
        else:
            # Lengths are counted in bytes, so over-long lines are marked before decoding: each stays bytes, its
            # first 80 without the CR (what the error shows, as for a line found too long before its end).
            lines = [
                raw.removesuffix(b"\r")[:80]
                if len(raw) - raw.endswith(b"\r") > limit
                else raw.decode("utf-8", errors="replace")
                for raw in chunk.split(b"\n")
            ]
        for line in lines:
            if self._skip_line:
                self._skip_line = False
                continue
            if isinstance(line, bytes):
                self._too_long(line.decode("utf-8", errors="replace"))
                continue
            if line.endswith("\r"):
                line = line[:-1]
            if len(line) > limit:
                self._too_long(line[:80])
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

    def _too_long(self, start: str) -> None:
        if self.banner is None:
            self._fail("banner line too long", start)
        self._damaged(f"line longer than {self.max_line} bytes", start)

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

    def _check_tail(self, out: list[AmiMessage], errors: list[tuple[str, str]]) -> None:
        """An incomplete line longer than the cap: forget its bytes and skip it up to its end."""
        buffer = self._buffer
        start = buffer.rfind(b"\n") + 1
        if len(buffer) - start <= self.max_line + 1:
            return
        if start:
            # The message's complete lines kept for the fast path are read first: the damage is that message's.
            piece = bytes(buffer[:start])
            del buffer[:start]
            self._lines(piece, out, errors)
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


def _shape(names: Sequence[str]) -> _Shape | None:
    """The fast path takes names that are not empty and hold no ':' and no whitespace: the first ':' of the line
    is then the one before the value and the name needs no strip, so the line path would read it the same."""
    joined = "".join(names)
    if "" in names or ":" in joined or joined != "".join(joined.split()):
        return None
    keys = tuple(map(str.lower, names))
    return tuple(names), keys, len(set(keys)) == len(keys), keys[0] == "response", dict.fromkeys(keys, "")


def _blank_line_end(buffer: bytearray, end: int) -> int:
    """Just past the first blank line (CRLF or LF) in ``buffer[:end]``, or ``end`` when there is none."""
    if buffer.startswith(b"\n"):
        return 1
    if buffer.startswith(b"\r\n"):
        return 2
    cut = end
    crlf = buffer.find(b"\n\r\n", 0, end)
    if crlf >= 0:
        cut = crlf + 3
    lf = buffer.find(b"\n\n", 0, cut)
    if lf >= 0:
        cut = lf + 2
    return cut


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
