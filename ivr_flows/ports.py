"""What the flow engine needs from outside, as small Protocols the composition root fills in.

Other parts of the engine provide the real ones (the CRM's products and customers, the recordings store and
its on-demand control); the in-memory versions here serve the simulator and the tests.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Protocol

from callcenter.agi.protocol import AgiEnvironment
from callcenter.agi.session import DataResult, DigitResult, RecordResult

# -- the channel ----------------------------------------------------------------------------------------


class FlowSession(Protocol):
    """The part of :class:`callcenter.agi.session.AgiSession` a flow uses; the simulator provides it too.

    A caller hangup raises :class:`callcenter.agi.exceptions.AgiHangup` from any media command.
    """

    env: AgiEnvironment
    hung_up: bool

    @property
    def uniqueid(self) -> str: ...

    @property
    def linkedid(self) -> str: ...

    async def answer(self) -> None: ...

    async def stream_file(self, filename: str, escape_digits: str = "") -> DigitResult: ...

    async def get_option(self, filename: str, escape_digits: str, timeout_ms: int = 0) -> DigitResult: ...

    async def get_data(self, filename: str, timeout_ms: int = 5000, max_digits: int = 1) -> DataResult: ...

    async def wait_for_digit(self, timeout_ms: int) -> str | None: ...

    async def say_number(self, number: int, escape_digits: str = "") -> DigitResult: ...

    async def say_digits(self, digits: str, escape_digits: str = "") -> DigitResult: ...

    async def record_file(
        self,
        filename: str,
        fmt: str = "wav",
        escape_digits: str = "#",
        timeout_ms: int = 60_000,
        *,
        beep: bool = True,
        silence_seconds: int | None = None,
    ) -> RecordResult: ...

    async def set_variable(self, name: str, value: str) -> None: ...

    async def get_variable(self, name: str) -> str | None: ...

    async def exec(self, application: str, options: str = "") -> int: ...

    async def verbose(self, message: str, level: int = 1) -> None: ...

    async def hangup(self) -> None: ...


class EventPublisher(Protocol):
    """:class:`callcenter.bus.Bus` as the engine sees it."""

    def publish(self, event: object) -> object: ...


# -- time -----------------------------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> datetime:
        """The wall-clock time, timezone-aware."""
        ...

    def monotonic(self) -> float: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    # The builtin itself, not a method around it: the engine reads it once for every step of every call.
    monotonic = staticmethod(time.monotonic)


class FakeClock:
    """A clock that moves only when told to: set the time of day a test or a simulation runs at."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime (a time zone decides opening hours)")
        self._start = start
        self._elapsed = 0.0

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        return self._elapsed

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not go back")
        self._elapsed += seconds


class ShiftedClock:
    """Real time, started at another wall-clock moment: a call at "22:00" whose path still takes real seconds.

    For integration tests and demos that need a time of day the machine is not at.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ShiftedClock needs an aware datetime (a time zone decides opening hours)")
        # The system clock plus a fixed offset: as cheap as the system clock, which each step of a call reads.
        self._offset = start - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    monotonic = staticmethod(time.monotonic)


# -- the CRM --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Product:
    code: str
    name: str
    price: Decimal
    # The catalog's availability state: in_stock, out_of_stock, discontinued (the flow has words for each).
    availability: str
    # Extra text to read after name, price and availability, per language (from the CRM's description).
    spoken: Mapping[str, str] = field(default_factory=dict)


class ProductCatalog(Protocol):
    async def find(self, code: str) -> Product | None:
        """The product with this code. ``code`` is caller input: pass it as a bound parameter, never as SQL."""
        ...


class CustomerDirectory(Protocol):
    async def tier(self, caller_number: str) -> str | None:
        """The CRM tier of the customer calling from ``caller_number`` (vip, gold, ...), or None."""
        ...


@dataclass(frozen=True, slots=True)
class VoicemailTarget:
    """Where Asterisk records a message (``record_as``, without extension, as Asterisk sees the path) and
    where that file is from the engine's side (``path``)."""

    record_as: str
    path: Path
    fmt: str = "wav"


@dataclass(frozen=True, slots=True)
class VoicemailMessage:
    intent: str
    caller_number: str
    path: Path
    duration: float
    uniqueid: str
    linkedid: str
    recorded_at: datetime
    language: str
    flow: str
    # How the recording ended: dtmf (#), timeout, hangup (the caller hung up while speaking), ...
    ended_by: str
    # The number the caller dialled (the hotline's DID).
    did: str = ""


class VoicemailSink(Protocol):
    async def allocate(self, *, uniqueid: str, intent: str) -> VoicemailTarget:
        """A fresh place to record one message (its directory made, writable by Asterisk)."""
        ...

    async def store(self, message: VoicemailMessage) -> None:
        """Files a recorded message: the recordings index and the CRM service record of its intent."""
        ...


class RecordingControl(Protocol):
    async def start_on_demand(self, *, uniqueid: str, linkedid: str, channel: str, reason: str) -> None:
        """Starts recording the call from now on (MixMonitor over AMI)."""
        ...


@dataclass(frozen=True, slots=True)
class FlowPorts:
    catalog: ProductCatalog
    directory: CustomerDirectory
    voicemail: VoicemailSink
    recording: RecordingControl


# -- in-memory versions ---------------------------------------------------------------------------------


class InMemoryCatalog:
    def __init__(self, products: Iterable[Product] = ()) -> None:
        self._products = {product.code: product for product in products}
        # Every code the engine asked for, in order: tests assert what reached the catalog.
        self.lookups: list[str] = []

    async def find(self, code: str) -> Product | None:
        self.lookups.append(code)
        return self._products.get(code)


class InMemoryDirectory:
    def __init__(self, tiers: Mapping[str, str] | None = None) -> None:
        self._tiers = dict(tiers or {})
        self.lookups: list[str] = []

    async def tier(self, caller_number: str) -> str | None:
        self.lookups.append(caller_number)
        return self._tiers.get(caller_number)


_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def safe_file_part(value: str, limit: int = 48) -> str:
    """A piece of text (a uniqueid, an intent) usable in a file name."""
    cleaned = _UNSAFE_FILE_CHARS.sub("_", value)[:limit].strip(".")
    return cleaned or "x"


class InMemoryVoicemailSink:
    """Keeps messages in a list; the files themselves are Asterisk's to write under ``directory``."""

    def __init__(self, directory: Path = Path("/var/spool/callcenter/voicemail")) -> None:
        self._directory = directory
        self.messages: list[VoicemailMessage] = []

    async def allocate(self, *, uniqueid: str, intent: str) -> VoicemailTarget:
        stem = f"{safe_file_part(uniqueid)}-{safe_file_part(intent)}-{len(self.messages) + 1}"
        path = self._directory / f"{stem}.wav"
        return VoicemailTarget(record_as=str(self._directory / stem), path=path)

    async def store(self, message: VoicemailMessage) -> None:
        self.messages.append(message)


@dataclass(frozen=True, slots=True)
class RecordingStart:
    uniqueid: str
    linkedid: str
    channel: str
    reason: str


class InMemoryRecordingControl:
    def __init__(self) -> None:
        self.started: list[RecordingStart] = []

    async def start_on_demand(self, *, uniqueid: str, linkedid: str, channel: str, reason: str) -> None:
        self.started.append(RecordingStart(uniqueid, linkedid, channel, reason))


DEMO_PRODUCTS = (
    Product(
        "1001",
        "Aurora washing machine",
        Decimal("2999.00"),
        "in_stock",
        {"en": "Eight kilograms, quiet drum.", "zh": "八公斤静音滚筒。"},
    ),
    Product("1002", "Breeze air conditioner", Decimal("4599.50"), "out_of_stock"),
    Product("2001", "Comet water heater", Decimal("1299.00"), "discontinued"),
)


def in_memory_ports(
    products: Iterable[Product] = DEMO_PRODUCTS,
    tiers: Mapping[str, str] | None = None,
    voicemail_dir: Path = Path("/var/spool/callcenter/voicemail"),
) -> FlowPorts:
    return FlowPorts(
        catalog=InMemoryCatalog(products),
        directory=InMemoryDirectory(tiers),
        voicemail=InMemoryVoicemailSink(voicemail_dir),
        recording=InMemoryRecordingControl(),
    )
