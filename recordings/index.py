"""The recordings index: a row by id (refused, and audited, to whoever may not use it), the search, edits of the
description and tags, and the two things every other part does to the index: set a row's status, write an audit
entry.

The lifecycle writes rows, playback and retention read and mark them; all of them go through one RecordingIndex,
so that the access rule (recordings.access) and the audit trail (the actions below) are applied in one place.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select, update

from callcenter.auth.audit import Auditor
from callcenter.auth.services import Principal
from callcenter.config import RecordingsConfig
from callcenter.db import Database
from recordings.access import may_access
from recordings.exceptions import RecordingErased, RecordingForbidden, RecordingNotFound
from recordings.infos import RecordingInfo, SearchPage
from recordings.models import Recording, Status
from recordings.schemas import SearchQuery, clean_description, clean_tags
from recordings.search import decode_cursor, next_cursor, run_search
from recordings.storage import check_recording_id
from recordings.text import search_text_of

# Ids per IN (...) list: far below asyncpg's 32,767 arguments and SQLite's limits.
_IDS_PER_QUERY = 500


class Action:
    """Audit actions written by this package."""

    STARTED = "recording_started"
    PAUSED = "recording_paused"
    RESUMED = "recording_resumed"
    PLAYED = "recording_played"
    REFUSED = "recording_refused"
    EDITED = "recording_edited"
    TAMPERED = "recording_tampered"
    EXPIRED = "recordings_expired"
    ERASED = "recordings_erased"


class NoAudit:
    """For tools that write no audit trail of their own (benchmarks)."""

    async def audit(self, action: str, **_: Any) -> None:
        return None


class RecordingIndex:
    def __init__(self, database: Database, config: RecordingsConfig, *, auditor: Auditor | None = None) -> None:
        self._database = database
        self._config = config
        self._auditor: Auditor = auditor or NoAudit()

    # -- one row -----------------------------------------------------------------------------------------

    async def row_in(self, session: Any, recording_id: str, *, lock: bool = False) -> Recording:
        """The row of ``recording_id`` in ``session`` (RecordingNotFound otherwise); ``lock`` for a change."""
        statement = select(Recording).where(Recording.id == recording_id)
        if lock:
            # Two pauses or edits at once must not both read the old intervals (SQLite serialises writers).
            statement = statement.with_for_update()
        row: Recording | None = await session.scalar(statement)
        if row is None:
            raise RecordingNotFound(recording_id)
        return row

    async def info(self, recording_id: str) -> RecordingInfo:
        async with self._database.session() as session:
            return RecordingInfo.of(await self.row_in(session, recording_id))

    async def get(self, recording_id: str, who: Principal | None = None, *, remote: str | None = None) -> RecordingInfo:
        """One row; with ``who``, only if they may see it (RecordingForbidden, audited, otherwise)."""
        check_recording_id(recording_id)
        info = await self.info(recording_id)
        if who is not None and not may_access(who, info):
            await self.audit(Action.REFUSED, who.username, info.id, outcome="refused", remote=remote)
            raise RecordingForbidden()
        return info

    async def statuses(self, recording_ids: Sequence[str]) -> dict[str, Status]:
        """The status of each of ``recording_ids`` that has a row, asked 500 ids at a time."""
        found: dict[str, Status] = {}
        async with self._database.session() as session:
            for start in range(0, len(recording_ids), _IDS_PER_QUERY):
                chunk = recording_ids[start : start + _IDS_PER_QUERY]
                rows = await session.execute(select(Recording.id, Recording.status).where(Recording.id.in_(chunk)))
                found.update((row.id, Status(row.status)) for row in rows)
        return found

    async def set_status(self, recording_id: str, status: Status, *, only_if: Status | None = None) -> None:
        """Sets a row's status, unless it is erased (or not ``only_if``)."""
        statement = update(Recording).where(Recording.id == recording_id, Recording.status != Status.ERASED.value)
        if only_if is not None:
            statement = statement.where(Recording.status == only_if.value)
        async with self._database.session() as session:
            await session.execute(statement.values(status=status.value))

    # -- searching and describing ------------------------------------------------------------------------

    async def search(self, query: SearchQuery) -> SearchPage:
        query = query.check()
        cursor = decode_cursor(query.cursor, query) if query.cursor is not None else None
        dialect = self._database.dialect
        cap = self._config.search_count_limit
        async with self._database.session() as session:
            total, rows = await run_search(session, query, dialect, cap, cursor)
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        exact = cap <= 0 or total <= cap
        return SearchPage(
            items=[RecordingInfo.of(row) for row in rows],
            total=total if exact else cap,
            total_exact=exact,
            limit=query.limit,
            offset=query.offset,
            next_cursor=next_cursor(query, rows[-1]) if more and rows else None,
        )

    async def edit(
        self,
        recording_id: str,
        who: Principal,
        *,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        remote: str | None = None,
    ) -> RecordingInfo:
        """Changes the description and/or tags (the agent of the call, QA, supervisors); audited."""
        info = await self.get(recording_id, who, remote=remote)
        if info.status == Status.ERASED:
            raise RecordingErased(recording_id)
        new_description = info.description if description is None else clean_description(description)
        new_tags = info.tags if tags is None else clean_tags(list(tags))
        async with self._database.session() as session:
            row = await self.row_in(session, recording_id, lock=True)
            row.description = new_description
            row.tags = json.dumps(new_tags, ensure_ascii=False)
            row.search_text = search_text_of(new_description, new_tags)
            updated = RecordingInfo.of(row)
        changed = {
            "description": description is not None and new_description != info.description,
            "tags": new_tags if tags is not None else None,
        }
        await self.audit(Action.EDITED, who.username, recording_id, remote=remote, details=changed)
        return updated

    # -- the audit trail ---------------------------------------------------------------------------------

    async def audit(
        self,
        action: str,
        actor: str | None,
        target: str | None,
        *,
        outcome: str = "success",
        remote: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        await self._auditor.audit(action, actor=actor, target=target, outcome=outcome, remote=remote, details=details)
