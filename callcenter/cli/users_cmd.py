"""`callcenter users add|list` (filled in by the auth work)."""

from __future__ import annotations

import click


@click.group()
def users() -> None:
    """Users of the engine's pages and API."""
