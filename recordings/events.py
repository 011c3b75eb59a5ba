"""What the recordings publish on the bus (subscribe by class; docs/events.md lists the subscribers)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RecordingStarted:
    """A recording of a call began (``kind``: full or on_demand)."""

    id: str
    linkedid: str
    kind: str


@dataclass(frozen=True, slots=True)
class RecordingFinished:
    """A recording of a call ended and its index row was completed (duration, size)."""

    id: str
    linkedid: str
    kind: str
