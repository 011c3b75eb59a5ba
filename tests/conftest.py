"""Shared test settings."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest
import uvloop


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, LoopFactory]:  # noqa: F811
    """Async tests run on uvloop, the loop the engine runs on (callcenter.runtime)."""
    return {"uvloop": uvloop.new_event_loop}


# The real parts' fixtures, registered once here for every directory that needs them.
from tests.real_parts import config, integration_dir, phones, queue_member, sandbox  # noqa: E402, F401
