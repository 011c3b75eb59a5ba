"""auth: the back-office role (the service desk behind the phones)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 00:00:00

The roles a user may hold are checked by the database; the check is written again with ``backoffice`` in it.
SQLite cannot change a check in place, so the table is copied (batch mode); its rows are kept as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = ("agent", "expert", "supervisor", "qa", "admin")
_AFTER = (*_BEFORE, "backoffice")
_CHECK = "ck_user_roles_role_known"


def _roles(names: Sequence[str]) -> str:
    return "role IN (" + ", ".join(f"'{name}'" for name in names) + ")"


def _recheck(names: Sequence[str]) -> None:
    with op.batch_alter_table("user_roles", recreate="always") as table:
        table.drop_constraint(op.f(_CHECK), type_="check")
        table.create_check_constraint("role_known", _roles(names))


def upgrade() -> None:
    _recheck(_AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM user_roles WHERE role = 'backoffice'")
    _recheck(_BEFORE)
