"""`callcenter asterisk install|start|stop|status|cli|phones`: the sandboxed Asterisk 22."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from callcenter.ami.probe import probe_ami
from callcenter.cli.common import get_config
from callcenter.secrets import PHONE_SECRETS_FILE, ami_secret, phone_passwords

if TYPE_CHECKING:
    from callcenter_devtools.sandbox import Sandbox

# The sandbox manager is a development tool (callcenter_devtools): imported when an `asterisk` command runs, so that
# `callcenter run` never loads it.


def _sandbox(ctx: click.Context) -> Sandbox:
    from callcenter_devtools.sandbox import Sandbox

    return Sandbox(get_config(ctx), progress=lambda line: click.echo(line, err=True))


@contextmanager
def _reported() -> Iterator[None]:
    """The sandbox's errors as the command's own (a message and exit code 1, no traceback)."""
    from callcenter_devtools.sandbox import SandboxError

    try:
        yield
    except SandboxError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def asterisk() -> None:
    """The Asterisk 22 sandbox (a Debian sid chroot, cached outside the repository)."""


@asterisk.command()
@click.option("--force", is_flag=True, help="Reinstall Asterisk even if the sandbox is already there.")
@click.pass_context
def install(ctx: click.Context, force: bool) -> None:
    """Build the chroot and install Asterisk and its English sounds (idempotent)."""
    sandbox = _sandbox(ctx)
    with _reported():
        changed = sandbox.install(force=force)
    if not changed:
        version = sandbox.marker.read_text(encoding="utf-8").strip()
        click.echo(f"sandbox already installed in {sandbox.root} ({version})")


@asterisk.command()
@click.pass_context
def start(ctx: click.Context) -> None:
    """Render asterisk-conf/ into the sandbox and start Asterisk as the chroot's asterisk user."""
    sandbox = _sandbox(ctx)
    with _reported():
        already = sandbox.running_pid()
        pid = sandbox.start()
    state = "already running" if already else "started"
    click.echo(f"Asterisk {state} (pid {pid}) in {sandbox.root}")


@asterisk.command()
@click.pass_context
def stop(ctx: click.Context) -> None:
    """Stop the sandbox's own Asterisk (found by its pid file; nothing else is touched)."""
    with _reported():
        stopped = _sandbox(ctx).stop()
    click.echo("Asterisk stopped" if stopped else "Asterisk was not running")


@asterisk.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Version, uptime and whether AMI accepts the engine's login."""
    config = get_config(ctx)
    sandbox = _sandbox(ctx)

    def ami_check() -> tuple[bool, str]:
        result = asyncio.run(probe_ami(config.ami.host, config.ami.port, config.ami.username, ami_secret(config)))
        return result.ok, result.detail

    with _reported():
        state = sandbox.status(ami_check=ami_check)
    click.echo(f"sandbox:   {sandbox.root} ({'installed' if state.installed else 'not installed'})")
    click.echo(f"running:   {'yes, pid ' + str(state.pid) if state.running else 'no'}")
    click.echo(f"version:   {state.version or '-'}")
    click.echo(f"uptime:    {state.uptime or '-'}")
    ami = "-" if state.ami_ok is None else ("answers" if state.ami_ok else "does not answer")
    click.echo(f"ami:       {ami} ({state.ami_detail}) on {config.ami.host}:{config.ami.port}")
    if not state.running:
        ctx.exit(3)


@asterisk.command(context_settings={"ignore_unknown_options": True})
@click.argument("command", nargs=-1, required=False)
@click.pass_context
def cli(ctx: click.Context, command: tuple[str, ...]) -> None:
    """Run one CLI command (`callcenter asterisk cli pjsip show endpoints`), or attach a console."""
    sandbox = _sandbox(ctx)
    if sandbox.running_pid() is None:
        raise click.ClickException("Asterisk is not running: `callcenter asterisk start` first")
    if not command:
        os.execvp("chroot", ["chroot", str(sandbox.root), "asterisk", "-r"])  # noqa: S606
    with _reported():
        result = sandbox.cli(" ".join(command), check=False)
    click.echo(result.stdout, nl=False)
    if result.returncode != 0:
        click.echo(result.stderr, err=True, nl=False)
        ctx.exit(result.returncode)


@asterisk.command()
@click.pass_context
def phones(ctx: click.Context) -> None:
    """Show each desk phone's SIP account: extension, kind, password and contact (for an admin).

    Passwords the config leaves empty are generated once and kept in the data directory (phones.secret, mode
    0600); reading them needs the rights on that file, so only whoever runs the engine (an admin) sees them.
    """
    config = get_config(ctx)
    try:
        passwords = phone_passwords(config)
    except PermissionError as exc:
        raise click.ClickException(
            f"cannot read {config.data_dir / PHONE_SECRETS_FILE}: run this as the user that runs the engine"
        ) from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    sip = config.sip
    click.echo(f"SIP registrar: sip:{sip.host}:{sip.port} (username = extension)")
    click.echo(f"{'extension':<10} {'kind':<11} {'password':<26} contact")
    for phone in sip.phones:
        origin = "" if phone.password.get_secret_value() else " (generated)"
        contact = phone.contact or "registers"
        click.echo(f"{phone.extension:<10} {phone.kind:<11} {passwords[phone.extension]:<26} {contact}{origin}")
