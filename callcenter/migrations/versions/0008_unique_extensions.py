"""auth: an extension belongs to one active user at most (a seat is the person logged in on it)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 00:00:00

A database where two active users share an extension cannot take the unique index: the upgrade stops with the
users to change (``callcenter users set NAME --extension N`` or ``--disable``) and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_users_active_extension"
# Disabled users keep their extension (it is history), so only the active ones are unique.
WHERE = "is_active AND extension IS NOT NULL"


class SharedExtensions(CommandError):
    """Two or more active users have one extension: the index cannot be made until an admin separates them."""


def _shared_extensions() -> dict[str, list[str]]:
    users = sa.table(
        "users", sa.column("username", sa.String), sa.column("extension", sa.String), sa.column("is_active", sa.Boolean)
    )
    rows = op.get_bind().execute(
        sa.select(users.c.extension, users.c.username)
        .where(users.c.is_active.is_(True), users.c.extension.is_not(None))
        .order_by(users.c.extension, users.c.username)
    )
    holders: dict[str, list[str]] = {}
    for extension, username in rows:
        holders.setdefault(extension, []).append(username)
    return {extension: names for extension, names in holders.items() if len(names) > 1}


def upgrade() -> None:
    shared = _shared_extensions()
    if shared:
        listing = "; ".join(f"extension {ext}: {', '.join(names)}" for ext, names in shared.items())
        raise SharedExtensions(
            f"active users share an extension ({listing}). A seat is the person logged in on it, so each active "
            "user needs an extension of their own: give the others a new one with `callcenter users set NAME "
            "--extension N` (or `--no-extension`, or `--disable` for someone who left), then start again."
        )
    op.create_index(
        INDEX,
        "users",
        ["extension"],
        unique=True,
        sqlite_where=sa.text(WHERE),
        postgresql_where=sa.text(WHERE),
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="users")
