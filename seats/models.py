"""Seat tables: who is logged in where now (so a restarted engine knows), and every login and pause interval."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callcenter.db import Base, UtcDateTime

IntervalId = BigInteger().with_variant(Integer(), "sqlite")


class AgentSeat(Base):
    """An agent logged in to a seat. The row exists from login to logout; Asterisk keeps the queue membership
    (persistentmembers) and the engine keeps who the member is and since when."""

    __tablename__ = "agent_seats"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    interface: Mapped[str] = mapped_column(String(80), unique=True)
    extension: Mapped[str] = mapped_column(String(32))
    # JSON list of {"queue": ..., "penalty": ...}
    queues: Mapped[str] = mapped_column(Text)
    logged_in_at: Mapped[datetime] = mapped_column(UtcDateTime)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    pause_reason: Mapped[str | None] = mapped_column(String(32))
    paused_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AgentInterval(Base):
    """A login or a pause of one agent, closed when it ends (open ones have no ``ended_at``)."""

    __tablename__ = "agent_intervals"
    __table_args__ = (
        Index("ix_agent_intervals_user_started", "user_id", "started_at"),
        Index("ix_agent_intervals_started", "started_at"),
    )

    id: Mapped[int] = mapped_column(IntervalId, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(150))
    interface: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(16))  # login | pause
    reason: Mapped[str | None] = mapped_column(String(32))
    queues: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
