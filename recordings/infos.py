"""What the recordings' parts take and give: the facts of a call, an index row as the API shows it, a search
page, an open file to stream, an erasure's tombstone, the check's report.

Apart from the parts (index, lifecycle, playback, retention) because they cross them: the lifecycle writes the
rows the index reads, the control and the IVR's voicemail filer pass CallFacts in, the HTTP handlers and the CLI
serialise the rest. None of them does any I/O but Playable, which owns the descriptor it is given.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from recordings.models import Direction, Recording


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the engine knows about the call a recording belongs to."""

    linkedid: str | None = None
    uniqueid: str | None = None
    agent_interface: str | None = None
    agent_user_id: int | None = None
    queue: str | None = None
    caller_number: str | None = None
    called_number: str | None = None
    direction: Direction | str = Direction.INBOUND
    did: str | None = None
    service_record_id: int | None = None
    service_record_type: str | None = None
    intent: str | None = None
    description: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """One row of the index as the API shows it."""

    pk: int
    id: str
    kind: str
    status: str
    file_path: str
    linkedid: str | None
    uniqueid: str | None
    agent_interface: str | None
    agent_user_id: int | None
    queue: str | None
    started_at: datetime
    ended_at: datetime | None
    duration: float | None
    caller_number: str | None
    called_number: str | None
    direction: str
    did: str | None
    description: str
    tags: list[str]
    service_record_id: int | None
    service_record_type: str | None
    intent: str | None
    size: int | None
    sha256: str | None
    paused_intervals: list[list[float | None]]
    erased_at: datetime | None

    @classmethod
    def of(cls, row: Recording | Row[Any]) -> RecordingInfo:
        """From an ORM object or a plain row with the same column names."""
        return cls(
            pk=row.pk,
            id=row.id,
            kind=row.kind,
            status=row.status,
            file_path=row.file_path,
            linkedid=row.linkedid,
            uniqueid=row.uniqueid,
            agent_interface=row.agent_interface,
            agent_user_id=row.agent_user_id,
            queue=row.queue,
            started_at=row.started_at,
            ended_at=row.ended_at,
            duration=row.duration,
            caller_number=row.caller_number,
            called_number=row.called_number,
            direction=row.direction,
            did=row.did,
            description=row.description,
            tags=json_list(row.tags),
            service_record_id=row.service_record_id,
            service_record_type=row.service_record_type,
            intent=row.intent,
            size=row.size,
            sha256=row.sha256,
            paused_intervals=json_list(row.paused_intervals),
            erased_at=row.erased_at,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "linkedid": self.linkedid,
            "uniqueid": self.uniqueid,
            "agent": {"interface": self.agent_interface, "user_id": self.agent_user_id},
            "queue": self.queue,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "duration": self.duration,
            "caller_number": self.caller_number,
            "called_number": self.called_number,
            "direction": self.direction,
            "did": self.did,
            "description": self.description,
            "tags": self.tags,
            "service_record": {"id": self.service_record_id, "type": self.service_record_type},
            "intent": self.intent,
            "size": self.size,
            "sha256": self.sha256,
            "paused_intervals": self.paused_intervals,
            "erased_at": self.erased_at.isoformat() if self.erased_at else None,
        }


def json_list(text: str | None) -> list[Any]:
    """A JSON list column (tags, paused intervals) read back; [] for anything that is not one."""
    if not text or text == "[]":
        return []
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


@dataclass(frozen=True, slots=True)
class SearchPage:
    items: list[RecordingInfo]
    total: int
    limit: int
    offset: int
    next_cursor: str | None
    # False when more rows match than the configured counting limit: total is then that limit ("10000+").
    total_exact: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "items": [item.as_json() for item in self.items],
            "total": self.total,
            "total_exact": self.total_exact,
            "limit": self.limit,
            "offset": self.offset,
            "next_cursor": self.next_cursor,
        }


@dataclass(slots=True)
class Playable:
    """An open, verified file ready to be streamed; the caller closes it."""

    fd: int
    size: int
    content_type: str
    etag: str
    filename: str
    closed: bool = field(default=False)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


@dataclass(frozen=True, slots=True)
class Erasure:
    id: int
    at: datetime
    actor: str
    reason: str
    count: int
    recording_ids: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "reason": self.reason,
            "count": self.count,
            "recording_ids": self.recording_ids,
        }


@dataclass(frozen=True, slots=True)
class CheckReport:
    files_without_rows: list[str]
    rows_without_files: list[tuple[str, str]]

    @property
    def clean(self) -> bool:
        return not self.files_without_rows and not self.rows_without_files
