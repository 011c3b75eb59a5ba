"""Call tables: the finished call records, the snapshots of calls still running, and expert handoffs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callcenter.db import Base, UtcDateTime
from calls.records import caller_tail

RecordId = BigInteger().with_variant(Integer(), "sqlite")


def _tail_of_caller(context: Any) -> str:
    """Every insert gets the tail of its caller number, whoever writes the row."""
    return caller_tail(str(context.get_current_parameters().get("caller_number") or ""))


class CallRecord(Base):
    """One row per call, keyed by Asterisk's linkedid; the unique key is what makes the write happen once."""

    __tablename__ = "call_records"
    __table_args__ = (
        Index("ix_call_records_started_at", "started_at"),
        Index("ix_call_records_caller_number", "caller_number"),
        Index("ix_call_records_caller_tail", "caller_tail", "started_at"),
        Index("ix_call_records_agent", "agent"),
    )

    id: Mapped[int] = mapped_column(RecordId, primary_key=True)
    linkedid: Mapped[str] = mapped_column(String(64), unique=True)
    direction: Mapped[str] = mapped_column(String(16))  # inbound | outbound | internal
    caller_number: Mapped[str] = mapped_column(Text)  # caller-controlled, verbatim
    caller_name: Mapped[str] = mapped_column(Text)
    # The number's last digits (records.caller_tail): earlier calls of a caller however the number was written.
    caller_tail: Mapped[str] = mapped_column(String(16), default=_tail_of_caller)
    did: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime] = mapped_column(UtcDateTime)
    outcome: Mapped[str] = mapped_column(String(24))
    ivr_flow: Mapped[str | None] = mapped_column(String(64))
    ivr_outcome: Mapped[str | None] = mapped_column(String(24))
    ivr_choice: Mapped[str | None] = mapped_column(String(64))
    ivr_path: Mapped[str] = mapped_column(Text)  # JSON list of steps
    queues: Mapped[str] = mapped_column(Text)  # JSON list of queue names, in order
    segments: Mapped[str] = mapped_column(Text)  # JSON list: queue, agent, entered, answered, wait, talk
    wait_time: Mapped[float | None] = mapped_column(Float)
    talk_time: Mapped[float | None] = mapped_column(Float)
    agent: Mapped[str | None] = mapped_column(String(80))  # the first seat that answered
    expert: Mapped[str | None] = mapped_column(String(80))
    handoff_notes: Mapped[str | None] = mapped_column(Text)
    recording_ids: Mapped[str] = mapped_column(Text)  # JSON list
    # The CRM service record the call was made for (a callback), if any.
    service_record_id: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))  # live | reconciled | cel
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CallProgress(Base):
    """The engine's view of a call that has not ended, refreshed as it goes; the reconciler closes the ones a
    restarted engine no longer sees."""

    __tablename__ = "call_progress"

    linkedid: Mapped[str] = mapped_column(String(64), primary_key=True)
    snapshot: Mapped[str] = mapped_column(Text)  # JSON
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ExpertHandoff(Base):
    __tablename__ = "expert_handoffs"
    __table_args__ = (Index("ix_expert_handoffs_linkedid", "linkedid"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    linkedid: Mapped[str] = mapped_column(String(64))
    from_user: Mapped[str] = mapped_column(String(150))
    from_interface: Mapped[str] = mapped_column(String(80))
    notes: Mapped[str] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expert: Mapped[str | None] = mapped_column(String(80))
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # waiting | answered | voicemail | callback | abandoned
    outcome: Mapped[str] = mapped_column(String(16))
    voicemail_path: Mapped[str | None] = mapped_column(Text)


class CelPosition(Base):
    """How far the reconciler has settled Asterisk's channel event log: every call whose first line starts before
    ``byte_offset`` in the file with ``inode`` has its record (or is none of the center's). Written in the same
    transaction as the records that moved it, so a restarted engine resumes there and re-reads no more than the
    calls that were still open."""

    __tablename__ = "cel_positions"

    log: Mapped[str] = mapped_column(String(512), primary_key=True)  # the log's path, as configured
    inode: Mapped[int | None] = mapped_column(BigInteger)
    byte_offset: Mapped[int] = mapped_column(BigInteger)
    # Calls that started before this are not the engine's to record (cel-horizon, on the first start).
    horizon: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
