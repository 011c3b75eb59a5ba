"""Errors of the auth API; each is an ApiError, so error_middleware renders it with its status and id."""

from __future__ import annotations

import math
from typing import Any

from callcenter.web.errors import ApiError, Conflict, InvalidInput, NotFound, TooManyAttempts, Unauthenticated


class InvalidCredentials(Unauthenticated):
    error_id = "invalid_credentials"

    def __init__(self) -> None:
        # One message for unknown users, wrong passwords and disabled accounts: no user enumeration.
        super().__init__("invalid username or password")


class NotLoggedIn(Unauthenticated):
    def __init__(self, message: str = "log in first") -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="callcenter"'})


class LoginThrottled(TooManyAttempts):
    def __init__(self, retry_after: float, message: str = "too many failed logins; wait before trying again") -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            message,
            {"retry_after": self.retry_after},
            headers={"Retry-After": str(self.retry_after)},
        )


class InvalidUser(InvalidInput):
    def __init__(self, field: str, message: str) -> None:
        details: dict[str, Any] = {"fields": {field: message}}
        super().__init__(f"{field}: {message}", details)


class UserExists(Conflict):
    error_id = "user_exists"

    def __init__(self) -> None:
        super().__init__("a user with this username already exists")


class ExtensionTaken(Conflict):
    """An extension is one active user's phone: a seat is the person logged in on it."""

    error_id = "extension_taken"

    def __init__(self, extension: str, holder: str | None) -> None:
        who = f" ({holder})" if holder else ""
        super().__init__(
            f"extension {extension} belongs to another active user{who}; give them another one or disable them first",
            {"fields": {"extension": extension}, "holder": holder},
        )


class UnknownUser(NotFound):
    error_id = "user_not_found"

    def __init__(self) -> None:
        super().__init__("no user with this username")


class RouteAccessUndeclared(ApiError):
    """A route was added without ``@requires`` or ``@public``: refused rather than left open."""

    status = 500
    error_id = "route_access_undeclared"

    def __init__(self) -> None:
        super().__init__("this route declares no access rule; the server log names it")
