"""The immutable-update helpers every handler uses: a changed copy of a mapping, a value or the model.

Nothing that is already part of a model is ever changed (a reader holding an old model keeps seeing what it saw),
so a handler makes new objects for what an event changes and shares everything else with the previous model.
These helpers make those copies as cheaply as Python allows, since every event of a live connection pays for them
(bench/ami.py):

- :func:`_put` and :func:`_drop` copy a mapping once with the one change; a handler that changes several keys of
  one mapping copies it itself, once.
- :func:`_copy` is ``dataclasses.replace`` without its cost: ``replace`` checks every field's init flag and calls
  the class with keywords, several times slower on the frozen, slotted classes of :mod:`callcenter.model`. Here
  every field is read with one :func:`operator.attrgetter` made once per class, the changes go in by position,
  and the class is called once.
- :func:`_evolve` makes the next :class:`LiveModel` with the mappings the event changed, in one constructor call.

Hot handlers go further and call a model class themselves with positional arguments in field order; those calls
must follow the field order of :mod:`callcenter.model`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from operator import attrgetter
from typing import Any, TypeVar

from callcenter.model import Call, Channel, LiveModel, QueueState

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


def _put(mapping: Mapping[K, V], key: K, value: V) -> dict[K, V]:
    """A copy of ``mapping`` with ``key`` set to ``value``."""
    updated = dict(mapping)
    updated[key] = value
    return updated


def _drop(mapping: Mapping[K, V], key: K) -> dict[K, V]:
    """A copy of ``mapping`` without ``key`` (there or not)."""
    updated = dict(mapping)
    updated.pop(key, None)
    return updated


# Per model class: an attrgetter of every field, in order, and each field's position.
_LAYOUTS: dict[type, tuple[Callable[[Any], tuple[Any, ...]], dict[str, int]]] = {}


def _copy(obj: T, **changes: Any) -> T:
    """``dataclasses.replace`` for the model's frozen dataclasses, several times cheaper: every field is read
    with one attrgetter made once per class, ``changes`` go in by position, and the class is called once."""
    cls: Any = type(obj)
    layout = _LAYOUTS.get(cls)
    if layout is None:
        names = tuple(field.name for field in fields(cls))
        layout = _LAYOUTS[cls] = (attrgetter(*names), {name: index for index, name in enumerate(names)})
    getter, index = layout
    values = list(getter(obj))
    for name, value in changes.items():
        values[index[name]] = value
    copied: T = cls(*values)
    return copied


def _evolve(
    model: LiveModel,
    *,
    channels: Mapping[str, Channel] | None = None,
    calls: Mapping[str, Call] | None = None,
    queues: Mapping[str, QueueState] | None = None,
) -> LiveModel:
    """The model with the mappings given (None: kept as they are)."""
    return LiveModel(
        model.channels if channels is None else channels,
        model.calls if calls is None else calls,
        model.queues if queues is None else queues,
        model.agents,
        model.wrapup,
        model.wrapup_due,
        model.asterisk_started,
        model.resync_needed,
    )
