"""seats, login and pause intervals, call records, call progress and expert handoffs

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-23 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("calls",)
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agent_seats",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("interface", sa.String(80), nullable=False),
        sa.Column("extension", sa.String(32), nullable=False),
        sa.Column("queues", sa.Text(), nullable=False),
        sa.Column("logged_in_at", _time(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("pause_reason", sa.String(32), nullable=True),
        sa.Column("paused_at", _time(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_agent_seats_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name="pk_agent_seats"),
        sa.UniqueConstraint("interface", name="uq_agent_seats_interface"),
    )
    op.create_table(
        "agent_intervals",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(150), nullable=False),
        sa.Column("interface", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("queues", sa.Text(), nullable=True),
        sa.Column("started_at", _time(), nullable=False),
        sa.Column("ended_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_agent_intervals"),
    )
    op.create_index("ix_agent_intervals_user_started", "agent_intervals", ["user_id", "started_at"])
    op.create_index("ix_agent_intervals_started", "agent_intervals", ["started_at"])
    op.create_table(
        "call_records",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("linkedid", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("caller_number", sa.Text(), nullable=False),
        sa.Column("caller_name", sa.Text(), nullable=False),
        sa.Column("caller_tail", sa.String(16), nullable=False),
        sa.Column("did", sa.String(32), nullable=False),
        sa.Column("started_at", _time(), nullable=False),
        sa.Column("ended_at", _time(), nullable=False),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("ivr_flow", sa.String(64), nullable=True),
        sa.Column("ivr_outcome", sa.String(24), nullable=True),
        sa.Column("ivr_choice", sa.String(64), nullable=True),
        sa.Column("ivr_path", sa.Text(), nullable=False),
        sa.Column("queues", sa.Text(), nullable=False),
        sa.Column("segments", sa.Text(), nullable=False),
        sa.Column("wait_time", sa.Float(), nullable=True),
        sa.Column("talk_time", sa.Float(), nullable=True),
        sa.Column("agent", sa.String(80), nullable=True),
        sa.Column("expert", sa.String(80), nullable=True),
        sa.Column("handoff_notes", sa.Text(), nullable=True),
        sa.Column("recording_ids", sa.Text(), nullable=False),
        sa.Column("service_record_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_call_records"),
        sa.UniqueConstraint("linkedid", name="uq_call_records_linkedid"),
    )
    op.create_index("ix_call_records_started_at", "call_records", ["started_at"])
    op.create_index("ix_call_records_caller_number", "call_records", ["caller_number"])
    op.create_index("ix_call_records_caller_tail", "call_records", ["caller_tail", "started_at"])
    op.create_index("ix_call_records_agent", "call_records", ["agent"])
    op.create_table(
        "call_progress",
        sa.Column("linkedid", sa.String(64), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("linkedid", name="pk_call_progress"),
    )
    op.create_table(
        "expert_handoffs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("linkedid", sa.String(64), nullable=False),
        sa.Column("from_user", sa.String(150), nullable=False),
        sa.Column("from_interface", sa.String(80), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("requested_at", _time(), nullable=False),
        sa.Column("expert", sa.String(80), nullable=True),
        sa.Column("answered_at", _time(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("voicemail_path", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_expert_handoffs"),
    )
    op.create_index("ix_expert_handoffs_linkedid", "expert_handoffs", ["linkedid"])


def downgrade() -> None:
    op.drop_table("expert_handoffs")
    op.drop_table("call_progress")
    op.drop_table("call_records")
    op.drop_table("agent_intervals")
    op.drop_table("agent_seats")
