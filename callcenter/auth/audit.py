"""What a feature package needs of the audit log: :meth:`callcenter.auth.services.AuthService.audit`, as a type.

The CRM audits customer changes and the recordings audit every playback and erasure through it; they are given
the engine's ``AuthService`` (which has this method) by the composition root.
"""

from __future__ import annotations

from typing import Any, Protocol


class Auditor(Protocol):
    async def audit(
        self,
        action: str,
        *,
        actor: str | None = None,
        target: str | None = None,
        outcome: str = "success",
        remote: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None: ...
