"""Payloads of the auth API, validated with pydantic; a bad one becomes a 400 naming the field."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from callcenter.auth.permissions import Role

# Generous outer bounds: the service applies the real rules and answers hostile input with a normal refusal.
_TEXT_MAX = 4096
_PASSWORD_MAX = 4096


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoginIn(_Payload):
    username: str = Field(min_length=1, max_length=_TEXT_MAX)
    password: str = Field(min_length=1, max_length=_PASSWORD_MAX)


class UserCreateIn(_Payload):
    username: str = Field(min_length=1, max_length=_TEXT_MAX)
    password: str = Field(min_length=1, max_length=_PASSWORD_MAX)
    display_name: str | None = Field(None, max_length=_TEXT_MAX)
    roles: list[Role] = Field(default_factory=list, max_length=len(Role))
    extension: str | None = Field(None, max_length=32)
    teams: list[str] = Field(default_factory=list, max_length=50)
    lead_of: list[str] = Field(default_factory=list, max_length=50)
    is_active: bool = True


class UserUpdateIn(_Payload):
    is_active: bool | None = None
    roles: list[Role] | None = Field(None, max_length=len(Role))
    # A new extension; "" takes it away, absent (or null) leaves it.
    extension: str | None = Field(None, max_length=32)


class AuditQuery(_Payload):
    actor: str | None = Field(None, max_length=_TEXT_MAX)
    action: str | None = Field(None, max_length=64)
    target: str | None = Field(None, max_length=_TEXT_MAX)
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(100, ge=1, le=500)
    offset: int = Field(0, ge=0, le=10**9)

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # A time without a zone in a query string means UTC, the zone the log is kept in.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value
