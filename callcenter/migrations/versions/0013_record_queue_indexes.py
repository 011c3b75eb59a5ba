"""crm: the work queue's indexes on service records (the newest of all, of a type; the soonest follow-ups, appointments)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 19:20:00

``GET /api/v1/service-records`` without a filter, by type, or by follow-up date or appointment read every record and
sorted them to give a page.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_service_records_created", "service_records", ["created_at"])
    op.create_index("ix_service_records_type_created", "service_records", ["type", "created_at"])
    op.create_index("ix_service_records_follow_up", "service_records", ["follow_up"])
    op.create_index("ix_service_records_appointment_at", "service_records", ["appointment_at"])


def downgrade() -> None:
    op.drop_index("ix_service_records_appointment_at", "service_records")
    op.drop_index("ix_service_records_follow_up", "service_records")
    op.drop_index("ix_service_records_type_created", "service_records")
    op.drop_index("ix_service_records_created", "service_records")
