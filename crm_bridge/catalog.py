"""The CRM as the voice menu sees it: ivr_flows.ports.ProductCatalog and CustomerDirectory over CrmService.

The composition root hands these to the flows; the flows never import the CRM. Codes and caller numbers are
caller input: the service binds them as parameters, and refuses anything that cannot be a code or a number
before any query (a code carrying SQL, or 200 digits, is simply not found).
"""

from __future__ import annotations

from crm_bridge.services import CrmService
from ivr_flows.ports import Product


class CrmProductCatalog:
    def __init__(self, service: CrmService) -> None:
        self._service = service

    async def find(self, code: str) -> Product | None:
        found = await self._service.product(code)
        if found is None:
            return None
        return Product(found.code, found.name, found.price, found.availability, dict(found.spoken))


class CrmCustomerDirectory:
    def __init__(self, service: CrmService) -> None:
        self._service = service

    async def tier(self, caller_number: str) -> str | None:
        """The best tier among the customers owning the number: a number shared by a VIP queues as the VIP."""
        return await self._service.best_tier(caller_number)
