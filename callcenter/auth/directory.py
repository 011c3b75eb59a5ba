"""Who the users are and which teams they are in, read from the auth tables for the rest of the engine.

The auth tables (:mod:`callcenter.auth.models`) are the core's own; a feature package that needs a user's name,
the user behind an extension or the teams someone leads asks a :class:`UserDirectory` and gets plain values back
(:class:`UserEntry`, team names), never the rows. Every value is bound; a lookup of something that does not exist
is an empty answer, not an error. A database that cannot be reached raises :class:`callcenter.db.DatabaseError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from callcenter.auth.models import Team, TeamMember, User
from callcenter.auth.services import canonical_username
from callcenter.db import Database


@dataclass(frozen=True, slots=True)
class UserEntry:
    """One user as others may see them: no password, no roles (permissions are the auth service's business)."""

    id: int
    username: str
    display_name: str
    extension: str | None
    is_active: bool


_COLUMNS = (User.id, User.username, User.display_name, User.extension, User.is_active)


def _entry(user_id: int, username: str, display_name: str, extension: str | None, is_active: bool) -> UserEntry:
    return UserEntry(user_id, username, display_name, extension, bool(is_active))


class UserDirectory:
    """Reads of users and teams over the auth tables, one short session each."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def users(self, ids: Iterable[int]) -> dict[int, UserEntry]:
        """The users of ``ids`` that exist, by id."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        async with self._database.session() as session:
            rows = (await session.execute(select(*_COLUMNS).where(User.id.in_(wanted)))).all()
        return {row[0]: _entry(*row) for row in rows}

    async def extension_owners(self) -> dict[str, int]:
        """Each extension an active user has, with that user's id (an extension is one active user's at most:
        migration 0008's unique index)."""
        async with self._database.session() as session:
            rows = (
                await session.execute(
                    select(User.extension, User.id).where(User.is_active, User.extension.is_not(None))
                )
            ).all()
        return {extension: user_id for extension, user_id in rows if extension is not None}

    async def by_username(self, username: str) -> UserEntry | None:
        """The user of that name, compared as usernames are stored (NFKC, case-folded)."""
        async with self._database.session() as session:
            row = (
                await session.execute(select(*_COLUMNS).where(User.username == canonical_username(username)))
            ).first()
        return None if row is None else _entry(*row)

    async def teams_of(self, ids: Iterable[int]) -> dict[int, tuple[str, ...]]:
        """The names of the teams each user is in (as a member or as a lead), sorted by code point; users in no team
        are left out."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        query = (
            select(TeamMember.user_id, Team.name)
            .join(Team, Team.id == TeamMember.team_id)
            .where(TeamMember.user_id.in_(wanted))
        )
        teams: dict[int, list[str]] = {}
        async with self._database.session() as session:
            for user_id, name in await session.execute(query):
                teams.setdefault(user_id, []).append(name)
        return {user_id: tuple(sorted(names)) for user_id, names in teams.items()}

    async def teams_led_by(self, user_id: int) -> tuple[str, ...]:
        """The names of the teams the user leads (``team_members.is_lead``), sorted by code point."""
        query = (
            select(Team.name)
            .join(TeamMember, TeamMember.team_id == Team.id)
            .where(TeamMember.user_id == user_id, TeamMember.is_lead.is_(True))
        )
        async with self._database.session() as session:
            names = list(await session.scalars(query))
        return tuple(sorted(names))
