"""`callcenter db init|migrate`: create the database and keep its schema at the newest revision."""

from __future__ import annotations

import asyncio

import click
from alembic.util import CommandError

from callcenter.cli.common import get_config
from callcenter.db import DatabaseError, mask_url, migrate


@click.group()
def db() -> None:
    """The CRM database: create it, migrate it, seed it."""


def _upgrade(url: str) -> None:
    click.echo(f"database: {mask_url(url)}")
    try:
        asyncio.run(migrate(url))
    except (DatabaseError, CommandError) as exc:
        raise click.ClickException(f"migration failed: {exc}") from exc
    click.echo("schema is at the newest revision")


@db.command("init")
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the data directory and the database, with every table at the newest revision."""
    config = get_config(ctx)
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"cannot create the data directory {config.data_dir}: {exc.strerror}") from exc
    _upgrade(config.database_url)


@db.command("migrate")
@click.pass_context
def migrate_command(ctx: click.Context) -> None:
    """Upgrade the database schema to the newest revision (safe to run again)."""
    _upgrade(get_config(ctx).database_url)
