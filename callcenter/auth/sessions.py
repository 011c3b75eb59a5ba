"""Notices of sessions that end and users that change, for whoever holds something open on a session.

A session token is checked when a request comes in; a websocket, though, stays open for hours after that one check.
So the auth service tells its watchers (the websocket hub) the moment a session ends (logout) or a user changes
(disabled, roles changed), and the watcher closes or narrows what it holds. Expiry needs no notice: the expiry time
is in the :class:`~callcenter.auth.services.Principal`, and the watcher sets a timer for it.

Notices are in-process and synchronous: a watcher's handler must not block (the hub only schedules closes). A
failing watcher is logged and does not stop the others nor the change that caused the notice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Protocol

from callcenter.auth.permissions import Role

log = logging.getLogger("callcenter.auth")


class SessionEnd(StrEnum):
    """Why a session, or what it gave access to, ended; the reason a websocket is closed with."""

    LOGGED_OUT = "logged out"
    EXPIRED = "session expired"
    USER_DISABLED = "user disabled"
    # Found over when the sessions were checked again (revoked or its user disabled by another process).
    ENDED = "session ended"
    PERMISSIONS_CHANGED = "permissions changed; reconnect"


class SessionWatcher(Protocol):
    def session_ended(self, token_key: str, reason: SessionEnd) -> None:
        """The session of this token (its key: :func:`callcenter.auth.services.session_key`) is over."""

    def user_changed(self, user_id: int, roles: frozenset[Role] | None) -> None:
        """The user's roles are now ``roles``; None: the user is disabled (every session of theirs is over)."""


class SessionNotices:
    """The auth service's list of watchers, and the fan-out of each notice to them."""

    def __init__(self) -> None:
        self._watchers: list[SessionWatcher] = []

    def __len__(self) -> int:
        return len(self._watchers)

    def watch(self, watcher: SessionWatcher) -> Callable[[], None]:
        """Adds a watcher; returns the function that removes it again."""
        self._watchers.append(watcher)

        def unwatch() -> None:
            if watcher in self._watchers:
                self._watchers.remove(watcher)

        return unwatch

    def session_ended(self, token_key: str, reason: SessionEnd) -> None:
        for watcher in list(self._watchers):
            try:
                watcher.session_ended(token_key, reason)
            except Exception:
                log.exception("a session watcher failed on the end of a session")

    def user_changed(self, user_id: int, roles: frozenset[Role] | None) -> None:
        for watcher in list(self._watchers):
            try:
                watcher.user_changed(user_id, roles)
            except Exception:
                log.exception("a session watcher failed on a change of user %s", user_id)
