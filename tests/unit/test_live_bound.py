"""The live model's bound: a flood of invented channels stops at ``max_channels`` and the model is rebuilt."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from prometheus_client import generate_latest

from callcenter.ami.actions import AmiAction
from callcenter.ami.message import AmiMessage, AmiResult
from callcenter.ami.reducer import HANDLERS, apply
from callcenter.bus import Bus
from callcenter.config import ConfigError, load_config
from callcenter.live import CHANNEL_EVENTS, LiveService
from callcenter.metrics import Metrics
from callcenter.model import LiveModel


def ev(name: str, **headers: str) -> AmiMessage:
    return AmiMessage.of(("Event", name), *headers.items())


def newchannel(uid: str) -> AmiMessage:
    return ev("Newchannel", Channel=f"PJSIP/x-{uid}", Uniqueid=uid, Linkedid=uid, ChannelState="4")


class FakeConnection:
    """What LiveService needs of an AmiConnection: ``send`` answers the three listings of a resync."""

    def __init__(self, **handlers: Any) -> None:
        self.handlers = handlers
        self.connected = True
        self.sent: list[str] = []
        # What Asterisk really has: the resync rebuilds the model from this.
        self.real = ["real-1", "real-2"]

    async def send(self, action: AmiAction, **_options: Any) -> AmiResult:
        self.sent.append(action.name)
        events: tuple[AmiMessage, ...] = ()
        if action.name == "CoreShowChannels":
            events = tuple(
                ev("CoreShowChannel", Channel=f"PJSIP/x-{uid}", Uniqueid=uid, Linkedid=uid, Duration="00:00:05")
                for uid in self.real
            )
        return AmiResult(AmiMessage.of(("Response", "Success")), events)

    def clear_needs_resync(self) -> None:
        pass


async def settle(live: LiveService, resyncs: int) -> None:
    for _ in range(200):
        if live.resyncs >= resyncs:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{resyncs} resyncs expected, {live.resyncs} seen")


def bound_warnings(caplog: pytest.LogCaptureFixture) -> int:
    return sum("live model full" in record.getMessage() for record in caplog.records)


async def test_a_flood_of_invented_channels_stops_at_the_bound_and_the_model_is_rebuilt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    live = LiveService(FakeConnection, Bus(), max_channels=10)
    connection: FakeConnection = live.connection  # type: ignore[assignment]
    with caplog.at_level(logging.INFO, logger="callcenter.live"):
        for number in range(30):
            live._on_event(newchannel(f"bogus-{number}"))
        # Never more than the bound; the other 20 counted, one warning, one resync asked for.
        assert len(live.model.channels) == 10
        assert live.channels_refused == 20
        assert bound_warnings(caplog) == 1
        # At the bound, what concerns a channel the model has is still folded; a Hangup frees a place.
        live._on_event(ev("Newstate", Uniqueid="bogus-0", ChannelState="6", ChannelStateDesc="Up"))
        assert live.model.channels["bogus-0"].state == 6
        live._on_event(ev("Hangup", Uniqueid="bogus-1"))
        assert "bogus-1" not in live.model.channels
        await settle(live, 1)
        assert connection.sent == ["CoreShowChannels", "QueueStatus", "QueueSummary"]
        # Rebuilt from Asterisk's listings: only what it really has.
        assert set(live.model.channels) == {"real-1", "real-2"}
        # A new burst after the model went back under the bound: one more warning and one more resync.
        for number in range(30, 50):
            live._on_event(newchannel(f"bogus-{number}"))
        assert len(live.model.channels) == 10
        assert live.channels_refused == 32
        assert bound_warnings(caplog) == 2
        await settle(live, 2)
    assert set(live.model.channels) == {"real-1", "real-2"}
    assert connection.sent.count("CoreShowChannels") == 2


async def test_below_the_bound_nothing_is_refused_or_resynced() -> None:
    live = LiveService(FakeConnection, Bus(), max_channels=100)
    for number in range(100):
        live._on_event(newchannel(f"c-{number}"))
    await asyncio.sleep(0)
    assert len(live.model.channels) == 100
    assert live.channels_refused == 0
    assert live.connection.sent == []  # type: ignore[attr-defined]


def test_the_bound_knows_every_event_that_adds_a_channel() -> None:
    # Each handler gets an event about a channel the model has never seen; those that add it must be bounded.
    headers = {
        "Uniqueid": "u-1",
        "Linkedid": "u-1",
        "Channel": "PJSIP/x-1",
        "BridgeUniqueid": "b-1",
        "Queue": "support",
        "Interface": "PJSIP/1001",
        "MemberName": "Ann",
        "DestUniqueid": "u-1",
        "DestLinkedid": "u-1",
        "DestChannel": "PJSIP/x-1",
        "Position": "1",
    }
    adders = {
        name
        for name in HANDLERS
        if apply(LiveModel(), ev(name, **headers), 100.0)[0].channels.keys() - LiveModel().channels.keys()
    }
    assert adders
    assert adders <= CHANNEL_EVENTS


def test_the_bound_is_configured_by_ami_max_channels() -> None:
    assert load_config(environ={}).ami.max_channels == 20_000
    assert load_config(environ={"CALLCENTER_AMI_MAX_CHANNELS": "500"}).ami.max_channels == 500
    with pytest.raises(ConfigError, match="max_channels"):
        load_config(environ={"CALLCENTER_AMI_MAX_CHANNELS": "0"})


async def test_refused_channels_and_events_before_login_are_in_the_metrics() -> None:
    live = LiveService(FakeConnection, Bus(), max_channels=1)
    live.connection.stats = type("Stats", (), {"reconnects": 0, "events": 3, "dropped": 0, "events_before_login": 7})()  # type: ignore[attr-defined]
    live._on_event(newchannel("a"))
    live._on_event(newchannel("b"))
    await settle(live, 1)
    metrics = Metrics()
    metrics.watch_ami(live)  # type: ignore[arg-type]
    text = generate_latest(metrics.registry).decode()
    assert "callcenter_live_channels_refused 1.0" in text
    assert "callcenter_ami_events_before_login 7.0" in text
