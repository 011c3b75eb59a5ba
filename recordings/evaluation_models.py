"""Tables of the call evaluations: QA's scores of a call against the center's ``call`` evaluation items.

The migration ``0014_call_evaluations`` creates exactly these (a test compares the two on SQLite and PostgreSQL).
The items are the CRM's (``evaluation_items``, another migration branch), so a score names its item by number
only, as ``recordings.service_record_id`` names a service record.

One evaluation per evaluator per call is current (``replaced_at`` null, a partial unique index): saving again
replaces it, and the replaced one stays with its scores, stamped with when it was replaced, so a score that was
changed can still be seen as it was first given.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from callcenter.db import Base, UtcDateTime
from recordings.models import ACTOR_MAX, CHANNEL_ID_MAX, ID_MAX

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

SCORE_MIN = 1
SCORE_MAX = 5
COMMENT_MAX = 4000
_CURRENT = text("replaced_at IS NULL")


class CallEvaluation(Base):
    """One evaluator's evaluation of one call: the overall comment; its scores are CallEvaluationScore rows."""

    __tablename__ = "call_evaluations"
    __table_args__ = (
        Index(
            "ix_call_evaluations_current",
            "call_id",
            "evaluator_user_id",
            unique=True,
            sqlite_where=_CURRENT,
            postgresql_where=_CURRENT,
        ),
        # The per-agent summary: the current evaluations of a period.
        Index("ix_call_evaluations_evaluated", "evaluated_at", "agent_user_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The call: its linkedid, or, for a recording that knows no call, the recording's own id.
    call_id: Mapped[str] = mapped_column(String(CHANNEL_ID_MAX))
    linkedid: Mapped[str | None] = mapped_column(String(CHANNEL_ID_MAX))
    # The recording it was scored from (one of the call's recordings).
    recording_id: Mapped[str] = mapped_column(String(ID_MAX))
    # Who was evaluated: the recording's agent, when the row knows the user.
    agent_user_id: Mapped[int | None] = mapped_column(Integer)
    evaluator_user_id: Mapped[int] = mapped_column(Integer)
    evaluator: Mapped[str] = mapped_column(String(ACTOR_MAX))
    comment: Mapped[str] = mapped_column(Text)
    evaluated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    replaced_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class CallEvaluationScore(Base):
    """An evaluation's score (1-5) on one ``call`` evaluation item."""

    __tablename__ = "call_evaluation_scores"
    __table_args__ = (
        CheckConstraint(f"score BETWEEN {SCORE_MIN} AND {SCORE_MAX}", name="score_range"),
        UniqueConstraint("evaluation_id", "item_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(BigId, ForeignKey("call_evaluations.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(Integer, index=True)
    score: Mapped[int] = mapped_column(Integer)
