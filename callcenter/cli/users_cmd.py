"""`callcenter users add|set|list`: manage who may log in to the pages and the API."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import click

from callcenter.auth.permissions import Role
from callcenter.auth.services import AuthService, UserInfo
from callcenter.cli.common import get_config
from callcenter.config import Config
from callcenter.db import Database, DatabaseError
from callcenter.web.errors import ApiError


@click.group()
def users() -> None:
    """Users of the engine's pages and API."""


@asynccontextmanager
async def _service(config: Config) -> AsyncIterator[AuthService]:
    database = Database(config.database_url, echo=config.database.echo)
    await database.open()
    try:
        yield AuthService(database, config.auth)
    finally:
        await database.close()


def _fail(exc: Exception) -> click.ClickException:
    if isinstance(exc, ApiError):
        return click.ClickException(exc.message)
    return click.ClickException(f"{exc}; has `callcenter db init` been run?")


@users.command("add")
@click.argument("username")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice([role.value for role in Role]),
    help="A role of the user; repeat for several.",
)
@click.option("--name", "display_name", default=None, help="Name shown on screens (default: the username).")
@click.option("--extension", default=None, help="The user's phone extension, e.g. 1001.")
@click.option("--team", "teams", multiple=True, help="A team the user belongs to; repeat for several.")
@click.option("--lead", "lead_of", multiple=True, help="A team the user leads; repeat for several.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.pass_context
def add(
    ctx: click.Context,
    username: str,
    roles: Sequence[str],
    display_name: str | None,
    extension: str | None,
    teams: Sequence[str],
    lead_of: Sequence[str],
    password_stdin: bool,
) -> None:
    """Add a user who can log in with USERNAME (case-insensitive) and a password."""
    config = get_config(ctx)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = str(click.prompt("Password", hide_input=True, confirmation_prompt=True))

    async def work() -> UserInfo:
        async with _service(config) as service:
            return await service.create_user(
                username,
                password,
                display_name=display_name,
                roles=roles,
                extension=extension,
                teams=teams,
                lead_of=lead_of,
                remote="cli",
            )

    try:
        user = asyncio.run(work())
    except (ApiError, DatabaseError) as exc:
        raise _fail(exc) from exc
    roles_text = ", ".join(user.roles) or "no roles"
    click.echo(f"added user {user.username} (id {user.id}, {roles_text})")


@users.command("set")
@click.argument("username")
@click.option("--extension", default=None, help="Give the user this phone extension (not another active user's).")
@click.option("--no-extension", is_flag=True, help="Take the user's extension away.")
@click.option("--enable/--disable", "active", default=None, help="Let the user log in again, or stop them.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice([role.value for role in Role]),
    help="Replace the user's roles with these; repeat for several.",
)
@click.pass_context
def set_command(
    ctx: click.Context,
    username: str,
    extension: str | None,
    no_extension: bool,
    active: bool | None,
    roles: Sequence[str],
) -> None:
    """Change USERNAME's extension, roles, or whether they may log in (audited, like the API's PATCH)."""
    if extension is not None and no_extension:
        raise click.UsageError("--extension and --no-extension exclude each other")
    if extension is None and not no_extension and active is None and not roles:
        raise click.UsageError("say what to change: --extension, --no-extension, --enable, --disable or --role")
    config = get_config(ctx)

    async def work() -> UserInfo:
        async with _service(config) as service:
            return await service.update_user(
                username,
                is_active=active,
                roles=roles or None,
                extension="" if no_extension else extension,
                remote="cli",
            )

    try:
        user = asyncio.run(work())
    except (ApiError, DatabaseError) as exc:
        raise _fail(exc) from exc
    state = "active" if user.is_active else "disabled"
    click.echo(f"{user.username}: extension {user.extension or '-'}, {', '.join(user.roles) or 'no roles'}, {state}")


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


@users.command("list")
@click.pass_context
def list_command(ctx: click.Context) -> None:
    """List every user with roles, teams and extension."""
    config = get_config(ctx)

    async def work() -> list[UserInfo]:
        async with _service(config) as service:
            return await service.list_users()

    try:
        found = asyncio.run(work())
    except (ApiError, DatabaseError) as exc:
        raise _fail(exc) from exc
    if not found:
        click.echo("no users yet; add one with `callcenter users add`")
        return
    rows = [["USERNAME", "NAME", "EXTENSION", "ROLES", "TEAMS", "ACTIVE"]]
    for user in found:
        teams = [f"{team}*" if team in user.lead_of else team for team in user.teams]
        rows.append(
            [
                user.username,
                user.display_name,
                user.extension or "-",
                ",".join(user.roles) or "-",
                ",".join(teams) or "-",
                "yes" if user.is_active else "no",
            ]
        )
    click.echo(_table(rows))
