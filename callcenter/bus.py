"""The in-process event bus: domain events from the engine's parts to whoever listens.

Subscribers are plain callables (sync or async); one that raises is logged and does not stop the others.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("callcenter.bus")


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


Subscriber = Callable[[Event], Awaitable[None] | None]


class Bus:
    def __init__(self) -> None:
        self._subscribers: dict[str, list[Subscriber]] = defaultdict(list)
        self._pending: set[asyncio.Task[None]] = set()

    def subscribe(self, event_type: str, subscriber: Subscriber) -> Callable[[], None]:
        """Listens to one event type ("*" for all); returns a function that unsubscribes."""
        self._subscribers[event_type].append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers[event_type]:
                self._subscribers[event_type].remove(subscriber)

        return unsubscribe

    def wants(self, event_type: str) -> bool:
        """Whether anyone listens to ``event_type``: a publisher may skip building events nobody reads."""
        return bool(self._subscribers.get(event_type) or self._subscribers.get("*"))

    def publish(self, event_type: str, **data: Any) -> Event:
        event = Event(type=event_type, data=data)
        for subscriber in [*self._subscribers.get(event_type, ()), *self._subscribers.get("*", ())]:
            try:
                result = subscriber(event)
            except Exception:
                log.exception("subscriber of %s failed", event_type)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._pending.add(task)
                task.add_done_callback(self._done)
        return event

    def _done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async subscriber failed", exc_info=task.exception())

    async def drain(self) -> None:
        """Waits for the async subscribers started so far (used at shutdown and in tests)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
