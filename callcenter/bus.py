"""The in-process event bus: typed domain events from the engine's parts to whoever listens.

An event is a frozen dataclass declared in the ``events.py`` of the package that publishes it (the core's in
:mod:`callcenter.events`). Publishers hand the bus an instance (``bus.publish(CallRecorded(...))``); subscribers
subscribe by class (``bus.subscribe(CallRecorded, handler)``) and receive that instance, so mypy checks what each
one reads. Subclasses are not matched: a subscriber gets exactly the class it named. docs/events.md lists every
event with its publisher and subscribers, written from the code by ``scripts/events_table.py``.

Subscribers are plain callables (sync or async); one that raises is logged and does not stop the others. Async
subscribers run as tasks of their own, which :meth:`Bus.drain` waits for. A subscriber that keeps failing the same
way (a part it needs is down) is logged once with its traceback, then counted, and the count is told when it works
again: an outage is one warning, not a traceback per event.
"""

from __future__ import annotations

import asyncio
import functools
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
        # Failures by (subscriber, exception class) since its traceback was logged; cleared when it succeeds again.
        self._failing: dict[tuple[str, str], int] = {}
        self.failures = 0

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
            except Exception as exc:
                self._failed(subscriber, event, exc)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._pending.add(task)
                task.add_done_callback(functools.partial(self._done, subscriber=subscriber, event=event))
            elif self._failing:
                self._worked(subscriber)

    def _done(self, task: asyncio.Task[None], *, subscriber: Callable[..., Any], event: object) -> None:
        self._pending.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            if self._failing:
                self._worked(subscriber)
            return
        if isinstance(exc, Exception):
            self._failed(subscriber, event, exc, asynchronous=True)
        else:
            log.error("async subscriber failed", exc_info=exc)

    def _failed(
        self, subscriber: Callable[..., Any], event: object, exc: Exception, *, asynchronous: bool = False
    ) -> None:
        self.failures += 1
        key = (_name(subscriber), type(exc).__name__)
        seen = self._failing.get(key)
        self._failing[key] = (seen or 0) + 1
        if seen is None:
            what = "async subscriber" if asynchronous else "subscriber"
            log.error("%s %s of %s failed", what, key[0], type(event).__name__, exc_info=exc)
        else:
            log.debug("%s failed again (%s, %d times)", key[0], key[1], seen + 1)

    def _worked(self, subscriber: Callable[..., Any]) -> None:
        name = _name(subscriber)
        for key in [key for key in self._failing if key[0] == name]:
            count = self._failing.pop(key)
            if count > 1:
                log.warning("%s works again after failing %d times with %s", name, count, key[1])

    async def drain(self) -> None:
        """Waits for the async subscribers started so far (used at shutdown and in tests)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


def _name(subscriber: Callable[..., Any]) -> str:
    return str(getattr(subscriber, "__qualname__", None) or type(subscriber).__qualname__)


def event_fields(event: object) -> dict[str, Any]:
    """An event's fields as a new dict, values shared (not copied as ``dataclasses.asdict`` would): for
    subscribers that keep what an event said as JSON-like data."""
    return {name: getattr(event, name) for name in event.__dataclass_fields__}  # type: ignore[attr-defined]
