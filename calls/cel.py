"""Reads Asterisk's channel event log (asterisk-conf/cel_custom.conf: one JSON object per line).

Asterisk appends to the file while we read it, so a reader keeps its offset and reads only whole lines, a bounded
stretch at a time; a line that is not valid JSON (a partial write, a damaged file) is skipped and counted, never
fatal. Of each call only the events reconciliation reads are kept (:data:`KEPT`), in order, by linkedid, with
where the call's first line starts in the file: the reader's position for a restart is the first line of the
first call it still keeps (:meth:`CelReader.position`). A call its owner settles is dropped, and so are its later
lines.
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("callcenter.calls.cel")

# One line is a handful of short fields; anything much longer is damage, not an event.
MAX_LINE = 16 * 1024
# How much of the log one step reads: the memory a step needs, and how long the worker thread holds the GIL.
CHUNK_BYTES = 2 * 1024 * 1024
# The events reconciliation reads: the first channel's start, a queue joined, a seat entering a bridge, the end
# (see _wanted); a HANGUP only moves the time the call was last seen, and the rest is not read at all. An
# answered queue call logs 17 lines; 4 of them are kept.
KEPT = frozenset({"CHAN_START", "APP_START", "BRIDGE_ENTER", "LINKEDID_END"})
_IGNORED_BYTES = frozenset(
    {b"ANSWER", b"APP_END", b"BRIDGE_EXIT", b"CHAN_END", b"HOLD", b"UNHOLD", b"PICKUP", b"FORWARD", b"USER_DEFINED"}
)
_TYPE_FIRST = b'{"eventtype":"'
_TYPE_AT = len(_TYPE_FIRST)
_TIME = re.compile(rb"[0-9]+(?:\.[0-9]*)?")
# Settled calls remembered so that their late lines are dropped at once rather than kept until they end.
SETTLED_MEMORY = 20_000

# What asterisk-conf/cel_custom.conf makes Asterisk write, field for field, with no escape in any value: parsed
# without the JSON decoder (four times faster). Anything else (an escape, another field order, damage) goes to
# parse_line, which decides.
_ASTERISK_LINE = re.compile(
    rb'\{"eventtype":"([^"\\]*)","eventtime":([0-9.]+),"uniqueid":"([^"\\]*)","linkedid":"([^"\\]*)",'
    rb'"appname":"([^"\\]*)","appdata":"([^"\\]*)","num":"([^"\\]*)","exten":"([^"\\]*)",'
    rb'"context":"([^"\\]*)","channame":"([^"\\]*)"\}\s*$'
)


@dataclass(frozen=True, slots=True)
class CelEvent:
    type: str
    time: float
    uniqueid: str
    linkedid: str
    app: str = ""
    app_data: str = ""
    number: str = ""
    exten: str = ""
    context: str = ""
    channel: str = ""


def parse_line(line: bytes) -> CelEvent | None:
    if len(line) > MAX_LINE:
        return None
    try:
        raw = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict):
        return None
    data = {str(key).lower(): value for key, value in raw.items()}
    try:
        return CelEvent(
            type=str(data["eventtype"]),
            time=float(data["eventtime"]),
            uniqueid=str(data["uniqueid"]),
            linkedid=str(data["linkedid"]),
            app=str(data.get("appname") or ""),
            app_data=str(data.get("appdata") or "")[:256],
            number=str(data.get("num") or ""),
            exten=str(data.get("exten") or ""),
            context=str(data.get("context") or ""),
            channel=str(data.get("channame") or ""),
        )
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(slots=True)
class CelCall:
    """What the log says about one linkedid."""

    linkedid: str
    events: list[CelEvent] = field(default_factory=list)
    # Where the call's first line starts, in the file with this inode (None: not from the file being read).
    offset: int = 0
    inode: int | None = None
    # The time of its latest line, kept or not.
    seen: float = 0.0

    @property
    def ended(self) -> float | None:
        return next((event.time for event in self.events if event.type == "LINKEDID_END"), None)

    @property
    def started(self) -> float:
        return min((event.time for event in self.events), default=0.0)

    @property
    def last(self) -> float:
        return max(self.seen, max((event.time for event in self.events), default=0.0))

    @property
    def whole(self) -> bool:
        """Whether the log shows the call's start: the first channel's CHAN_START (its uniqueid is the linkedid).
        A call read from the middle (a rotated file, a stretch read again) has no true start, number or DID."""
        return any(event.type == "CHAN_START" and event.uniqueid == self.linkedid for event in self.events)

    def first_channel(self) -> CelEvent | None:
        return next((event for event in self.events if event.type == "CHAN_START"), None)

    def queue(self) -> str:
        """The first queue the call joined ("" if none): Queue()'s first argument."""
        for event in self.events:
            if event.type == "APP_START" and event.app.lower() == "queue":
                return event.app_data.split(",", 1)[0] or "?"
        return ""

    def joined(self) -> float | None:
        """When the call first joined a queue (Queue()'s APP_START), if it did."""
        for event in self.events:
            if event.type == "APP_START" and event.app.lower() == "queue":
                return event.time
        return None

    def answered_by(self) -> str:
        """The interface (PJSIP/1001) of the first channel other than the caller's that entered a bridge."""
        seat, _ = self.answer()
        return seat

    def answer(self) -> tuple[str, float | None]:
        """The first seat that joined the caller in a bridge, and when. The caller's channel is the call's first
        (an inbound call's linkedid is its caller's uniqueid)."""
        caller = self.linkedid
        for event in self.events:
            if event.type == "BRIDGE_ENTER" and event.uniqueid != caller and event.channel:
                return event.channel.rsplit("-", 1)[0], event.time
        return "", None


def _wanted(event: CelEvent) -> bool:
    kind = event.type
    if kind == "CHAN_START":
        return event.uniqueid == event.linkedid  # the call's first channel: its start, number and DID
    if kind == "BRIDGE_ENTER":
        return event.uniqueid != event.linkedid  # a channel other than the caller's: the seat
    if kind == "APP_START":
        return event.app.lower() == "queue"
    return kind == "LINKEDID_END"


def _fast(match: re.Match[bytes]) -> CelEvent:
    kind, at, uniqueid, linkedid, app, app_data, number, exten, context, channel = match.groups()
    return CelEvent(
        type=kind.decode(),
        time=float(at),
        uniqueid=uniqueid.decode(),
        linkedid=linkedid.decode(),
        app=app.decode(),
        app_data=app_data.decode()[:256],
        number=number.decode(),
        exten=exten.decode(),
        context=context.decode(),
        channel=channel.decode(),
    )


class CelReader:
    def __init__(self, path: Path, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.path = path
        self.chunk_bytes = max(chunk_bytes, 2 * MAX_LINE)
        self.inode: int | None = None
        # Where the next read starts; everything before it was read.
        self.offset = 0
        self.skipped = 0
        self.bytes_read = 0
        # In the order of each call's first line: the first one of the file being read has the smallest offset.
        self.calls: dict[str, CelCall] = {}
        self._settled: OrderedDict[str, None] = OrderedDict()

    def resume(self, inode: int | None, offset: int) -> None:
        """Starts reading at ``offset`` of the file with ``inode`` (from the top if the file is another one)."""
        self.inode, self.offset = inode, max(0, offset)

    def position(self, *, settling: Collection[str] = ()) -> tuple[int | None, int]:
        """Where a restarted reader must start so that no call still kept here (but those in ``settling``) loses a
        line: the first line of the first such call in the current file, else the end of what was read."""
        for linkedid, call in self.calls.items():
            if call.inode == self.inode and call.inode is not None and linkedid not in settling:
                return self.inode, call.offset
        return self.inode, self.offset

    def read_new(self) -> list[CelEvent]:
        """The kept events appended since the last read, the whole rest of the file (blocking file I/O: run it
        in a worker thread; the recorder reads :meth:`read_chunk` by chunk instead)."""
        events: list[CelEvent] = []
        while (chunk := self.read_chunk()) is not None:
            events.extend(chunk)
        return events

    def read_chunk(self) -> list[CelEvent] | None:
        """The kept events of the next whole lines, at most ``chunk_bytes`` of them; None when no whole line is
        left (blocking file I/O: run it in a worker thread)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        if self.inode != stat.st_ino or stat.st_size < self.offset:
            # Rotated or truncated: start again from the top of the new file. What is kept of the old one can no
            # longer be read again, so it no longer holds the position back.
            self.inode, self.offset = stat.st_ino, 0
            for call in self.calls.values():
                call.inode = None
        if stat.st_size <= self.offset:
            return None
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read(self.chunk_bytes)
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) < self.chunk_bytes:
                return None  # a line Asterisk is still writing
            # A chunk without a line end is no line: damage. Skip it; the rest up to the next line end is junk too.
            self.skipped += 1
            self.offset += len(data)
            self.bytes_read += len(data)
            return []
        start = self.offset
        self.offset += end + 1
        self.bytes_read += end + 1
        return self._index(data[:end], start)

    def _index(self, data: bytes, start: int) -> list[CelEvent]:
        kept: list[CelEvent] = []
        calls, settled, inode = self.calls, self._settled, self.inode
        offset = start
        for line in data.split(b"\n"):
            at = offset
            offset += len(line) + 1
            if line.startswith(_TYPE_FIRST):
                # Asterisk's own line: most are of a type nothing reads, told by the type alone.
                kind = line[_TYPE_AT : line.find(b'"', _TYPE_AT)]
                if kind in _IGNORED_BYTES:
                    continue
            elif not line or line.isspace():
                continue
            match = _ASTERISK_LINE.match(line)
            event: CelEvent | None = None
            if match is not None:
                # The same choice as _wanted's, on the raw fields, before anything is decoded.
                kind, uniqueid, linkedid = match[1], match[3], match[4]
                if kind == b"HANGUP":
                    known = calls.get(linkedid.decode(errors="replace"))
                    if known is not None and _TIME.fullmatch(match[2]):
                        known.seen = max(known.seen, float(match[2]))
                    continue
                if kind == b"CHAN_START":
                    wanted = uniqueid == linkedid
                elif kind == b"BRIDGE_ENTER":
                    wanted = uniqueid != linkedid
                elif kind == b"APP_START":
                    wanted = match[5].lower() == b"queue"
                else:
                    wanted = kind == b"LINKEDID_END"
                if not wanted:
                    continue
                try:
                    event = _fast(match)
                except (ValueError, UnicodeDecodeError):
                    event = None
            if event is None:
                event = parse_line(line)
                if event is None:
                    self.skipped += 1
                    continue
            if not _wanted(event):
                if event.type == "HANGUP":
                    known = calls.get(event.linkedid)
                    if known is not None:
                        known.seen = max(known.seen, event.time)
                continue
            call = calls.get(event.linkedid)
            if call is None:
                if event.linkedid in settled:
                    continue
                call = calls[event.linkedid] = CelCall(event.linkedid, offset=at, inode=inode)
            call.events.append(event)
            kept.append(event)
        return kept

    def settle(self, linkedid: str) -> None:
        """The call is done with (recorded, or not the center's): its events go, and its later lines are dropped."""
        self.calls.pop(linkedid, None)
        self._settled[linkedid] = None
        self._settled.move_to_end(linkedid)
        if len(self._settled) > SETTLED_MEMORY:
            self._settled.popitem(last=False)

    def forget(self, linkedid: str) -> None:
        self.calls.pop(linkedid, None)
