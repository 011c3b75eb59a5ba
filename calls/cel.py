"""Reads Asterisk's channel event log (asterisk-conf/cel_custom.conf: one JSON object per line).

Asterisk appends to the file while we read it, so a reader keeps its offset and reads only whole lines; a line
that is not valid JSON (a partial write, a damaged file) is skipped and counted, never fatal. Only the events of
a call are kept, in order, by linkedid.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("callcenter.calls.cel")

# One line is a handful of short fields; anything much longer is damage, not an event.
MAX_LINE = 16 * 1024


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

    @property
    def ended(self) -> float | None:
        return next((event.time for event in self.events if event.type == "LINKEDID_END"), None)

    @property
    def started(self) -> float:
        return min((event.time for event in self.events), default=0.0)

    @property
    def last(self) -> float:
        return max((event.time for event in self.events), default=0.0)

    def first_channel(self) -> CelEvent | None:
        return next((event for event in self.events if event.type == "CHAN_START"), None)

    def queue(self) -> str:
        """The first queue the call joined ("" if none): Queue()'s first argument."""
        for event in self.events:
            if event.type == "APP_START" and event.app.lower() == "queue":
                return event.app_data.split(",", 1)[0] or "?"
        return ""

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


class CelReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._inode: int | None = None
        self.skipped = 0
        self.calls: dict[str, CelCall] = defaultdict(lambda: CelCall(""))

    def read_new(self) -> list[CelEvent]:
        """The events appended since the last read (blocking file I/O: run it in a worker thread)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        if self._inode != stat.st_ino or stat.st_size < self._offset:
            # Rotated or truncated: start again from the top of the new file.
            self._inode, self._offset = stat.st_ino, 0
        events: list[CelEvent] = []
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self._offset += end + 1
        for line in data[: end + 1].splitlines():
            if not line.strip():
                continue
            event = parse_line(line)
            if event is None:
                self.skipped += 1
                continue
            events.append(event)
        self._index(events)
        return events

    def _index(self, events: Iterable[CelEvent]) -> None:
        for event in events:
            call = self.calls.get(event.linkedid)
            if call is None:
                call = self.calls[event.linkedid] = CelCall(event.linkedid)
            call.events.append(event)

    def forget(self, linkedid: str) -> None:
        self.calls.pop(linkedid, None)
