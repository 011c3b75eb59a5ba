"""recordings: indexes on PostgreSQL's word table (the sort orders, for words with many matches; the agents)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = {
    "ix_fts_recordings_started": "started_at, pk",
    "ix_fts_recordings_duration": "duration, pk",
    # One agent's words: GIN's matches and the agent's rows meet in a BitmapAnd instead of visiting every match.
    "ix_fts_recordings_agent_started": "agent_interface, started_at, pk",
    "ix_fts_recordings_agent_user_started": "agent_user_id, started_at, pk",
}


def upgrade() -> None:
    # SQLite's FTS5 tables have no such columns: its searches walk the recordings' own indexes.
    if op.get_bind().dialect.name != "postgresql":
        return
    # 0004 left these out because the planner, which misjudges prefix tsqueries, walked the whole table in time
    # order for rare words. recordings/search.py now counts the matches first and walks an order only when
    # they are many (a page's rows are then met soon); a few matches are fetched through GIN behind a fence.
    for name, columns in _INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON fts_recordings ({columns})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in _INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
