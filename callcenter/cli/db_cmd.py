"""`callcenter db init|migrate|seed`: create the database, keep its schema at the newest revision, fill it."""

from __future__ import annotations

import asyncio

import click
from alembic.util import CommandError

from callcenter.cli.common import get_config
from callcenter.db import Database, DatabaseError, mask_url, migrate


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


@db.command("seed")
@click.option("--customers", type=click.IntRange(0, 10_000_000), required=True, help="How many customers to add.")
@click.option(
    "--products", type=click.IntRange(3, 8000), default=200, show_default=True, help="Products in the catalog."
)
@click.option("--seed", "seed_value", type=int, default=1, show_default=True, help="Same seed, same data.")
@click.option("--force", is_flag=True, help="Add customers even when the database already has some.")
@click.pass_context
def seed_command(ctx: click.Context, customers: int, products: int, seed_value: int, force: bool) -> None:
    """Fill the CRM with realistic demo data: customers, numbers, contacts, service records, products, articles.

    Migrates the schema first. Refuses a database that already has customers unless --force.
    """
    from callcenter_devtools.seed import SeedOptions, seed
    from crm_bridge.exceptions import SeedRefused

    url = get_config(ctx).database_url
    _upgrade(url)
    options = SeedOptions(customers=customers, products=products, seed=seed_value, force=force)

    async def run() -> str:
        database = Database(url)
        await database.open()
        try:
            report = await seed(database, options, progress=lambda line: click.echo(f"  {line}"))
        finally:
            await database.close()
        return report.summary()

    try:
        summary = asyncio.run(run())
    except SeedRefused as exc:
        raise click.ClickException(str(exc)) from exc
    except DatabaseError as exc:
        raise click.ClickException(f"seeding failed: {exc}") from exc
    click.echo(f"seeded {summary}")
