"""The quality summary per service outlet (服务质量考评 of the outlets): the outlets' evaluations (a score 1-5 each,
given by the desk or QA) and what the customers said in the callback visits after the outlets' repairs (their
satisfaction 1-5 and their scores on the visit evaluation items), for a period.

Served beside the per-agent summary of the call evaluations; every figure comes through the owners' ports: the
outlets' (:class:`outlets.ports.OutletQuality`) and the CRM's (:class:`crm_bridge.ports.RepairVisits`, a visit is
tied to its outlet through its work order, and :class:`crm_bridge.ports.EvaluationItemCatalog`).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from crm_bridge.ports import EvaluationItemCatalog, RepairVisits
from outlets.ports import OutletQuality

VISIT = "visit"


def _mean(values: list[int]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


class OutletQualitySummary:
    def __init__(self, outlets: OutletQuality, visits: RepairVisits, items: EvaluationItemCatalog) -> None:
        self._outlets = outlets
        self._visits = visits
        self._items = items

    async def outlets(self, start: datetime, end: datetime) -> dict[str, Any]:
        """Per outlet with evaluations or repair visits in [start, end): the evaluations' number and average, the
        visits' number, how many reached the customer, the average satisfaction and the average per visit item."""
        evaluations = {one.outlet_id: one for one in await self._outlets.evaluation_counts(start, end)}
        results = await self._visits.repair_visit_results(start, end)
        order_outlets = await self._outlets.outlets_of_orders(result.order_id for result in results)
        visits: dict[int, int] = defaultdict(int)
        satisfaction: dict[int, list[int]] = defaultdict(list)
        scores: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        for result in results:
            outlet = order_outlets.get(result.order_id)
            if outlet is None:
                continue
            visits[outlet] += 1
            if result.satisfaction is not None:
                satisfaction[outlet].append(result.satisfaction)
            for item_id, score in result.scores:
                scores[outlet][item_id].append(score)
        known = await self._outlets.outlets(set(evaluations) | set(visits))
        items = await self._items.evaluation_items(VISIT)
        scored = {item_id for per_item in scores.values() for item_id in per_item}
        shown = [item for item in items if item.active or item.id in scored]
        rows = []
        for outlet_id in set(evaluations) | set(visits):
            info = known.get(outlet_id)
            evaluated = evaluations.get(outlet_id)
            rows.append(
                {
                    "outlet_id": outlet_id,
                    "name": info.name if info else None,
                    "region": info.region if info else None,
                    "retired": info.retired if info else None,
                    "evaluations": evaluated.count if evaluated else 0,
                    "evaluation_average": round(evaluated.average, 2) if evaluated else None,
                    "visits": visits.get(outlet_id, 0),
                    "satisfied_visits": len(satisfaction.get(outlet_id, [])),
                    "satisfaction_average": _mean(satisfaction.get(outlet_id, [])),
                    "items": [
                        {"item_id": item.id, "count": len(given), "average": _mean(given)}
                        for item in shown
                        if (given := scores.get(outlet_id, {}).get(item.id))
                    ],
                }
            )
        # Sorted here: the same order on every backend, whatever its collation.
        rows.sort(key=lambda row: (row["name"] or "", row["outlet_id"]))
        return {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "items": [
                {"id": item.id, "name": item.name, "active": item.active, "position": item.position} for item in shown
            ],
            "outlets": rows,
        }

    @staticmethod
    def outlets_csv(summary: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
        """The summary as CSV columns and rows: an outlet per row, a column per visit item."""
        fixed = [
            "outlet_id",
            "name",
            "region",
            "retired",
            "evaluations",
            "evaluation_average",
            "visits",
            "satisfied_visits",
            "satisfaction_average",
        ]
        items = summary["items"]
        columns = fixed + [f"item {item['id']}: {item['name']}" for item in items]
        rows = []
        for outlet in summary["outlets"]:
            row = {name: outlet[name] for name in fixed}
            averages = {one["item_id"]: one["average"] for one in outlet["items"]}
            for item, column in zip(items, columns[len(fixed) :], strict=True):
                row[column] = averages.get(item["id"])
            rows.append(row)
        return columns, rows
