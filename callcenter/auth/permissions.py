"""Roles, permissions, and the declarations every HTTP handler carries (``@requires(...)`` or ``@public``).

A route without a declaration is refused: forgetting one must never make a page world-readable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")

# The attribute set on handler functions (and on resources such as a static directory).
ACCESS_ATTRIBUTE = "__callcenter_access__"


class Role(StrEnum):
    AGENT = "agent"
    EXPERT = "expert"
    SUPERVISOR = "supervisor"
    QA = "qa"
    ADMIN = "admin"
    # The service desk behind the phones: service records from intake to archive, outlets, visits, fees.
    BACKOFFICE = "backoffice"


class Permission(StrEnum):
    # people
    USERS_READ = "users.read"
    USERS_MANAGE = "users.manage"
    AUDIT_READ = "audit.read"
    # live calls, seats and queues
    SEATS_OWN = "seats.own"  # log in to one's own seat, pause with a reason
    SEATS_READ = "seats.read"  # see every seat on the live board
    QUEUES_READ = "queues.read"
    CALLS_READ = "calls.read"  # see every live call
    CALLS_TRANSFER_EXPERT = "calls.transfer_expert"
    SPY = "spy"  # listen, whisper, barge
    STATS_READ = "stats.read"
    # recordings
    RECORDINGS_CONTROL = "recordings.control"  # start, stop, pause on-demand recording of one's own call
    RECORDINGS_SEARCH = "recordings.search"
    RECORDINGS_PLAY_OWN = "recordings.play_own"
    RECORDINGS_PLAY_ALL = "recordings.play_all"
    RECORDINGS_ERASE = "recordings.erase"  # erase one customer's recordings on request (leaves a tombstone)
    # CRM
    CUSTOMERS_READ = "customers.read"
    CUSTOMERS_CREATE = "customers.create"  # open a file for an unknown caller
    CUSTOMERS_MAINTAIN = "customers.maintain"  # edit any customer's file (audited)
    SERVICE_RECORDS_WRITE = "service_records.write"
    # the service desk
    DESK_WORK = "desk.work"  # every service record's queue, its lifecycle, follow-ups and callback visits
    OUTLETS_MANAGE = "outlets.manage"  # create, maintain and retire service outlets; dispatch work orders
    FEES_REVIEW = "fees.review"  # approve or reject an outlet's repair and installation fees
    QUALITY_EVALUATE = "quality.evaluate"  # score calls and outlets against the evaluation items
    KNOWLEDGE_READ = "knowledge.read"
    # configuration
    FLOWS_MANAGE = "flows.manage"


P = Permission

_AGENT = frozenset(
    {
        P.SEATS_OWN,
        P.CALLS_TRANSFER_EXPERT,
        P.RECORDINGS_CONTROL,
        P.RECORDINGS_PLAY_OWN,
        P.CUSTOMERS_READ,
        P.CUSTOMERS_CREATE,
        P.SERVICE_RECORDS_WRITE,
        P.KNOWLEDGE_READ,
    }
)

# Experts take calls handed over by agents; they do not hand them on again.
_EXPERT = _AGENT - {P.CALLS_TRANSFER_EXPERT}

_SUPERVISOR = frozenset(
    {
        P.SEATS_OWN,
        P.SEATS_READ,
        P.QUEUES_READ,
        P.CALLS_READ,
        P.SPY,
        P.STATS_READ,
        P.USERS_READ,
        P.CUSTOMERS_READ,
        P.CUSTOMERS_CREATE,
        P.CUSTOMERS_MAINTAIN,
        # Supervisors assign service records and see them through their lifecycle.
        P.SERVICE_RECORDS_WRITE,
        P.DESK_WORK,
        P.QUALITY_EVALUATE,
        P.KNOWLEDGE_READ,
        P.RECORDINGS_SEARCH,
        P.RECORDINGS_PLAY_ALL,
    }
)

_QA = frozenset({P.RECORDINGS_SEARCH, P.RECORDINGS_PLAY_ALL, P.USERS_READ, P.CUSTOMERS_READ, P.QUALITY_EVALUATE})

# Admins manage people and configuration; listening to calls stays with supervisors and QA.
_ADMIN = frozenset(
    {
        P.USERS_READ,
        P.USERS_MANAGE,
        P.AUDIT_READ,
        P.RECORDINGS_ERASE,
        P.FLOWS_MANAGE,
        P.STATS_READ,
        P.CUSTOMERS_READ,
        P.CUSTOMERS_CREATE,
        P.CUSTOMERS_MAINTAIN,
        P.KNOWLEDGE_READ,
    }
)

# The back office works the service desk: records after the call, outlets and their orders, visits and fees.
_BACKOFFICE = frozenset(
    {
        P.DESK_WORK,
        P.OUTLETS_MANAGE,
        P.FEES_REVIEW,
        P.SERVICE_RECORDS_WRITE,
        P.CUSTOMERS_READ,
        P.CUSTOMERS_MAINTAIN,
        P.KNOWLEDGE_READ,
        P.USERS_READ,
        P.STATS_READ,
    }
)

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.AGENT: _AGENT,
    Role.EXPERT: _EXPERT,
    Role.SUPERVISOR: _SUPERVISOR,
    Role.QA: _QA,
    Role.ADMIN: _ADMIN,
    Role.BACKOFFICE: _BACKOFFICE,
}


def permissions_for(roles: Iterable[Role | str]) -> frozenset[Permission]:
    """The union of the roles' permissions; unknown role names grant nothing."""
    granted: set[Permission] = set()
    for role in roles:
        try:
            granted |= ROLE_PERMISSIONS[Role(role)]
        except ValueError:
            continue
    return frozenset(granted)


@dataclass(frozen=True, slots=True)
class AccessRule:
    """What a route demands: nothing at all (public), or a logged-in user holding every listed permission."""

    public: bool
    permissions: frozenset[Permission] = frozenset()


def _declare(target: T, rule: AccessRule) -> T:
    existing = getattr(target, ACCESS_ATTRIBUTE, None)
    if existing is not None and existing != rule:
        raise TypeError(f"{target!r} already declares {existing}")
    setattr(target, ACCESS_ATTRIBUTE, rule)
    return target


def public(target: T) -> T:
    """Marks a handler (or a resource, e.g. a static directory) as reachable without logging in.

    Returns the very same object, so it can sit under ``@routes.get(...)``.
    """
    return _declare(target, AccessRule(public=True))


def requires(*permissions: Permission) -> Callable[[T], T]:
    """Marks a handler as needing a logged-in user holding all ``permissions`` (none: any logged-in user)."""
    for permission in permissions:
        if not isinstance(permission, Permission):
            raise TypeError(f"{permission!r} is not a Permission")
    rule = AccessRule(public=False, permissions=frozenset(permissions))

    def decorate(target: T) -> T:
        return _declare(target, rule)

    return decorate


def required_permissions(handler: Any, method: str | None = None) -> AccessRule | None:
    """The declaration on a handler, or None when it has none.

    For class-based views the method's own declaration wins over the class's.
    """
    if method is not None and isinstance(handler, type) and issubclass(handler, web.View):
        rule = getattr(getattr(handler, method.lower(), None), ACCESS_ATTRIBUTE, None)
        if isinstance(rule, AccessRule):
            return rule
    rule = getattr(handler, ACCESS_ATTRIBUTE, None)
    return rule if isinstance(rule, AccessRule) else None


def route_rule(route: web.AbstractRoute, method: str | None = None) -> AccessRule | None:
    """The declaration for a route: on its handler, else on its resource (static directories)."""
    rule = required_permissions(route.handler, method or route.method)
    if rule is None and route.resource is not None:
        rule = required_permissions(route.resource)
    return rule
