"""The fast ``__init__`` of :mod:`callcenter.fastinit` builds what the ``__init__`` dataclasses wrote builds.

For every class that has one (the live model's, and the domain events that use it), the same call is made both
ways: the class itself (the fast ``__init__``, as production calls it) and the ``__init__`` dataclasses wrote,
kept by :func:`callcenter.fastinit.dataclass_init`, on a bare instance. Arguments positional, by keyword or left
to their defaults and default factories, values drawn by hypothesis; calls with a missing argument, an unknown
keyword, too many positional arguments or one given twice. Both must build equal objects holding the very values
passed (or the same default, or a fresh product of the same factory), or refuse with the same exception and text.
"""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from dataclasses import InitVar, dataclass, field
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter import events, fastinit, model


def _dataclasses_of(module: ModuleType) -> list[type]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == module.__name__
    ]


TREATED = [cls for module in (model, events) for cls in _dataclasses_of(module) if fastinit.is_installed(cls)]


def test_every_class_of_the_live_model_has_the_fast_init() -> None:
    assert {cls.__name__ for cls in _dataclasses_of(model)} == {
        cls.__name__ for cls in TREATED if cls.__module__ == model.__name__
    }
    assert len(TREATED) >= 9


@pytest.mark.parametrize("cls", TREATED, ids=lambda cls: cls.__name__)
def test_the_fast_init_replaces_the_dataclass_one_and_keeps_its_face(cls: type) -> None:
    original = fastinit.dataclass_init(cls)
    fast = cls.__dict__["__init__"]
    assert fast is not original
    assert fast.__qualname__ == original.__qualname__ == f"{cls.__qualname__}.__init__"
    assert str(inspect.signature(fast)) == str(inspect.signature(original))
    assert fast.__annotations__ == original.__annotations__


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.tuples(st.text(max_size=4), st.integers()),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
    st.frozensets(st.text(max_size=4), max_size=3),
)


def build_fast(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "built", cls(*args, **kwargs)
    except TypeError as exc:
        return "refused", (type(exc), str(exc))


def build_dataclass(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any]:
    obj: Any = object.__new__(cls)
    try:
        fastinit.dataclass_init(cls)(obj, *args, **kwargs)
    except TypeError as exc:
        return "refused", (type(exc), str(exc))
    return "built", obj


def assert_same_build(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    fast_kind, fast = build_fast(cls, args, kwargs)
    plain_kind, plain = build_dataclass(cls, args, kwargs)
    assert (fast_kind, type(fast)) == (plain_kind, type(plain))
    if fast_kind == "refused":
        assert fast == plain
        return
    assert type(fast) is cls
    assert fast == plain
    if _hashable(plain):
        assert hash(fast) == hash(plain)
    assert repr(fast) == repr(plain)
    given = dict(zip([f.name for f in dataclasses.fields(cls)], args, strict=False)) | kwargs
    for item in dataclasses.fields(cls):
        mine, theirs = getattr(fast, item.name), getattr(plain, item.name)
        if item.name in given:
            assert mine is given[item.name]
            assert theirs is given[item.name]
        elif item.default is not dataclasses.MISSING:
            assert mine is item.default
            assert theirs is item.default
        else:
            # A default factory: called for each instance, never shared.
            factory = item.default_factory
            assert callable(factory)
            assert mine == theirs == factory()
            assert type(mine) is type(theirs)
            assert mine is not theirs
            assert getattr(cls(*args, **kwargs), item.name) is not mine


def _hashable(obj: object) -> bool:
    try:
        hash(obj)
    except TypeError:
        return False
    return True


@settings(max_examples=60, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize("cls", TREATED, ids=lambda cls: cls.__name__)
def test_both_inits_build_the_same_object_for_the_same_call(cls: type, data: st.DataObject) -> None:
    names = [item.name for item in dataclasses.fields(cls)]
    positional = data.draw(st.integers(0, len(names)), label="positional")
    args = tuple(data.draw(_VALUES, label=name) for name in names[:positional])
    kwargs: dict[str, Any] = {}
    for name in names[positional:]:
        if data.draw(st.booleans(), label=f"pass {name}"):
            kwargs[name] = data.draw(_VALUES, label=name)
    # Required fields may be left out too: then both must refuse the call alike.
    assert_same_build(cls, args, kwargs)


@pytest.mark.parametrize("cls", TREATED, ids=lambda cls: cls.__name__)
def test_both_inits_refuse_the_same_bad_calls(cls: type) -> None:
    names = [item.name for item in dataclasses.fields(cls)]
    full = {name: f"value of {name}" for name in names}
    bad_calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((), full | {"no_such_field": 1}),  # an unknown keyword
        ((*full.values(), "one too many"), {}),  # too many positional arguments
        ((full[names[0]],), full),  # the first argument twice
    ]
    # Each required argument left out, alone, then all of them.
    required = [item.name for item in dataclasses.fields(cls) if _is_required(item)]
    for name in required:
        bad_calls.append(((), {key: value for key, value in full.items() if key != name}))
    if required:
        bad_calls.append(((), {}))
    for args, kwargs in bad_calls:
        assert build_fast(cls, args, kwargs)[0] == "refused", (args, kwargs)
        assert_same_build(cls, args, kwargs)


def _is_required(item: dataclasses.Field[Any]) -> bool:
    return item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING


@pytest.mark.parametrize("cls", TREATED, ids=lambda cls: cls.__name__)
def test_the_classes_stay_frozen_and_copy_as_before(cls: type) -> None:
    values = {item.name: f"value of {item.name}" for item in dataclasses.fields(cls)}
    obj = cls(**values)
    name = next(iter(values))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, name, "changed")
    changed = dataclasses.replace(obj, **{name: "changed"})
    assert getattr(changed, name) == "changed"
    assert pickle.loads(pickle.dumps(obj)) == obj  # noqa: S301 - our own bytes


def test_the_live_model_builds_fresh_mappings_for_each_instance() -> None:
    first, second = model.LiveModel(), model.LiveModel()
    assert first == second
    assert first.channels is not second.channels
    assert model.QueueState("support").members is not model.QueueState("support").members


# -- what install() refuses -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NotSlotted:
    a: int


@dataclass(slots=True)
class _NotFrozen:
    a: int


@dataclass(frozen=True, slots=True)
class _PostInit:
    a: int

    def __post_init__(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class _WithInitVar:
    a: int
    b: InitVar[int] = 0


@dataclass(frozen=True, slots=True)
class _NotInInit:
    a: int
    b: int = field(default=0, init=False)


@dataclass(frozen=True, slots=True)
class _KeywordOnly:
    a: int
    b: int = field(default=0, kw_only=True)


class _NotADataclass:
    pass


@pytest.mark.parametrize(
    "cls", [_NotSlotted, _NotFrozen, _PostInit, _WithInitVar, _NotInInit, _KeywordOnly, _NotADataclass]
)
def test_install_refuses_a_class_it_would_get_wrong(cls: type) -> None:
    before = cls.__dict__.get("__init__")
    with pytest.raises(TypeError):
        fastinit.install(cls)
    assert cls.__dict__.get("__init__") is before
    assert not fastinit.is_installed(cls)


def test_install_handles_a_class_without_fields_and_refuses_a_second_time() -> None:
    @dataclass(frozen=True, slots=True)
    class Empty:
        pass

    fastinit.install(Empty)
    assert_same_build(Empty, (), {})
    assert_same_build(Empty, (1,), {})
    with pytest.raises(TypeError, match="already"):
        fastinit.install(Empty)
    with pytest.raises(LookupError):
        fastinit.dataclass_init(_NotSlotted)
