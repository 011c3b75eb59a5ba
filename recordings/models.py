"""Tables of the recordings index and of erasure tombstones.

The migration ``0004_recordings`` creates exactly these, plus the search structures the models cannot describe
(SQLite's FTS5 table ``fts_recordings`` with its triggers, PostgreSQL's trigram indexes ``*_trgm``); schema
comparisons skip those by name (``callcenter.db.include_name``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callcenter.db import Base, UtcDateTime

ID_MAX = 40
NUMBER_MAX = 80
INTERFACE_MAX = 80
QUEUE_MAX = 64
CHANNEL_ID_MAX = 64
DID_MAX = 32
SERVICE_TYPE_MAX = 64
INTENT_MAX = 64
PATH_MAX = 255
ACTOR_MAX = 150
REASON_MAX = 500

# SQLite integers are 64-bit already; BIGINT there would not be an alias of the rowid.
SizeType = BigInteger().with_variant(Integer(), "sqlite")


class Kind(StrEnum):
    FULL = "full"
    ON_DEMAND = "on_demand"
    VOICEMAIL = "voicemail"


class Status(StrEnum):
    RECORDING = "recording"
    COMPLETE = "complete"
    MISSING = "missing"
    TAMPERED = "tampered"
    ERASED = "erased"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


def _one_of(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN (" + ", ".join(f"'{value.value}'" for value in values) + ")"


class Recording(Base):
    """One recorded file and what is known about its call."""

    __tablename__ = "recordings"
    __table_args__ = (
        CheckConstraint(_one_of("kind", Kind), name="kind_known"),
        CheckConstraint(_one_of("status", Status), name="status_known"),
        CheckConstraint(_one_of("direction", Direction), name="direction_known"),
        # Every index ends in pk so that it also serves the (sort key, pk) order of the pages on PostgreSQL;
        # on SQLite pk is the rowid, which every index carries anyway.
        Index("ix_recordings_started", "started_at", "pk"),
        Index("ix_recordings_duration", "duration", "pk"),
        Index("ix_recordings_kind_started", "kind", "started_at", "pk"),
        Index("ix_recordings_agent_started", "agent_interface", "started_at", "pk"),
        Index("ix_recordings_agent_user_started", "agent_user_id", "started_at", "pk"),
        Index("ix_recordings_queue_started", "queue", "started_at", "pk"),
        Index("ix_recordings_service_type_started", "service_record_type", "started_at", "pk"),
        Index("ix_recordings_caller", "caller_number"),
        Index("ix_recordings_called", "called_number"),
        Index("ix_recordings_linkedid", "linkedid"),
        # The retention job looks for rows not yet erased, oldest first.
        Index("ix_recordings_status_started", "status", "started_at"),
    )

    # An integer key: SQLite's FTS5 index refers to rows by rowid, which must not change (VACUUM keeps an
    # INTEGER PRIMARY KEY, not an implicit rowid). The public id is the generated ``rec-...`` string.
    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[str] = mapped_column(String(ID_MAX), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    # Relative to the recordings directory: <kind>/<YYYY>/<MM>/<DD>/<id>.wav
    file_path: Mapped[str] = mapped_column(String(PATH_MAX))
    linkedid: Mapped[str | None] = mapped_column(String(CHANNEL_ID_MAX))
    uniqueid: Mapped[str | None] = mapped_column(String(CHANNEL_ID_MAX))
    agent_interface: Mapped[str | None] = mapped_column(String(INTERFACE_MAX))
    agent_user_id: Mapped[int | None] = mapped_column(Integer)
    queue: Mapped[str | None] = mapped_column(String(QUEUE_MAX))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Seconds of audio, from the WAV header once the file is closed.
    duration: Mapped[float | None] = mapped_column(Float)
    caller_number: Mapped[str | None] = mapped_column(String(NUMBER_MAX))
    called_number: Mapped[str | None] = mapped_column(String(NUMBER_MAX))
    direction: Mapped[str] = mapped_column(String(8))
    did: Mapped[str | None] = mapped_column(String(DID_MAX))
    description: Mapped[str] = mapped_column(Text)
    # JSON list of strings.
    tags: Mapped[str] = mapped_column(Text)
    # Case-folded description and tags, one per line: what text search looks in (FTS5 / trigram index).
    search_text: Mapped[str] = mapped_column(Text)
    # The CRM's service record; a plain number, the CRM tables live on another migration branch.
    service_record_id: Mapped[int | None] = mapped_column(Integer)
    service_record_type: Mapped[str | None] = mapped_column(String(SERVICE_TYPE_MAX))
    intent: Mapped[str | None] = mapped_column(String(INTENT_MAX))
    size: Mapped[int | None] = mapped_column(SizeType)
    sha256: Mapped[str | None] = mapped_column(String(64))
    # JSON list of [start, end] offsets in seconds from started_at; end is null while paused.
    paused_intervals: Mapped[str] = mapped_column(Text)
    erased_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    erasure_id: Mapped[int | None] = mapped_column(Integer)


class RecordingErasure(Base):
    """A tombstone: one customer's recordings were erased on request. The number itself is not kept."""

    __tablename__ = "recording_erasures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(ACTOR_MAX))
    reason: Mapped[str] = mapped_column(String(REASON_MAX))
    count: Mapped[int] = mapped_column(Integer)
    # JSON list of the erased recordings' ids.
    recording_ids: Mapped[str] = mapped_column(Text)
