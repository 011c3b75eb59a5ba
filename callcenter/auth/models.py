"""Tables of users, roles, teams, sessions, login throttling and the audit log.

The migrations ``0001_users_audit``, ``0007_login_sources`` and ``0008_unique_extensions`` create exactly these; a
test compares the two on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from callcenter.auth.permissions import Role
from callcenter.db import Base, UtcDateTime

USERNAME_MAX = 150
DISPLAY_NAME_MAX = 200
EXTENSION_MAX = 16
TEAM_NAME_MAX = 64
ROLE_MAX = 16
SHA256_HEX = 64
# An IPv4 address, an IPv6 /64 or the first 64 characters of another peer name (callcenter.auth.limits.address_key).
SOURCE_MAX = 64

# SQLite only auto-increments an INTEGER PRIMARY KEY, so the big audit id is a plain INTEGER there.
AuditId = BigInteger().with_variant(Integer(), "sqlite")

ROLE_CHECK = "role IN (" + ", ".join(f"'{role.value}'" for role in Role) + ")"


# An extension is one active user's phone: a seat is the person logged in on it (disabled users keep theirs).
ACTIVE_EXTENSION = "is_active AND extension IS NOT NULL"


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        Index(
            "uq_users_active_extension",
            "extension",
            unique=True,
            sqlite_where=text(ACTIVE_EXTENSION),
            postgresql_where=text(ACTIVE_EXTENSION),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stored in canonical form (NFKC, case-folded) so that comparisons are case-insensitive on every backend.
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), unique=True)
    display_name: Mapped[str] = mapped_column(String(DISPLAY_NAME_MAX))
    password_hash: Mapped[str] = mapped_column(String(255))
    extension: Mapped[str | None] = mapped_column(String(EXTENSION_MAX))
    is_active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class UserRole(Base):
    __tablename__ = "user_roles"
    __table_args__ = (CheckConstraint(ROLE_CHECK, name="role_known"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(ROLE_MAX), primary_key=True)


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(TEAM_NAME_MAX), unique=True)


class TeamMember(Base):
    __tablename__ = "team_members"

    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    is_lead: Mapped[bool] = mapped_column(Boolean)


class AuthToken(Base):
    """A login session. Only the SHA-256 of the bearer token is kept: a leaked table grants no access."""

    __tablename__ = "auth_tokens"

    token_sha256: Mapped[str] = mapped_column(String(SHA256_HEX), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class LoginThrottle(Base):
    """Consecutive failed logins per username and client address, and per username from every address together;
    for usernames known or not (so that refusals do not reveal which exist)."""

    __tablename__ = "login_throttle"

    # SHA-256 of the canonical username (all addresses), or of the username and the address together: bounded
    # length whatever a client sends. See callcenter.auth.services.throttle_keys.
    username_key: Mapped[str] = mapped_column(String(SHA256_HEX), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime] = mapped_column(UtcDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)


class LoginSource(Base):
    """An address (IPv4) or network (IPv6 /64) a user logged in from with the right password: from there a lockout
    never refuses the right password. The migration ``0007`` creates it; only the most recent few are kept."""

    __tablename__ = "login_sources"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(SOURCE_MAX), primary_key=True)
    last_login_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(AuditId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str | None] = mapped_column(String(USERNAME_MAX), index=True)
    action: Mapped[str] = mapped_column(String(32), index=True)
    target: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(16))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    # JSON text; a TEXT column behaves the same on both backends.
    details: Mapped[str | None] = mapped_column(Text)
