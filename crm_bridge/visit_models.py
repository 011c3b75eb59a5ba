"""Tables of the service desk: evaluation items (the center's basic data), callback visits' calls and results
with their scores, and the reminders already pushed.

The migration ``0012_desk_visits`` creates exactly these (a test compares the two on SQLite and PostgreSQL). They
refer to ``service_records`` by name only: this module is imported beside :mod:`crm_bridge.models` wherever the
tables are collected (``callcenter/migrations/env.py``) and imports none of it.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from callcenter.db import Base, UtcDateTime

# As crm_bridge.models: SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

ITEM_NAME_MAX = 200
LINKEDID_MAX = 64
NUMBER_MAX = 64
ACTOR_MAX = 150
OCCASION_MAX = 80
ENUM_MAX = 32


class AppliesTo(StrEnum):
    """What an evaluation item scores."""

    VISIT = "visit"
    CALL = "call"
    OUTLET = "outlet"


class VisitOutcome(StrEnum):
    """How a callback visit ended; each is final (the desk places the call again before giving up)."""

    REACHED = "reached"
    NOT_REACHED = "not_reached"
    REFUSED = "refused"
    WRONG_NUMBER = "wrong_number"


class ReminderKind(StrEnum):
    REMINDER = "reminder"
    OVERDUE = "overdue"


SCORE_MIN = 1
SCORE_MAX = 5


def _one_of(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN (" + ", ".join(f"'{value.value}'" for value in values) + ")"


class EvaluationItem(Base):
    """One item a visit, a call or an outlet is scored on (1-5); retired by ``active`` false, never deleted: the
    scores given on it stay."""

    __tablename__ = "evaluation_items"
    __table_args__ = (
        CheckConstraint(_one_of("applies_to", AppliesTo), name="applies_to_known"),
        UniqueConstraint("applies_to", "name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(ITEM_NAME_MAX))
    applies_to: Mapped[str] = mapped_column(String(ENUM_MAX))
    active: Mapped[bool] = mapped_column(Boolean)
    # Where it is shown among the items of its kind, smallest first.
    position: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class VisitCall(Base):
    """A call placed for a callback visit (one per attempt): the callback's linkedid ties it to its call record and
    its full recording."""

    __tablename__ = "visit_calls"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    record_id: Mapped[int] = mapped_column(BigId, ForeignKey("service_records.id", ondelete="CASCADE"), index=True)
    linkedid: Mapped[str] = mapped_column(String(LINKEDID_MAX), unique=True)
    callback_id: Mapped[str] = mapped_column(String(LINKEDID_MAX))
    number: Mapped[str] = mapped_column(String(NUMBER_MAX))
    placed_by: Mapped[str] = mapped_column(String(ACTOR_MAX))
    placed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class VisitResult(Base):
    """The one result of a callback visit: the outcome, the customer's satisfaction and comment."""

    __tablename__ = "visit_results"
    __table_args__ = (
        CheckConstraint(_one_of("outcome", VisitOutcome), name="outcome_known"),
        CheckConstraint(f"satisfaction BETWEEN {SCORE_MIN} AND {SCORE_MAX}", name="satisfaction_range"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    record_id: Mapped[int] = mapped_column(BigId, ForeignKey("service_records.id", ondelete="CASCADE"), unique=True)
    outcome: Mapped[str] = mapped_column(String(ENUM_MAX))
    satisfaction: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    # The visit's call the result was taken on, when one was placed.
    linkedid: Mapped[str | None] = mapped_column(String(LINKEDID_MAX))
    recorded_by: Mapped[str] = mapped_column(String(ACTOR_MAX))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class VisitScore(Base):
    """A visit result's score on one evaluation item."""

    __tablename__ = "visit_scores"
    __table_args__ = (
        CheckConstraint(f"score BETWEEN {SCORE_MIN} AND {SCORE_MAX}", name="score_range"),
        UniqueConstraint("result_id", "item_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    result_id: Mapped[int] = mapped_column(BigId, ForeignKey("visit_results.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("evaluation_items.id", ondelete="RESTRICT"), index=True)
    score: Mapped[int] = mapped_column(Integer)


class DeskReminder(Base):
    """A reminder or overdue notice pushed for a record on one occasion (its follow-up date, its appointment): kept
    so that it is pushed once, across restarts and engines (the unique pair is claimed before the frame goes). The
    date or time it was about is kept beside it, so that a pass asks only for records with an occasion unclaimed."""

    __tablename__ = "desk_reminders"
    __table_args__ = (
        CheckConstraint(_one_of("kind", ReminderKind), name="kind_known"),
        UniqueConstraint("record_id", "occasion"),
        Index("ix_desk_reminders_sent_at", "sent_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    record_id: Mapped[int] = mapped_column(BigId, ForeignKey("service_records.id", ondelete="CASCADE"))
    # "follow_up:2030-01-05", "appointment:2030-01-05T09:00:00+00:00", "overdue:follow_up:2030-01-05", ...
    occasion: Mapped[str] = mapped_column(String(OCCASION_MAX))
    kind: Mapped[str] = mapped_column(String(ENUM_MAX))
    # The record's follow-up date or appointment time the occasion was (the other one is null).
    follow_up: Mapped[date | None] = mapped_column(Date)
    appointment_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime)
