"""A call followed across an engine restart: the snapshot an earlier run left merged with what the live model saw
after it adopted the call (calls.records.merge_call), and an answer only Asterisk's event log saw
(calls.records.with_answer). The record must say answered, with its seat, wait and talk time."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from callcenter.model import Call, CallOutcome, QueueSegment
from calls.records import build_record, merge_call, with_answer

T0 = 1_900_000_000.0
LINKEDID = "1700000000.1"
SEAT = "PJSIP/1001"


def saved(**changes: Any) -> dict[str, Any]:
    """What the dead engine's last snapshot said (JSON of asdict(Call)): answered 4 s after joining the queue."""
    call = Call(
        LINKEDID,
        T0,
        caller_number="+8613800000000",
        caller_name="Wang Fang",
        did="4000",
        legs=(LINKEDID, "1700000000.2"),
        bridges=("b-1",),
        queue="general",
        queued_at=T0 + 10,
        agent=SEAT,
        answered_at=T0 + 14,
        wait_time=4.0,
        outcome=CallOutcome.ANSWERED,
        segments=(QueueSegment("general", T0 + 10, SEAT, T0 + 14, 4.0),),
    )
    return {**json.loads(json.dumps(asdict(call))), **changes}


def adopted(**changes: Any) -> dict[str, Any]:
    """What the restarted engine's live model ends: made from CoreShowChannels at T0 + 30 (no queue, no DID)."""
    call = Call(
        LINKEDID,
        T0 + 1,
        caller_number="+8613800000000",
        legs=(LINKEDID, "1700000000.2"),
        bridges=("b-1",),
        agent=SEAT,
        outcome=CallOutcome.ANSWERED,
        ended=T0 + 60,
    )
    return {**asdict(call), **changes}


def test_a_call_answered_before_the_crash_keeps_its_history_and_gets_its_talk_to_the_real_end() -> None:
    record = build_record(merge_call(saved(), adopted()), ivr={"flow": "main", "outcome": "queue", "path": []})
    assert record["outcome"] == "answered"
    assert record["agent"] == SEAT
    assert record["did"] == "4000"
    assert record["caller_name"] == "Wang Fang"
    assert record["started_at"].timestamp() == T0
    assert record["ended_at"].timestamp() == T0 + 60
    assert (record["wait_time"], record["talk_time"]) == (4.0, 46.0)
    (segment,) = json.loads(record["segments"])
    assert segment["agent"] == SEAT
    assert not segment["abandoned"]


def test_the_talk_time_agent_complete_gave_after_the_restart_is_kept() -> None:
    # The restarted model saw the AgentComplete: a segment in the same queue, answered at end - talk.
    later = adopted(
        segments=[asdict(QueueSegment("general", T0 + 10, SEAT, T0 + 14, 4.0, 46.0))], talk_time=46.0, wait_time=4.0
    )
    merged = merge_call(saved(), later)
    assert len(merged["segments"]) == 1
    record = build_record(merged)
    assert (record["outcome"], record["agent"], record["wait_time"], record["talk_time"]) == (
        "answered",
        SEAT,
        4.0,
        46.0,
    )


def test_a_caller_snapshotted_waiting_and_answered_while_the_engine_was_down_is_answered() -> None:
    waiting = saved(
        agent="",
        answered_at=None,
        wait_time=None,
        outcome="",
        segments=[asdict(QueueSegment("general", T0 + 10))],
    )
    # After the restart the AgentComplete said: answered at T0 + 20 after 10 s of hold, 40 s of talk.
    later = adopted(
        segments=[asdict(QueueSegment("general", T0 + 10, SEAT, T0 + 20, 10.0, 40.0))],
        answered_at=T0 + 20,
        wait_time=10.0,
        talk_time=40.0,
    )
    record = build_record(merge_call(waiting, later))
    assert record["outcome"] == "answered"
    assert (record["agent"], record["wait_time"], record["talk_time"]) == (SEAT, 10.0, 40.0)
    (segment,) = json.loads(record["segments"])
    assert segment["entered"] is not None
    assert segment["abandoned"] is False


def test_an_answer_only_the_event_log_saw_makes_the_snapshotted_caller_answered() -> None:
    waiting = saved(
        agent="", answered_at=None, wait_time=None, outcome="", segments=[asdict(QueueSegment("general", T0 + 10))]
    )
    call = with_answer(merge_call(waiting, adopted(agent="")), SEAT, T0 + 25, "general", fallback=T0 + 60)
    record = build_record(call)
    assert (record["outcome"], record["agent"], record["wait_time"], record["talk_time"]) == (
        "answered",
        SEAT,
        15.0,
        35.0,
    )


def test_an_answer_only_the_event_log_saw_fills_a_call_the_snapshot_had_before_its_queue() -> None:
    # The last snapshot was taken in the IVR: no queue, no segment. CEL says which queue and which seat.
    in_ivr = saved(queue="", queued_at=None, agent="", answered_at=None, wait_time=None, outcome="", segments=[])
    call = with_answer(in_ivr, SEAT, T0 + 25, "general", fallback=T0 + 60)
    record = build_record({**call, "ended": T0 + 60})
    assert record["outcome"] == "answered"
    assert record["agent"] == SEAT
    assert json.loads(record["queues"]) == ["general"]


def test_with_answer_leaves_an_answered_call_and_a_call_nobody_took_as_they_are() -> None:
    assert with_answer(saved(), "PJSIP/1002", T0 + 30, "general", fallback=T0 + 60)["agent"] == SEAT
    waiting = saved(agent="", answered_at=None, segments=[asdict(QueueSegment("general", T0 + 10))])
    assert with_answer(waiting, "", None, "general", fallback=T0 + 60) == waiting


def test_a_segment_with_a_seat_and_a_talk_time_is_answered_even_without_its_answer() -> None:
    call = adopted(queue="general", segments=[asdict(QueueSegment("general", T0 + 1, SEAT, None, None, 40.0))])
    assert build_record(call)["outcome"] == "answered"
