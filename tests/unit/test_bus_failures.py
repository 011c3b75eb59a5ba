"""A subscriber that keeps failing the same way (a part it needs is down) is one traceback in the log, not one
per event, and the log says when it works again."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from callcenter.bus import Bus


@dataclass(frozen=True)
class Happened:
    n: int


class Flaky:
    def __init__(self) -> None:
        self.down = True
        self.seen: list[int] = []

    async def __call__(self, event: Happened) -> None:
        if self.down:
            raise ConnectionError("the database is unavailable")
        self.seen.append(event.n)


async def test_a_subscriber_failing_through_an_outage_logs_one_traceback_and_says_when_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = Bus()
    flaky = Flaky()
    others: list[int] = []
    bus.subscribe(Happened, flaky)
    bus.subscribe(Happened, lambda event: others.append(event.n))
    with caplog.at_level(logging.DEBUG, logger="callcenter.bus"):
        for n in range(50):
            bus.publish(Happened(n))
        await bus.drain()
        flaky.down = False
        bus.publish(Happened(50))
        await bus.drain()
    assert others == list(range(51))
    assert flaky.seen == [50]
    assert bus.failures == 50
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) == 1
    assert "Flaky" in tracebacks[0].getMessage()
    (back,) = [record for record in caplog.records if "works again" in record.getMessage()]
    assert "50 times" in back.getMessage()


def test_a_sync_subscriber_that_raises_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    bus = Bus()
    seen: list[int] = []

    def broken(event: Happened) -> None:
        raise ValueError(event.n)

    bus.subscribe(Happened, broken)
    bus.subscribe(Happened, lambda event: seen.append(event.n))
    for n in range(3):
        bus.publish(Happened(n))
    assert seen == [0, 1, 2]
    assert len([record for record in caplog.records if record.exc_info]) == 1
