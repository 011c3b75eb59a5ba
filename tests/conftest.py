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


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, LoopFactory]:
    """Async tests run on uvloop, the loop the engine runs on (callcenter.runtime)."""
    return {"uvloop": uvloop.new_event_loop}
