"""Faster constructors for frozen, slotted dataclasses: the live model's speed-up, kept apart from the model.

Why. ``@dataclass(frozen=True)`` forbids assignment by giving the class a ``__setattr__`` that raises, so the
``__init__`` it writes cannot assign either: it stores every field with ``object.__setattr__(self, name, value)``,
a generic call that looks the name up each time. The reducer (:mod:`callcenter.ami.reducer`) builds several
model values for most AMI events and ``dataclasses.replace`` goes through ``__init__`` too, so that cost is a
large part of the live pipeline (bench/ami.py; docs/benchmarks.md, "What made the pipeline faster").

What. With ``slots=True`` each field is a slot, and a slot's descriptor can store a value directly
(``Class.name.__set__(obj, value)``) without going through ``__setattr__``, about three times faster. For a class
``C(a, b=0, c=field(default_factory=dict))`` :func:`install` writes, with ``exec`` as dataclasses itself does::

    def __init__(self, a, b=_default_1, c=_NO_VALUE):
        _set_0(self, a)                                        # _set_0 is C.a.__set__
        _set_1(self, b)
        _set_2(self, _factory_2() if c is _NO_VALUE else c)    # a new dict for each instance

Same parameters in the same order, same defaults, default factories called once per instance, the same
``TypeError`` for a missing or unknown argument. Nothing else about the class changes: it stays frozen (its
``__setattr__`` still refuses every assignment), and equality, hashing, repr, pickling and ``dataclasses.replace``
are dataclasses' own. The ``__init__`` dataclasses wrote stays reachable through :func:`dataclass_init`, so that
tests/unit/test_model_fastinit.py can check, for every class given here, that both build equal objects and
refuse the same calls.

Only plain classes are accepted: frozen, slotted, every field set by ``__init__`` and positional, no
``InitVar``, no ``__post_init__``. Anything else raises ``TypeError`` when the class is given, not later.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from types import FunctionType, MemberDescriptorType
from typing import Any

# Where the __init__ that dataclasses wrote is kept, on each class given to install().
_ORIGINAL = "_dataclass_init"


class _Factory:
    """The default shown for a field with a default factory (as dataclasses shows it): a marker, never stored."""

    def __repr__(self) -> str:
        return "<factory>"


_NO_VALUE = _Factory()


def install(*classes: type) -> None:
    """Gives each class a fast ``__init__`` (see the module's docstring); the one dataclasses wrote is kept."""
    for cls in classes:
        _check_plain(cls)
        original = cls.__dict__["__init__"]
        fast = _make_init(cls)
        fast.__annotations__ = dict(original.__annotations__)
        setattr(cls, _ORIGINAL, original)
        cls.__init__ = fast  # type: ignore[misc]


def dataclass_init(cls: type) -> Callable[..., None]:
    """The ``__init__`` dataclasses wrote for a class given to :func:`install`."""
    original = cls.__dict__.get(_ORIGINAL)
    if original is None:
        raise LookupError(f"{cls.__qualname__} has no fast __init__")
    return original  # type: ignore[no-any-return]


def is_installed(cls: type) -> bool:
    return _ORIGINAL in cls.__dict__


def _check_plain(cls: type) -> None:
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__ or "__init__" not in cls.__dict__:
        raise TypeError(f"{cls.__qualname__} is not a frozen, slotted dataclass")
    if _ORIGINAL in cls.__dict__:
        raise TypeError(f"{cls.__qualname__} already has a fast __init__")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__qualname__} has a __post_init__, which the fast __init__ would not call")
    for item in dataclasses.fields(cls):
        if not item.init or item.kw_only:
            raise TypeError(f"{cls.__qualname__}.{item.name} is not a positional parameter of __init__")
        if not isinstance(cls.__dict__.get(item.name), MemberDescriptorType):
            raise TypeError(f"{cls.__qualname__}.{item.name} is not a slot")
    names = [item.name for item in dataclasses.fields(cls)]
    parameters = list(inspect.signature(cls.__dict__["__init__"]).parameters)[1:]
    if parameters != names:
        # An InitVar: a parameter of __init__ that is no field.
        raise TypeError(f"{cls.__qualname__}: __init__ takes {parameters}, not its fields {names}")


def _make_init(cls: type) -> FunctionType:
    namespace: dict[str, Any] = {"_NO_VALUE": _NO_VALUE}
    parameters: list[str] = []
    body: list[str] = []
    for index, item in enumerate(dataclasses.fields(cls)):
        namespace[f"_set_{index}"] = cls.__dict__[item.name].__set__
        value = item.name
        if item.default is not dataclasses.MISSING:
            namespace[f"_default_{index}"] = item.default
            parameters.append(f"{item.name}=_default_{index}")
        elif item.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{index}"] = item.default_factory
            parameters.append(f"{item.name}=_NO_VALUE")
            value = f"_factory_{index}() if {item.name} is _NO_VALUE else {item.name}"
        else:
            parameters.append(item.name)
        body.append(f"    _set_{index}(self, {value})\n")
    if not body:
        body.append("    pass\n")
    source = "def __init__(" + ", ".join(["self", *parameters]) + "):\n" + "".join(body)
    # Made only of the class's own field names (identifiers, checked by dataclasses) and the names above.
    exec(source, namespace)  # noqa: S102
    init = namespace["__init__"]
    assert isinstance(init, FunctionType)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    return init
