"""The reference AMI parser: the plain, line-by-line statement of what :class:`~callcenter.ami.message.AmiParser`
must give. It is not used in production.

Production reads Asterisk with ``AmiParser`` (:mod:`callcenter.ami.message`), which is written for speed
(bench/ami.py) and is hard to follow. This module says the same thing slowly: every message, every header, every
error and every limit that ``AmiParser`` gives must be what ``ReferenceAmiParser`` gives for the same bytes fed
in the same pieces. ``tests/unit/test_ami_parser_equivalence.py`` feeds both the recorded transcripts and hostile
input and fails on any difference. When the two disagree, this file says what was meant; change it only when
the meaning changes, and change ``AmiParser`` to match.

How the Asterisk Manager Interface frames its stream (``main/manager.c``)
--------------------------------------------------------------------------

Once connected, Asterisk sends one line, the banner, and then messages::

    Asterisk Call Manager/11.0.0<CR><LF>       the banner (the number is the AMI version, not Asterisk's)
    Response: Success<CR><LF>                  a reply to an action, matched to it by its ActionID
    ActionID: cc-1<CR><LF>
    Message: Authentication accepted<CR><LF>
    <CR><LF>                                   a blank line ends the message
    Event: Newchannel<CR><LF>                  an event: something happened
    Privilege: call,all<CR><LF>
    Channel: PJSIP/pstn-00000000<CR><LF>
    CallerIDName: Ann<CR><LF>
    <CR><LF>

So a message is its header lines followed by one blank line: on the wire, the message ends at the first
``CR LF CR LF``. Each header line is ``Name: value``: the name, a colon, one space, the value up to the line's
end. A value is never quoted or escaped, and it may itself hold ``": "`` (a caller named "Sales: Line 1"), so a
line is split at its *first* colon. Names repeat (``ChanVariable``, ``Variable``, ``Output``): every header is
kept, in order, and a lookup by name (which ignores case) gives the first value.

What this parser accepts beyond what Asterisk writes, and the rules it follows:

- Lines end at LF; one CR just before the LF is dropped. A bare LF ends a line too, so a blank line is ``LF``
  or ``CR LF``, and a CR anywhere else stays in the value.
- Blank lines that end no message (several in a row, or before the first message) are skipped.
- A header line is split at its first ``:``; the name is stripped of surrounding whitespace and one space is
  dropped from the start of the value (more spaces belong to the value). A line with no ``:``, or nothing
  before it, is not a header: its message is dropped.
- Bytes are decoded as UTF-8 line by line; bytes that are not UTF-8 become U+FFFD. Lengths are counted in bytes.
- The first line must be the banner (it starts with ``Asterisk Call Manager/``) when ``expect_banner``; its
  text is then in :attr:`ReferenceAmiParser.banner`. Anything else, or a banner line over ``max_line`` bytes, is
  fatal: the stream is not AMI, and every later :meth:`~ReferenceAmiParser.feed` raises again.
- The legacy ``Response: Follows`` reply (the output of the ``Command`` action on old Asterisk): when
  ``Response: Follows`` is the message's first header, the ``Privilege:`` and ``ActionID:`` lines that come
  next are headers, every line after them is command output (a header named ``Output`` each, blank lines
  included) and the message ends with the line that ends with ``--END COMMAND--`` (any text before the marker
  on that line is one more ``Output``), without waiting for a blank line.

Limits, so that memory stays bounded whatever the peer sends:

- A line longer than ``max_line`` bytes (its CR and LF not counted) drops its message. A line still without its
  LF once more than ``max_line + 1`` bytes of it are held (room for the CR) is known to be too long already:
  its bytes are thrown away at once and the rest of it, up to its LF, is skipped as it arrives.
- A message with more than ``max_headers`` headers is dropped; what it held is freed when the limit is crossed.

A dropped message is skipped up to its end (its blank line, or for a ``Response: Follows`` reply its
``--END COMMAND--`` line or a blank line), and the parser goes on with the next one. A ``feed`` that dropped a
message raises a recoverable :class:`~callcenter.ami.exceptions.AmiProtocolError` when it is done: the error
names the first message dropped (its reason and ``raw``, the start of the line at fault) and how many more there
were, and carries the good messages of the same ``feed`` in ``messages``, in order. The error is raised by the
``feed`` that reads the dropped message's end. ``raw`` is at most 80 characters of the line at fault, without its
CR; for a line that is too long, its first 80 bytes, decoded.

A message is given out by the ``feed`` whose bytes complete it, however the stream was cut into pieces.
"""

from __future__ import annotations

from typing import NoReturn

from callcenter.ami.exceptions import AmiProtocolError
from callcenter.ami.message import BANNER_PREFIX, END_COMMAND, MAX_HEADERS, MAX_LINE, AmiMessage

# How much of the line at fault an error carries.
RAW_CHARS = 80


class ReferenceAmiParser:
    """An incremental AMI parser, one line at a time: the meaning of :class:`~callcenter.ami.message.AmiParser`.

    Same interface: ``feed(bytes)`` returns the messages the bytes complete (or raises
    :class:`~callcenter.ami.exceptions.AmiProtocolError`), ``banner``, ``buffered``, ``pending_headers``,
    ``max_line`` and ``max_headers``. See the module's docstring for the rules.
    """

    def __init__(self, *, expect_banner: bool = True, max_line: int = MAX_LINE, max_headers: int = MAX_HEADERS) -> None:
        if max_line < 16 or max_headers < 1:
            raise ValueError("max_line must be at least 16 and max_headers at least 1")
        self.max_line = max_line
        self.max_headers = max_headers
        # None until the banner line is read; "" when no banner is expected.
        self.banner: str | None = None if expect_banner else ""
        # The start of the line whose LF has not arrived yet.
        self._partial = b""
        # True while the rest of a line already known to be too long is still to come (it is thrown away).
        self._skipping = False
        # The message being read.
        self._headers: list[tuple[str, str]] = []
        self._dropped: tuple[str, str] | None = None  # why it will be dropped, and the raw text at fault
        self._follows = False  # it is a legacy "Response: Follows" reply
        self._output_started = False  # ...and its command output has begun
        # Set once the stream is known not to be AMI.
        self._fatal: AmiProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for a line not yet complete (never more than ``max_line`` + 1)."""
        return len(self._partial)

    @property
    def pending_headers(self) -> int:
        """Headers held for a message not yet complete (never more than ``max_headers``)."""
        return len(self._headers)

    def feed(self, data: bytes) -> list[AmiMessage]:
        """The messages that ``data`` completes, in order."""
        if self._fatal is not None:
            raise AmiProtocolError(str(self._fatal))
        # Every piece but the last is a complete line; the last is the start of the next one (maybe empty).
        *lines, self._partial = (self._partial + data).split(b"\n")
        messages: list[AmiMessage] = []
        errors: list[tuple[str, str]] = []
        for line in lines:
            self._read_line(line, messages, errors)
        if len(self._partial) > self.max_line + 1:
            self._partial_line_too_long()
        if errors:
            reason, raw = errors[0]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise AmiProtocolError(f"message dropped: {reason}{more}", raw, messages=messages, recoverable=True)
        return messages

    # -- one line ---------------------------------------------------------------------------------------------

    def _read_line(self, line_bytes: bytes, messages: list[AmiMessage], errors: list[tuple[str, str]]) -> None:
        if self._skipping:
            # The end of a line that was dropped while it arrived.
            self._skipping = False
            return
        line_bytes = line_bytes.removesuffix(b"\r")
        if len(line_bytes) > self.max_line:
            raw = _decode(line_bytes[:RAW_CHARS])
            if self.banner is None:
                self._fail("banner line too long", raw)
            self._drop(f"line longer than {self.max_line} bytes", raw)
            return
        line = _decode(line_bytes)
        if self.banner is None:
            if not line.startswith(BANNER_PREFIX):
                self._fail("not an AMI banner", line[:RAW_CHARS])
            self.banner = line
            return
        if self._follows:
            self._read_follows_line(line, messages, errors)
            return
        if line == "":
            # A blank line: the end of the message, if there is one.
            if self._dropped is not None:
                errors.append(self._dropped)
                self._start_next_message()
            elif self._headers:
                messages.append(AmiMessage(self._headers))
                self._start_next_message()
            return
        if self._dropped is not None:
            return
        name, colon, value = line.partition(":")
        if not colon or not name:
            self._drop("not a header line", line[:RAW_CHARS])
            return
        name = name.strip()
        value = value.removeprefix(" ")
        self._add_header(name, value)
        if len(self._headers) == 1 and name.lower() == "response" and value.lower() == "follows":
            self._follows = True

    def _read_follows_line(self, line: str, messages: list[AmiMessage], errors: list[tuple[str, str]]) -> None:
        """A line of a legacy ``Response: Follows`` reply, after its first header."""
        if line.endswith(END_COMMAND):
            before_marker = line.removesuffix(END_COMMAND)
            if before_marker and self._dropped is None:
                self._add_header("Output", before_marker)
            if self._dropped is not None:
                errors.append(self._dropped)
            else:
                messages.append(AmiMessage(self._headers))
            self._start_next_message()
            return
        if self._dropped is not None:
            # A dropped reply also ends at a blank line: its output may never end.
            if line == "":
                errors.append(self._dropped)
                self._start_next_message()
            return
        name, colon, value = line.partition(":")
        if not self._output_started and colon and name.lower() in ("privilege", "actionid"):
            self._add_header(name, value.removeprefix(" "))
        else:
            self._output_started = True
            self._add_header("Output", line)

    def _add_header(self, name: str, value: str) -> None:
        if len(self._headers) == self.max_headers:
            self._drop(f"more than {self.max_headers} headers", f"{name}: {value}"[:RAW_CHARS])
            return
        self._headers.append((name, value))

    # -- limits and damage ------------------------------------------------------------------------------------

    def _partial_line_too_long(self) -> None:
        """The line not yet complete is over the cap: forget its bytes now and skip the rest of it."""
        raw = _decode(self._partial[:RAW_CHARS])
        self._partial = b""
        if self.banner is None:
            self._fail("banner line too long", raw)
        self._skipping = True
        self._drop(f"line longer than {self.max_line} bytes", raw)

    def _drop(self, reason: str, raw: str) -> None:
        """The message being read will be dropped; the first reason is the one reported."""
        if self._dropped is None:
            self._dropped = (reason, raw)
        self._headers = []

    def _start_next_message(self) -> None:
        self._headers = []
        self._dropped = None
        self._follows = False
        self._output_started = False

    def _fail(self, reason: str, raw: str) -> NoReturn:
        self._fatal = AmiProtocolError(reason, raw)
        self._partial = b""
        self._start_next_message()
        raise self._fatal


def _decode(line: bytes) -> str:
    return line.decode("utf-8", errors="replace")
