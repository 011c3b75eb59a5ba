"""`callcenter flows validate|simulate|graph`: check the IVR flows, walk one without Asterisk, draw one."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from callcenter.cli.common import get_config

if TYPE_CHECKING:
    from ivr_flows.schema import FlowSet


def _shipped() -> Path:
    # The CLI is a composition root too: it may reach into the feature package.
    from ivr_flows.route import SHIPPED_FLOWS

    return SHIPPED_FLOWS


def _flows_config(ctx: click.Context) -> tuple[Path, str | None]:
    """The flows directory the engine runs (``[flows] directory``, else the shipped flows) and the default zone."""
    try:
        flows = get_config(ctx).flows
    except click.ClickException:
        return _shipped(), None
    return flows.directory or _shipped(), flows.timezone


def _sounds_dir(ctx: click.Context, given: Path | None) -> Path | None:
    if given is not None:
        return given
    try:
        sounds = get_config(ctx).asterisk.sounds_path
    except click.ClickException:
        return None
    return sounds if sounds.is_dir() else None


@click.group()
def flows() -> None:
    """IVR flows: validate them, simulate a call through one, draw one."""


@flows.command("validate")
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--sounds-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Asterisk's sounds directory for sound-file prompts (default: the config's, when it exists).",
)
@click.pass_context
def validate(ctx: click.Context, path: Path | None, sounds_dir: Path | None) -> None:
    """Check PATH (a flow file or a directory of them; default: the engine's flows). Exits 1 on any problem."""
    from ivr_flows.validator import check_path

    default_dir, zone = _flows_config(ctx)
    target = path or default_dir
    sounds = _sounds_dir(ctx, sounds_dir)
    report = check_path(target, sounds_dir=sounds, default_timezone=zone)
    for issue in report.issues:
        click.echo(str(issue), err=True)
    if sounds is None:
        click.echo("note: no sounds directory, so sound-file prompts were not checked (--sounds-dir)", err=True)
    if report.issues:
        raise SystemExit(1)
    names = ", ".join(sorted(report.flows.flows))
    click.echo(f"{len(report.flows.flows)} flow(s) OK: {names}")


def _load(ctx: click.Context, flow: str, directory: Path | None) -> tuple[FlowSet, str]:
    """The flows FLOW runs with (its directory's, for flow: references) and its name."""
    from ivr_flows.validator import FlowValidationError, load_flow_file, load_flows

    default_dir, zone = _flows_config(ctx)
    candidate = Path(flow)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        directory = candidate.parent
    try:
        flow_set = load_flows(directory or default_dir, default_timezone=zone)
    except FlowValidationError as exc:
        raise click.ClickException(str(exc)) from exc
    name = flow
    if candidate.suffix in (".yaml", ".yml"):
        loaded = load_flow_file(candidate, default_timezone=zone)
        name = loaded.name or candidate.stem
    if name not in flow_set:
        raise click.ClickException(f"no flow {name!r} (flows: {', '.join(sorted(flow_set.flows))})")
    return flow_set, name


def _parse_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO date and time (2026-11-23T22:00)") from exc


@flows.command("simulate")
@click.argument("flow")
@click.option(
    "--digits",
    default="",
    help="What the caller keys at each prompt, comma-separated: 1,2 ; '' for silence ; H to hang up there.",
)
@click.option("--at", "at", default=None, help="Time of the call, ISO (2026-11-23T22:00); local to the flow's zone.")
@click.option("--caller", default="5551234", show_default=True, help="The caller's number.")
@click.option("--tier", default=None, help="The caller's CRM tier in the simulated directory (vip, gold, ...).")
@click.option("--path", "directory", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None)
@click.option("--silent-after", is_flag=True, help="When the digits run out, stay silent instead of hanging up.")
@click.pass_context
def simulate_command(
    ctx: click.Context,
    flow: str,
    digits: str,
    at: str | None,
    caller: str,
    tier: str | None,
    directory: Path | None,
    silent_after: bool,
) -> None:
    """Run FLOW (a name, or a .yaml file) with the real engine against a scripted caller, without Asterisk.

    Prints the path through the nodes, the prompts played, the AGI commands and the outcome. Products and
    customers come from a small in-memory catalog (codes 1001, 1002, 2001).
    """
    from ivr_flows.ports import in_memory_ports
    from ivr_flows.simulator import Script, simulate

    flow_set, name = _load(ctx, flow, directory)
    inputs = [part.strip() for part in digits.split(",")] if digits else []
    script = Script(inputs=inputs, when_done="silence" if silent_after else "hangup")
    ports = in_memory_ports(tiers={caller: tier} if tier else None)
    try:
        config = get_config(ctx)
        queues = {"general": config.queues.general, "expert": config.queues.expert}
    except click.ClickException:
        queues = None
    result = asyncio.run(
        simulate(flow_set, name, at=_parse_at(at), caller=caller, ports=ports, queues=queues, script=script)
    )
    click.echo(result.report())


@flows.command("graph")
@click.argument("flow")
@click.option("--path", "directory", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to write FLOW.mmd and FLOW.svg.",
)
@click.pass_context
def graph_command(ctx: click.Context, flow: str, directory: Path | None, out_dir: Path) -> None:
    """Draw FLOW (a name, or a .yaml file) as Mermaid text and as SVG."""
    from ivr_flows.graph import write_graph

    flow_set, name = _load(ctx, flow, directory)
    try:
        mermaid, svg = write_graph(flow_set[name], out_dir)
    except OSError as exc:
        raise click.ClickException(f"cannot write into {out_dir}: {exc.strerror or exc}") from exc
    click.echo(f"wrote {mermaid}")
    click.echo(f"wrote {svg}")
