"""`callcenter db init|migrate|seed` (filled in by the database work)."""

from __future__ import annotations

import click


@click.group()
def db() -> None:
    """The CRM database: create it, migrate it, seed it."""
