"""`callcenter run` (the engine) and `callcenter demo` (everything, with phones and demo traffic)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import click

from callcenter.calllog import configure_logging
from callcenter.cli.common import get_config, log_level
from callcenter.runtime import run_async

log = logging.getLogger("callcenter.cli")


def _stop_event_on_signals(loop: asyncio.AbstractEventLoop) -> asyncio.Event:
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


@click.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the engine: FastAGI server and web server, until SIGINT or SIGTERM. SIGHUP reloads the IVR flows."""
    # The engine's modules load only for the commands that run it, so `callcenter asterisk ...` stays light.
    from alembic.util import CommandError

    from callcenter.app import build_app, request_reload, serve
    from callcenter.db import DatabaseError, migrate

    config = get_config(ctx)
    configure_logging(log_level(ctx))

    async def main() -> None:
        try:
            await migrate(config.database_url)
        except (DatabaseError, CommandError) as exc:
            raise click.ClickException(f"the database cannot be brought to this version's schema: {exc}") from exc
        loop = asyncio.get_running_loop()
        stop = _stop_event_on_signals(loop)
        app = build_app(config)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, request_reload, app)
        await serve(config, stop=stop, app=app)

    run_async(main())


@click.command()
@click.option("--calls-every", default=8.0, show_default=True, help="Seconds between demo calls (0: no traffic).")
@click.option("--no-traffic", is_flag=True, help="Start everything but place no demo calls.")
@click.pass_context
def demo(ctx: click.Context, calls_every: float, no_traffic: bool) -> None:
    """Provision everything and run the live demo until Ctrl-C, then stop every process it started."""
    from callcenter_devtools.demo import Demo, DemoError

    config = get_config(ctx)
    configure_logging(log_level(ctx))
    try:
        Demo(config, calls_every=0.0 if no_traffic else calls_every).run()
    except DemoError as exc:
        raise click.ClickException(str(exc)) from exc
