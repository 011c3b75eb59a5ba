"""What the CRM offers other packages to read: how many service records were created, by type and status.

Read interfaces only, in plain values: :mod:`crm_bridge.reads` implements them over the CRM's tables, and the
composition root hands them to the packages that need them (the supervisor's business-volume statistics).
Nothing here imports more than the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RecordCount:
    """How many service records of one type are in one status now."""

    type: str  # complaint, repair_booking, ... (the CRM's record types)
    status: str  # new, assigned, resolved, ... (the CRM's record statuses)
    count: int


class BusinessVolume(Protocol):
    """The CRM's business volume."""

    async def record_counts(self, start: datetime, end: datetime) -> Sequence[RecordCount]:
        """The service records created in [start, end), counted by type and current status, by type then status."""
        ...
