"""`callcenter recordings search|check`: QA search from the shell, and the index checked against the files."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from callcenter.cli.common import get_config
from callcenter.config import Config
from callcenter.db import Database, DatabaseError
from callcenter.web.errors import ApiError, validation_details
from recordings.index import NoAudit
from recordings.infos import CheckReport, SearchPage
from recordings.models import Direction, Kind, Status
from recordings.plugin import build_recordings
from recordings.schemas import SearchQuery
from recordings.services import RecordingService

T = TypeVar("T")


@click.group()
def recordings() -> None:
    """The recordings index: search it, check it against the files."""


@asynccontextmanager
async def _service(config: Config) -> AsyncIterator[RecordingService]:
    database = Database(config.database_url, echo=config.database.echo)
    await database.open()
    try:
        # The shell has no logged-in user: searching and checking write no audit entries.
        yield build_recordings(config, database, NoAudit())
    finally:
        await database.close()


def _run(config: Config, work: Callable[[RecordingService], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _service(config) as service:
            return await work(service)

    try:
        return asyncio.run(main())
    except ApiError as exc:
        fields = exc.details.get("fields")
        if fields:
            raise _usage(fields) from exc
        raise click.ClickException(exc.message) from exc
    except DatabaseError as exc:
        raise click.ClickException(f"{exc}; has `callcenter db init` been run?") from exc


_OPTION_NAMES = {"q": "--text"}


def _usage(fields: dict[str, str]) -> click.UsageError:
    """A usage error naming the command-line options (not the API's field names) at fault."""
    named = (f"{_OPTION_NAMES.get(name, '--' + name.replace('_', '-'))}: {msg}" for name, msg in fields.items())
    return click.UsageError("; ".join(named))


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _print_page(page: SearchPage) -> None:
    header = (
        f"{'id':<36}  {'kind':<9}  {'started (UTC)':<19}  {'dur s':>7}  {'dir':<8}  {'agent':<14}  "
        f"{'caller':<16}  {'called':<16}  description"
    )
    click.echo(header)
    for item in page.items:
        duration = f"{item.duration:.1f}" if item.duration is not None else "-"
        text = " ".join(item.description.split())[:40]
        if item.tags:
            text = f"{text} [{', '.join(item.tags)}]".strip()
        # repr() for caller-controlled numbers: control characters must not reach the terminal as such.
        click.echo(
            f"{item.id:<36}  {item.kind:<9}  {_when(item.started_at):<19}  {duration:>7}  {item.direction:<8}  "
            f"{item.agent_interface or '-':<14}  {_shown(item.caller_number):<16}  {_shown(item.called_number):<16}  "
            f"{_shown(text)}"
        )
    shown = len(page.items)
    more = f"; next page: --cursor {page.next_cursor}" if page.next_cursor else ""
    total = f"{page.total}" if page.total_exact else f"more than {page.total}"
    click.echo(f"{shown} shown of {total} matching{more}")


def _shown(value: str | None) -> str:
    if value is None:
        return "-"
    return value if value.isprintable() else repr(value)


@recordings.command("search")
@click.option("--kind", type=click.Choice([kind.value for kind in Kind]), help="full, on_demand or voicemail.")
@click.option("--agent", help="The agent's interface, e.g. PJSIP/1001.")
@click.option("--agent-user-id", type=int, help="The agent's user id.")
@click.option("--queue", help="Queue name.")
@click.option("--since", help="Started at or after (ISO 8601; UTC when no zone is given).")
@click.option("--until", help="Started before (ISO 8601).")
@click.option("--number", help="Caller or called number.")
@click.option("--partial", is_flag=True, help="Match --number anywhere in either number.")
@click.option("--direction", type=click.Choice([d.value for d in Direction]))
@click.option("-q", "--text", "text", help="Words that must all occur in the description or tags.")
@click.option("--min-duration", type=float, help="Seconds.")
@click.option("--max-duration", type=float, help="Seconds.")
@click.option("--service-record-type", help="Type of the linked service record.")
@click.option("--status", type=click.Choice([s.value for s in Status]))
@click.option("--linkedid", help="The call's linkedid.")
@click.option("--sort", type=click.Choice(["started_at", "duration"]), default="started_at", show_default=True)
@click.option("--order", type=click.Choice(["asc", "desc"]), default="desc", show_default=True)
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--offset", type=int, default=0, show_default=True)
@click.option("--cursor", help="next_cursor of a previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON (as the API answers).")
@click.pass_context
def search(ctx: click.Context, /, partial: bool, text: str | None, as_json: bool, **filters: Any) -> None:
    """Search the recordings index; every option combines with the others."""
    config = get_config(ctx)
    given = {name: value for name, value in filters.items() if value is not None}
    if text is not None:
        given["q"] = text
    if partial:
        given["number_match"] = "partial"
    try:
        query = SearchQuery.model_validate(given).check()
    except ValidationError as exc:
        raise _usage(validation_details(exc)["fields"]) from exc
    except ApiError as exc:
        raise _usage(exc.details.get("fields") or {"query": exc.message}) from exc
    page = _run(config, lambda service: service.index.search(query))
    if as_json:
        click.echo(json.dumps(page.as_json(), ensure_ascii=False, indent=2))
    else:
        _print_page(page)


@recordings.command("check")
@click.pass_context
def check(ctx: click.Context) -> None:
    """Report files without index rows and rows (not erased) without files; exit 1 if there are any."""
    config = get_config(ctx)
    report: CheckReport = _run(config, lambda service: service.retention.check())
    click.echo(f"recordings directory: {config.recordings_dir}")
    for relative in report.files_without_rows:
        click.echo(f"file without row: {relative}")
    for recording_id, relative in report.rows_without_files:
        click.echo(f"row without file: {recording_id} ({relative})")
    click.echo(
        f"{len(report.files_without_rows)} files without rows, {len(report.rows_without_files)} rows without files"
    )
    if not report.clean:
        ctx.exit(1)
