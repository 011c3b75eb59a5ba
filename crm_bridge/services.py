"""The CRM, as the engine holds it: one object composing its parts, each in its own module.

- ``customers`` (crm_bridge.customers): customer files by number, name or id; creating and changing customers with
  their numbers and contacts; the owners and best tier of a number. How a file is read: crm_bridge.files.
- ``records`` (crm_bridge.records): service records, written once per idempotency key, their lifecycle and history.
- ``knowledge`` (crm_bridge.knowledge): products by the code a caller types, and the knowledge base search.

What they return is in crm_bridge.infos, the search text rules in crm_bridge.text. CrmService only builds the parts
with what they share (the database, the phone rules, the audit log, a clock that must give aware times) and holds
them: callers name the part they use (``crm.records.create(...)``), so there is no second name for any method.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from callcenter.auth.audit import Auditor
from callcenter.db import Database, utcnow
from crm_bridge.customers import Customers
from crm_bridge.knowledge import Knowledge
from crm_bridge.phones import DEFAULT_RULES, PhoneRules
from crm_bridge.records import ServiceRecords

Clock = Callable[[], datetime]


def _aware(clock: Clock) -> Clock:
    """``clock``, checked at every reading: the CRM stores aware times only."""

    def now() -> datetime:
        value = clock()
        if value.tzinfo is None:
            raise ValueError("the clock must return aware datetimes")
        return value

    return now


class CrmService:
    def __init__(
        self,
        database: Database,
        *,
        rules: PhoneRules = DEFAULT_RULES,
        audit: Auditor | None = None,
        clock: Clock = utcnow,
    ) -> None:
        now = _aware(clock)
        self.customers = Customers(database, rules=rules, audit=audit, clock=now)
        self.records = ServiceRecords(database, self.customers, clock=now)
        self.knowledge = Knowledge(database, clock=now)
