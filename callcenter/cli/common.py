"""What every subcommand shares: the --config option, loading the config, and clean fatal errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from callcenter.config import Config, ConfigError, load_config

F = TypeVar("F", bound=Callable[..., Any])


def pass_context_options(func: F) -> F:
    """Adds --config and --log-level to the top-level group and keeps them on the click context."""

    @click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="TOML configuration file (default: $CALLCENTER_CONFIG, else built-in defaults).",
    )
    @click.option("--log-level", default="INFO", show_default=True, help="Logging level.")
    @click.pass_context
    @functools.wraps(func)
    def wrapper(ctx: click.Context, config_path: str | None, log_level: str, *args: Any, **kwargs: Any) -> Any:
        ctx.ensure_object(dict)
        ctx.obj["config_path"] = config_path
        ctx.obj["log_level"] = log_level.upper()
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def get_config(ctx: click.Context) -> Config:
    """Loads the configuration once per command; a bad file ends the command with the key named."""
    root = ctx.find_root()
    root.ensure_object(dict)
    cached = root.obj.get("config")
    if isinstance(cached, Config):
        return cached
    try:
        config = load_config(root.obj.get("config_path"))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    root.obj["config"] = config
    return config


def log_level(ctx: click.Context) -> str:
    root = ctx.find_root()
    return str((root.obj or {}).get("log_level", "INFO"))
