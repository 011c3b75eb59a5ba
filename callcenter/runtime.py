"""How the engine's processes run their event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

R = TypeVar("R")


def run_async(main: Coroutine[Any, Any, R]) -> R:
    """Runs the engine's top-level coroutine on uvloop, the engine's event loop (stock asyncio without it).

    uvloop halves the CPU the FastAGI server spends per call (bench/fastagi.py measures both loops).
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every platform we support
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
