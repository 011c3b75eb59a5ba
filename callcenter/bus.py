"""The in-process event bus: typed domain events from the engine's parts to whoever listens.

An event is a frozen dataclass declared in the ``events.py`` of the package that publishes it (the core's in
:mod:`callcenter.events`). Publishers hand the bus an instance (``bus.publish(CallRecorded(...))``); subscribers
subscribe by class (``bus.subscribe(CallRecorded, handler)``) and receive that instance, so mypy checks what each
one reads. Subclasses are not matched: a subscriber gets exactly the class it named. docs/events.md lists every
event with its publisher and subscribers, written from the code by ``scripts/events_table.py``.

Subscribers are plain callables (sync or async); one that raises is logged and does not stop the others. Async
subscribers run as tasks of their own, which :meth:`Bus.drain` waits for.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger("callcenter.bus")

E = TypeVar("E")
Subscriber = Callable[[E], Awaitable[None] | None]
Unsubscribe = Callable[[], None]


class Bus:
    def __init__(self) -> None:
        self._subscribers: dict[type, list[Callable[[Any], Awaitable[None] | None]]] = defaultdict(list)
        self._everything: list[Callable[[object], Awaitable[None] | None]] = []
        self._pending: set[asyncio.Task[None]] = set()

    def subscribe(self, event_type: type[E], subscriber: Subscriber[E]) -> Unsubscribe:
        """Listens to one event class; returns a function that unsubscribes."""
        subscribers = self._subscribers[event_type]
        subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in subscribers:
                subscribers.remove(subscriber)

        return unsubscribe

    def subscribe_all(self, subscriber: Subscriber[object]) -> Unsubscribe:
        """Listens to every event (traces, tests); returns a function that unsubscribes."""
        self._everything.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._everything:
                self._everything.remove(subscriber)

        return unsubscribe

    def wants(self, event_type: type) -> bool:
        """Whether anyone listens to ``event_type``: a publisher may skip building events nobody reads."""
        return bool(self._subscribers.get(event_type) or self._everything)

    def publish(self, event: object) -> None:
        subscribers = self._subscribers.get(type(event))
        if not subscribers and not self._everything:
            return
        for subscriber in [*(subscribers or ()), *self._everything]:
            try:
                result = subscriber(event)
            except Exception:
                log.exception("subscriber of %s failed", type(event).__name__)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._pending.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async subscriber failed", exc_info=task.exception())

    async def drain(self) -> None:
        """Waits for the async subscribers started so far (used at shutdown and in tests)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


def event_fields(event: object) -> dict[str, Any]:
    """An event's fields as a new dict, values shared (not copied as ``dataclasses.asdict`` would): for
    subscribers that keep what an event said as JSON-like data."""
    return {name: getattr(event, name) for name in event.__dataclass_fields__}  # type: ignore[attr-defined]
