"""The live board from a live model and today's tally, its gauges, and how often it is sent."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, generate_latest

from callcenter.auth.permissions import Permission
from callcenter.bus import Bus
from callcenter.events import AgentStateChanged, CallOffered, QueueChanged
from callcenter.model import (
    AgentState,
    AgentStatus,
    Call,
    LiveModel,
    QueueMember,
    QueueSegment,
    QueueState,
    WaitingCaller,
)
from supervisor.board import BoardCollector, BoardService, SeatInfo, Tally, build_board
from supervisor.notifier import BoardNotifier

NOW = datetime(2030, 3, 4, 10, 30, tzinfo=UTC).timestamp()
ZONE = ZoneInfo("UTC")
HOSTILE = '<script>alert(1)</script>"\r\n; DROP TABLE call_records;--'


def segment_json(queue: str, agent: str | None, answered: datetime | None, wait: float, talk: float | None) -> str:
    return json.dumps(
        [
            {
                "queue": queue,
                "agent": agent,
                "entered": (answered or datetime(2030, 3, 4, 9, tzinfo=UTC)).isoformat(),
                "answered_at": answered.isoformat() if answered else None,
                "wait_time": wait,
                "talk_time": talk,
                "abandoned": answered is None,
            }
        ]
    )


def model() -> LiveModel:
    members = {
        interface: QueueMember(interface, interface, paused=interface == "PJSIP/1002")
        for interface in ("PJSIP/1001", "PJSIP/1002", "PJSIP/1003")
    }
    waiting = (
        WaitingCaller("u2", "PJSIP/pstn-2", "L2", "5550002", "Two", 1, NOW - 40),
        WaitingCaller("u3", "PJSIP/pstn-3", "L3", "5550003", "Three", 2, NOW - 10),
    )
    call = Call(
        linkedid="L1",
        started=NOW - 60,
        caller_number=HOSTILE,
        caller_name=HOSTILE,
        did="4000",
        queue="support",
        agent="PJSIP/1001",
        answered_at=NOW - 30,
        segments=(QueueSegment("support", NOW - 55, "PJSIP/1001", NOW - 30, 25.0),),
    )
    return LiveModel(
        calls={"L1": call},
        queues={
            "support": QueueState("support", waiting=waiting, members=members),
            "expert": QueueState("expert", members={"PJSIP/2001": QueueMember("PJSIP/2001", "x")}),
        },
        agents={
            "PJSIP/1001": AgentState(
                "PJSIP/1001", AgentStatus.ON_CALL, NOW - 30, queues=frozenset({"support"}), linkedid="L1"
            ),
            "PJSIP/1002": AgentState(
                "PJSIP/1002", AgentStatus.PAUSED, NOW - 600, "lunch", True, frozenset({"support"})
            ),
            "PJSIP/1003": AgentState("PJSIP/1003", AgentStatus.AVAILABLE, NOW - 5, queues=frozenset({"support"})),
            "PJSIP/2001": AgentState("PJSIP/2001", AgentStatus.WRAP_UP, NOW - 2, queues=frozenset({"expert"})),
            "PJSIP/1009": AgentState("PJSIP/1009", AgentStatus.LOGGED_OUT, NOW - 900),
        },
    )


def tally() -> Tally:
    result = Tally(ZONE, service_level=20)
    now = datetime.fromtimestamp(NOW, UTC)
    nine = datetime(2030, 3, 4, 9, 10, tzinfo=UTC)
    ten = datetime(2030, 3, 4, 10, 5, tzinfo=UTC)
    assert result.fold("A", nine, segment_json("support", "PJSIP/1001", nine, 10, 100), now)
    assert result.fold("B", ten, segment_json("support", "PJSIP/1001", ten, 30, 50), now)
    assert result.fold("C", ten, segment_json("support", None, None, 70, None), now)
    # Yesterday's call and the same record twice are not counted.
    yesterday = datetime(2030, 3, 3, 23, 0, tzinfo=UTC)
    assert result.fold("D", yesterday, segment_json("support", "PJSIP/1003", yesterday, 5, 5), now)
    assert not result.fold("A", nine, segment_json("support", "PJSIP/1001", nine, 10, 100), now)
    return result


def test_the_board_shows_every_seat_and_queue_with_today_s_figures() -> None:
    directory = {
        "PJSIP/1001": SeatInfo(1, "ann", "Ann Agent", ("blue",)),
        # Logged in to the engine, unknown to Asterisk (it lost the membership): shown logged out.
        "PJSIP/1005": SeatInfo(5, "eve", "Eve", ()),
    }
    board = build_board(model(), NOW, directory=directory, tally=tally(), version=7, engine={"ami_connected": True})
    assert board["version"] == 7
    assert board["day"] == "2030-03-04"
    seats = {seat["interface"]: seat for seat in board["seats"]}
    assert list(seats) == ["PJSIP/1001", "PJSIP/1002", "PJSIP/1003", "PJSIP/1005", "PJSIP/2001"]
    ann = seats["PJSIP/1001"]
    assert (ann["user"], ann["display_name"], ann["teams"], ann["state"]) == ("ann", "Ann Agent", ["blue"], "on_call")
    assert ann["state_seconds"] == 30.0
    assert ann["call"]["linkedid"] == "L1"
    assert ann["call"]["duration"] == 30.0
    assert ann["call"]["queue"] == "support"
    # The caller's text is passed on as it came; JSON escapes it.
    assert ann["call"]["caller_name"] == HOSTILE
    assert HOSTILE not in json.dumps(board)
    assert (ann["handled_today"], ann["handled_this_hour"]) == (2, 1)
    paused = seats["PJSIP/1002"]
    assert (paused["state"], paused["pause_reason"], paused["call"], paused["user"]) == ("paused", "lunch", None, None)
    assert seats["PJSIP/1005"]["state"] == "logged_out"
    assert seats["PJSIP/2001"]["call"] is None

    queues = {queue["queue"]: queue for queue in board["queues"]}
    support = queues["support"]
    assert (support["waiting"], support["longest_wait"]) == (2, 40.0)
    assert support["agents"] == {"available": 1, "busy": 1, "paused": 1}
    assert (support["offered"], support["answered"], support["abandoned"]) == (3, 2, 1)
    assert (support["answered_within_sl"], support["service_level"]) == (1, round(1 / 3, 4))
    assert support["abandon_rate"] == round(1 / 3, 4)
    assert (support["avg_wait"], support["avg_talk"]) == (20.0, 75.0)
    assert queues["expert"]["agents"] == {"available": 0, "busy": 1, "paused": 0}
    assert queues["expert"]["service_level"] is None
    assert board["totals"]["seats"]["on_call"] == 1
    assert board["totals"]["waiting"] == 2
    assert board["engine"] == {"ami_connected": True}


def test_a_new_day_starts_the_figures_again() -> None:
    counted = tally()
    tomorrow = NOW + 86400
    board = build_board(LiveModel(), tomorrow, directory={}, tally=counted)
    assert board["day"] == "2030-03-05"
    assert board["queues"] == []
    assert counted.seats == {}


@dataclass
class FakeBoard:
    model: LiveModel = field(default_factory=model)

    def snapshot(self) -> dict[str, Any]:
        return build_board(self.model, NOW, directory={}, tally=tally())


def test_the_gauges_carry_the_board_s_figures() -> None:
    registry = CollectorRegistry()
    board = BoardService.__new__(BoardService)
    fake = FakeBoard()
    board.snapshot = fake.snapshot  # type: ignore[method-assign]
    registry.register(BoardCollector(board, lambda: {"callcenter_spy_sessions_active": 2.0}))
    text = generate_latest(registry).decode()
    assert 'callcenter_queue_waiting{queue="support"} 2.0' in text
    assert 'callcenter_queue_agents{queue="support",state="paused"} 1.0' in text
    assert 'callcenter_queue_service_level{queue="support"} 0.3333' in text
    assert 'callcenter_seat_state{agent="PJSIP/1001",state="on_call"} 1.0' in text
    assert 'callcenter_seat_state{agent="PJSIP/1001",state="available"} 0.0' in text
    assert 'callcenter_seat_handled_today{agent="PJSIP/1001"} 2.0' in text
    assert "callcenter_spy_sessions_active 2.0" in text
    # A queue with nothing offered today has no service level rather than a made-up one.
    assert 'callcenter_queue_service_level{queue="expert"}' not in text


class FakeHub:
    def __init__(self, listening: bool = True) -> None:
        self.listening = listening
        self.sent: list[tuple[str, dict[str, Any], Permission | None, float | None]] = []

    def recipients(self, **_: Any) -> list[object]:
        return [object()] if self.listening else []

    def send(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        permission: Permission | None = None,
        coalesce: float | None = None,
    ) -> int:
        self.sent.append((event_type, data, permission, coalesce))
        return 1


class CountingBoard:
    def __init__(self) -> None:
        self.version = 0
        self.directory_refreshes = 0

    def touch(self) -> int:
        self.version += 1
        return self.version

    def snapshot(self) -> dict[str, Any]:
        return {"version": self.version}

    def refresh_directory(self) -> None:
        self.directory_refreshes += 1


async def test_changes_are_sent_at_once_then_at_most_once_per_interval_newest_last() -> None:
    bus = Bus()
    hub = FakeHub()
    board = CountingBoard()
    notifier = BoardNotifier(board, hub, bus, interval=0.3, refresh=60)  # type: ignore[arg-type]
    notifier.start()
    try:
        bus.publish(
            AgentStateChanged(agent="PJSIP/1001", old=AgentStatus.LOGGED_OUT, new=AgentStatus.AVAILABLE, since=NOW)
        )
        await asyncio.sleep(0.05)
        assert [data["version"] for _, data, _, _ in hub.sent] == [1]
        assert board.directory_refreshes == 1
        for _ in range(20):
            bus.publish(QueueChanged(queue="support", waiting=1, members=1))
        await asyncio.sleep(0.1)
        assert len(hub.sent) == 1
        await asyncio.sleep(0.35)
        assert [data["version"] for _, data, _, _ in hub.sent] == [1, 21]
        assert all(item[0] == "board" and item[2] is Permission.SEATS_READ and item[3] == 0.3 for item in hub.sent)
        assert notifier.builds == 2
    finally:
        await notifier.close()


async def test_nothing_is_built_while_no_supervisor_page_is_open() -> None:
    bus = Bus()
    hub = FakeHub(listening=False)
    board = CountingBoard()
    notifier = BoardNotifier(board, hub, bus, interval=0.05, refresh=60)  # type: ignore[arg-type]
    notifier.start()
    try:
        for _ in range(5):
            bus.publish(CallOffered(linkedid="L", queue="q", agent="a", channel="c", at=1.0))
            await asyncio.sleep(0.06)
        assert hub.sent == []
        assert notifier.builds == 0
        assert board.version == 5
    finally:
        await notifier.close()


def test_durations_grow_between_two_builds() -> None:
    first = build_board(model(), NOW, directory={}, tally=Tally(ZONE, 20))
    later = build_board(model(), NOW + timedelta(seconds=12).total_seconds(), directory={}, tally=Tally(ZONE, 20))
    assert first["seats"][0]["call"]["duration"] == 30.0
    assert later["seats"][0]["call"]["duration"] == 42.0
    assert later["queues"][1]["longest_wait"] == 52.0
