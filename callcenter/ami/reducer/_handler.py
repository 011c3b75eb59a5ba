"""What every handler module shares: a handler's signature, and the readers of AMI's numeric header values.

A handler takes the model, the AMI event and the time, and returns the next model with the domain events the
event caused. Headers are read through :attr:`AmiMessage.lowered` (lower-cased names, no ``lower()`` per lookup);
a missing or malformed number falls back to a default instead of failing, since one odd event must not stop the
fold.
"""

from __future__ import annotations

from collections.abc import Callable

from callcenter.ami.message import AmiMessage
from callcenter.events import DomainEvent
from callcenter.model import LiveModel

Result = tuple[LiveModel, list[DomainEvent]]
Handler = Callable[[LiveModel, AmiMessage, float], Result]


# The numbers AMI sends most (states, positions, penalties), parsed once: int() and its try cost more than a lookup.
_SMALL_INTS = {str(number): number for number in range(1000)}


def _int(value: str, default: int = 0) -> int:
    number = _SMALL_INTS.get(value)
    if number is not None:
        return number
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        return default


def _float(value: str) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None
