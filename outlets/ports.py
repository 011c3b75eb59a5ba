"""What the service outlets offer other packages: their evaluations, summarised per outlet, and which outlet did each
work order (for the quality summary per outlet, which also counts the visits after the outlets' repairs).

Interfaces in plain values: :mod:`outlets.quality_reads` implements them over the outlets' tables, and the
composition root hands them to the package that serves the summary. Nothing here imports more than the standard
library.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OutletInfo:
    id: int
    name: str
    region: str
    retired: bool


@dataclass(frozen=True, slots=True)
class OutletEvaluationCount:
    """How many evaluations one outlet was given in a period, and their average score (1-5)."""

    outlet_id: int
    count: int
    average: float


class OutletQuality(Protocol):
    """The outlets' evaluations and their work orders, read."""

    async def evaluation_counts(self, start: datetime, end: datetime) -> Sequence[OutletEvaluationCount]:
        """Per outlet, the evaluations made in [start, end)."""
        ...

    async def outlets_of_orders(self, order_ids: Iterable[int]) -> Mapping[int, int]:
        """The outlet of each of ``order_ids`` that exists, by order id."""
        ...

    async def outlets(self, outlet_ids: Iterable[int]) -> Mapping[int, OutletInfo]:
        """The outlets of ``outlet_ids`` that exist, retired ones too, by id."""
        ...
