"""What a finished call's record says: build_record and outcome_of, from calls as the live model ends them."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import pytest

from callcenter.model import Call, CallOutcome, QueueSegment
from calls.records import RecordOutcome, Segment, build_record, outcome_of
from ivr_flows.steps import Outcome as IvrOutcome

T0 = 1_900_000_000.0


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def ended_call(**changes: Any) -> dict[str, Any]:
    """A call as the call recorder reads ``CallEnded``'s: ``dataclasses.asdict`` of the live model's Call."""
    values: dict[str, Any] = {
        "linkedid": "1700000000.1",
        "started": T0,
        "caller_number": "+8613800000000",
        "caller_name": "Wang Fang",
        "did": "4000",
        "legs": ("1700000000.1",),
        "ended": T0 + 100,
    }
    values.update(changes)
    return asdict(Call(**values))


def ivr_result(flow: str = "main", outcome: str = "queued", **changes: Any) -> dict[str, Any]:
    """What ``IvrEnded`` carries (its fields, ivr_flows.engine.CallResult.data), trimmed to what records read."""
    data: dict[str, Any] = {
        "linkedid": "1700000000.1",
        "flow": flow,
        "outcome": outcome,
        "path": [{"flow": flow, "node": "start", "step": "menu", "digits": "1", "result": "ok"}],
        "choice": None,
        "voicemails": [],
        "error": None,
    }
    data.update(changes)
    return data


def test_an_answered_call_credits_the_agent_with_its_wait_and_talk() -> None:
    segment = QueueSegment("general", T0 + 10, "PJSIP/1001", answered_at=T0 + 15, wait_time=5.0, talk_time=60.0)
    call = ended_call(
        queue="general",
        queued_at=T0 + 10,
        agent="PJSIP/1001",
        answered_at=T0 + 15,
        wait_time=5.0,
        talk_time=60.0,
        outcome=CallOutcome.ANSWERED,
        bridges=("b-1",),
        segments=(segment,),
    )
    record = build_record(call, ivr=ivr_result(choice="2"), recording_ids=["rec-1"])
    assert record["outcome"] == "answered"
    assert (record["agent"], record["expert"]) == ("PJSIP/1001", None)
    assert (record["wait_time"], record["talk_time"]) == (5.0, 60.0)
    assert record["started_at"] == at(T0)
    assert record["ended_at"] == at(T0 + 100)
    assert record["direction"] == "inbound"
    assert record["did"] == "4000"
    assert record["ivr_flow"] == "main"
    assert record["ivr_outcome"] == "queued"
    assert record["ivr_choice"] == "2"
    assert json.loads(record["ivr_path"])[0]["digits"] == "1"
    assert json.loads(record["queues"]) == ["general"]
    assert json.loads(record["recording_ids"]) == ["rec-1"]
    assert record["source"] == "live"
    (stored,) = json.loads(record["segments"])
    assert stored == {
        "queue": "general",
        "agent": "PJSIP/1001",
        "entered": at(T0 + 10).isoformat(),
        "answered_at": at(T0 + 15).isoformat(),
        "wait_time": 5.0,
        "talk_time": 60.0,
        "abandoned": False,
    }


def test_a_caller_who_hangs_up_in_the_queue_is_abandoned_with_the_wait() -> None:
    segment = QueueSegment("general", T0 + 10, wait_time=42.5, abandoned=True)
    call = ended_call(
        queue="general", queued_at=T0 + 10, wait_time=42.5, outcome=CallOutcome.ABANDONED, segments=(segment,)
    )
    record = build_record(call, ivr=ivr_result())
    assert record["outcome"] == "abandoned"
    assert record["wait_time"] == 42.5
    assert record["talk_time"] is None
    assert (record["agent"], record["expert"]) == (None, None)
    assert json.loads(record["segments"])[0]["abandoned"] is True


def test_a_flow_that_ends_the_call_itself_is_completed_in_ivr() -> None:
    record = build_record(ended_call(), ivr=ivr_result(outcome="hangup"))
    assert record["outcome"] == "completed_in_ivr"
    assert json.loads(record["queues"]) == []
    assert record["wait_time"] is None


def test_a_caller_who_hangs_up_in_the_menus_is_abandoned_in_ivr() -> None:
    record = build_record(ended_call(), ivr=ivr_result(outcome=str(IvrOutcome.HUNG_UP_IN_IVR)))
    assert record["outcome"] == "abandoned_in_ivr"


def test_an_ivr_that_failed_is_a_failed_call_not_an_abandoned_one() -> None:
    assert build_record(ended_call(), ivr=ivr_result(outcome="error", error="AgiConnectionLost"))["outcome"] == "failed"
    assert build_record(ended_call(), ivr=ivr_result(outcome="hangup", error="RuntimeError"))["outcome"] == "failed"


@pytest.mark.parametrize("closed", ["after_hours", "holiday"])
def test_after_hours_without_a_message_is_after_hours(closed: str) -> None:
    # The call starts in the main flow, which jumps to the closed flow: the path says so.
    path = [
        {"flow": "main", "node": "start", "step": "hours", "result": "closed"},
        {"flow": closed, "node": "start", "step": "play", "result": "ok"},
    ]
    record = build_record(ended_call(), ivr=ivr_result(flow="main", outcome="hangup", path=path))
    assert record["outcome"] == "after_hours"
    # The flow the call ran in first is named as such; the closed flow is visible in the path.
    assert record["ivr_flow"] == "main"
    assert [step["flow"] for step in json.loads(record["ivr_path"])] == ["main", closed]
    # Started in the closed flow directly.
    assert build_record(ended_call(), ivr=ivr_result(flow=closed, outcome="hangup"))["outcome"] == "after_hours"


def test_a_message_left_after_hours_is_voicemail() -> None:
    message = {"intent": "complaint", "path": "/rec/voicemail/x.wav", "duration": 12.0, "ended_by": "hangup"}
    ivr = ivr_result(flow="after_hours", outcome="voicemail", voicemails=[message], choice="1")
    record = build_record(ended_call(), ivr=ivr)
    assert record["outcome"] == "voicemail"
    assert record["ivr_choice"] == "1"


def test_a_voicemail_left_for_an_expert_is_voicemail_when_no_seat_answered() -> None:
    # Seen only through its expert segment (a snapshot, say): nobody answered, the caller left a message.
    waited = Segment("expert", T0 + 50, wait_time=60.0)
    assert outcome_of([waited], None, {"outcome": "voicemail"}) is RecordOutcome.VOICEMAIL
    # Without the message it would have been an abandoned wait.
    assert outcome_of([waited], None, {"outcome": "waiting"}) is RecordOutcome.ABANDONED


def test_an_answered_call_stays_answered_whatever_came_after() -> None:
    answered = Segment("general", T0, "PJSIP/1001", answered_at=T0 + 3, wait_time=3.0)
    assert outcome_of([answered], None, {"outcome": "voicemail"}) is RecordOutcome.ANSWERED
    closed = ivr_result(flow="after_hours", voicemails=[{"intent": "repair"}])
    assert outcome_of([answered], closed, None) is RecordOutcome.ANSWERED


def test_a_call_without_ivr_or_queue_is_answered_only_if_it_was_bridged() -> None:
    assert outcome_of([], None, None, bridged=True) is RecordOutcome.ANSWERED
    assert outcome_of([], None, None) is RecordOutcome.FAILED
    record = build_record(ended_call(did="", bridges=("b-9",)))
    assert (record["outcome"], record["direction"]) == ("answered", "internal")


def test_an_expert_handoff_credits_agent_and_expert_separately() -> None:
    first = QueueSegment("general", T0 + 5, "PJSIP/1001", answered_at=T0 + 9, wait_time=4.0, talk_time=30.0)
    second = QueueSegment("expert", T0 + 40, "PJSIP/2001", answered_at=T0 + 52, wait_time=12.0, talk_time=45.5)
    call = ended_call(
        queue="expert",
        queued_at=T0 + 40,
        agent="PJSIP/2001",
        answered_at=T0 + 52,
        wait_time=12.0,
        talk_time=45.5,
        outcome=CallOutcome.ANSWERED,
        bridges=("b-1", "b-2"),
        segments=(first, second),
    )
    handoff = {
        "linkedid": call["linkedid"],
        "notes": "Router model X2 keeps rebooting; firmware 1.2",
        "outcome": "answered",
    }
    record = build_record(call, handoff=handoff, expert_queue="expert")
    assert record["outcome"] == "answered"
    assert record["agent"] == "PJSIP/1001"
    assert record["expert"] == "PJSIP/2001"
    assert record["wait_time"] == 16.0
    assert record["talk_time"] == 75.5
    assert record["handoff_notes"] == "Router model X2 keeps rebooting; firmware 1.2"
    assert json.loads(record["queues"]) == ["general", "expert"]
    assert [item["agent"] for item in json.loads(record["segments"])] == ["PJSIP/1001", "PJSIP/2001"]


def test_the_expert_queue_is_told_not_guessed() -> None:
    first = QueueSegment("support", T0, "PJSIP/1001", answered_at=T0 + 1, wait_time=1.0, talk_time=2.0)
    second = QueueSegment("specialists", T0 + 5, "PJSIP/2001", answered_at=T0 + 6, wait_time=1.0, talk_time=2.0)
    call = ended_call(segments=(first, second), agent="PJSIP/2001", answered_at=T0 + 6)
    record = build_record(call, expert_queue="specialists")
    assert (record["agent"], record["expert"]) == ("PJSIP/1001", "PJSIP/2001")


def test_hostile_caller_text_is_kept_verbatim() -> None:
    name = "<script>alert('x')</script>\"; DROP TABLE call_records; --\r\nX-Injected: 1 王芳"
    number = "' OR 1=1 --\r\n<b>" + "9" * 1024
    notes = "<img src=x onerror=alert(1)>\r\nDELETE FROM expert_handoffs;" + "n" * 1024
    choice = "<i>1</i>"
    call = ended_call(caller_name=name, caller_number=number)
    record = build_record(call, ivr=ivr_result(choice=choice), handoff={"notes": notes})
    assert record["caller_name"] == name
    assert record["caller_number"] == number
    assert len(record["caller_number"]) > 1024
    assert record["handoff_notes"] == notes
    assert record["ivr_choice"] == choice


def test_only_the_columns_with_a_limit_are_clipped() -> None:
    record = build_record(ended_call(did="4" * 40), ivr=ivr_result(choice="7" * 100))
    assert record["did"] == "4" * 32
    assert record["ivr_choice"] == "7" * 64


def test_a_call_with_only_scalar_queue_fields_gets_one_segment() -> None:
    call = ended_call(
        queue="general",
        queued_at=T0 + 10,
        agent="PJSIP/1002",
        answered_at=T0 + 18,
        wait_time=8.0,
        talk_time=20.0,
        outcome=CallOutcome.ANSWERED,
    )
    assert call["segments"] == ()
    record = build_record(call)
    assert record["outcome"] == "answered"
    assert record["agent"] == "PJSIP/1002"
    assert (record["wait_time"], record["talk_time"]) == (8.0, 20.0)
    (segment,) = json.loads(record["segments"])
    assert segment["queue"] == "general"
    assert segment["entered"] == at(T0 + 10).isoformat()
    assert segment["answered_at"] == at(T0 + 18).isoformat()


def test_a_call_with_only_scalar_fields_that_was_abandoned_stays_abandoned() -> None:
    call = ended_call(queue="general", queued_at=T0 + 10, wait_time=30.0, outcome=CallOutcome.ABANDONED)
    record = build_record(call)
    assert record["outcome"] == "abandoned"
    assert record["wait_time"] == 30.0
    assert json.loads(record["segments"])[0]["abandoned"] is True


def test_the_end_comes_from_the_caller_when_given_and_never_precedes_the_start() -> None:
    call = ended_call(ended=None)
    assert build_record(call)["ended_at"] == at(T0)
    assert build_record(call, ended=T0 + 77)["ended_at"] == at(T0 + 77)
    assert build_record(call, ended=T0 - 5)["ended_at"] == at(T0)
    assert build_record(call, source="reconciled")["source"] == "reconciled"


def test_segment_from_plain_data_defaults_what_is_missing() -> None:
    segment = Segment.of({"queue": "general", "entered": None, "agent": None})
    assert segment == Segment(queue="general", entered=0.0)
    assert segment.as_json()["entered"] is None


def test_the_api_shows_each_ivr_step_time_as_iso_text_however_it_was_stored() -> None:
    from calls.http import ivr_path_json

    path = [{"node": "entry", "at": T0 + 1.5}, {"node": "menu", "at": "2026-11-23T02:00:00+00:00"}, "odd"]
    record = build_record(ended_call(), ivr=ivr_result(path=path))
    shown = ivr_path_json(record["ivr_path"])
    assert shown[0] == {"node": "entry", "at": at(T0 + 1.5).isoformat()}
    # Records written when the engine stored ISO text read back unchanged.
    assert shown[1:] == [{"node": "menu", "at": "2026-11-23T02:00:00+00:00"}, "odd"]
