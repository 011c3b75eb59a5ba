"""What a finished call's record says, made from the live model's call and what the IVR and the handoff added.

Pure: :func:`build_record` takes plain data and returns the row's values; no clock, no database. The outcome
follows one rule set (docs/api.md, "Call records"):

- ``answered``: a seat answered in some queue (an expert handoff keeps the call answered; a seat with a talk
  time answered even when the answer itself was not seen);
- ``voicemail``: the caller left a message (after hours, or for an expert nobody took);
- ``after_hours``: the closed or holiday flow ran and the caller left no message;
- ``abandoned``: the caller hung up while waiting in a queue;
- ``abandoned_in_ivr``: the caller hung up in the menus;
- ``completed_in_ivr``: the flow itself ended the call (self-service: the caller got what they needed there);
- ``failed``: anything else (the IVR failed, Asterisk went away, a desk call nobody answered).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from calls.ports import FinishedCall

CLOSED_FLOWS = frozenset({"after_hours", "holiday"})


class RecordOutcome(StrEnum):
    ANSWERED = "answered"
    VOICEMAIL = "voicemail"
    AFTER_HOURS = "after_hours"
    ABANDONED = "abandoned"
    ABANDONED_IN_IVR = "abandoned_in_ivr"
    COMPLETED_IN_IVR = "completed_in_ivr"
    FAILED = "failed"


# Digits kept from the end of a caller number for finding a caller's earlier calls whatever way the number was
# written (+86 138..., 0138..., 138...): the subscriber part; the CRM's rules then confirm each match.
TAIL_DIGITS = 8


def caller_tail(number: str) -> str:
    digits = "".join(ch for ch in number if "0" <= ch <= "9")
    return digits[-TAIL_DIGITS:] if len(digits) >= 3 else ""


def when(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True, slots=True)
class Segment:
    queue: str
    entered: float
    agent: str = ""
    answered_at: float | None = None
    wait_time: float | None = None
    talk_time: float | None = None
    abandoned: bool = False

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Segment:
        return cls(
            queue=str(data.get("queue", "")),
            entered=float(data.get("entered") or 0.0),
            agent=str(data.get("agent") or ""),
            answered_at=data.get("answered_at"),
            wait_time=data.get("wait_time"),
            talk_time=data.get("talk_time"),
            abandoned=bool(data.get("abandoned", False)),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "agent": self.agent or None,
            "entered": when(self.entered).isoformat() if self.entered else None,  # type: ignore[union-attr]
            "answered_at": when(self.answered_at).isoformat() if self.answered_at else None,  # type: ignore[union-attr]
            "wait_time": self.wait_time,
            "talk_time": self.talk_time,
            "abandoned": self.abandoned,
        }


def _closed_flow(ivr: Mapping[str, Any] | None) -> bool:
    if not ivr:
        return False
    if ivr.get("flow") in CLOSED_FLOWS:
        return True
    return any(step.get("flow") in CLOSED_FLOWS for step in ivr.get("path") or () if isinstance(step, Mapping))


def outcome_of(
    segments: Sequence[Segment],
    ivr: Mapping[str, Any] | None,
    handoff: Mapping[str, Any] | None,
    *,
    bridged: bool = False,
) -> RecordOutcome:
    # A segment with a seat and a talk time was answered even if its answer was not seen (a crash in between).
    if any(
        segment.answered_at is not None or (segment.agent and segment.talk_time is not None) for segment in segments
    ):
        return RecordOutcome.ANSWERED
    if (ivr and ivr.get("voicemails")) or (handoff and handoff.get("outcome") == "voicemail"):
        return RecordOutcome.VOICEMAIL
    if _closed_flow(ivr):
        return RecordOutcome.AFTER_HOURS
    if segments:
        return RecordOutcome.ABANDONED
    if ivr:
        if ivr.get("error"):
            return RecordOutcome.FAILED
        if ivr.get("outcome") == "hung_up_in_ivr":
            return RecordOutcome.ABANDONED_IN_IVR
        if ivr.get("outcome") == "hangup":
            return RecordOutcome.COMPLETED_IN_IVR
        return RecordOutcome.FAILED
    return RecordOutcome.ANSWERED if bridged else RecordOutcome.FAILED


def _segment_key(data: Mapping[str, Any]) -> str:
    return str(data.get("queue", ""))


def merge_call(saved: Mapping[str, Any], seen: Mapping[str, Any]) -> dict[str, Any]:
    """One call from two views of it: ``saved``, a snapshot an earlier run of the engine left (the call's history
    from its start: caller, DID, queue, segments, answer), and ``seen``, what the live model saw after it adopted
    the call from Asterisk's listings (legs, bridges, the end, an answer or a talk time it saw itself).

    What happened first is the snapshot's to say; what happened later, the live model's. A queue segment the live
    model made for the queue the snapshot's last segment is in is the same stay in that queue (the model could
    not know when it began): the two are folded, keeping the snapshot's entry, and each side's answer where the
    other has none."""
    call = {**saved, **{key: value for key, value in seen.items() if value not in (None, "", (), [])}}
    for key in ("started",):
        times = [float(item[key]) for item in (saved, seen) if item.get(key)]
        if times:
            call[key] = min(times)
    for key in ("caller_number", "caller_name", "did", "queue", "queued_at", "direction"):
        if saved.get(key) not in (None, ""):
            call[key] = saved[key]
    for key in ("agent", "answered_at", "wait_time"):
        if saved.get(key) not in (None, ""):
            call[key] = saved[key]
    for key in ("legs", "bridges", "transfers"):
        merged: list[Any] = []
        for item in [*(saved.get(key) or ()), *(seen.get(key) or ())]:
            if item not in merged:
                merged.append(item)
        call[key] = merged
    old = [dict(item) for item in saved.get("segments") or ()]
    new = [dict(item) for item in seen.get("segments") or ()]
    if old and new and _segment_key(new[0]) == _segment_key(old[-1]):
        first, last = new.pop(0), old[-1]
        folded = {**first, **{key: value for key, value in last.items() if value not in (None, "")}}
        folded["entered"] = last.get("entered") or first.get("entered")
        folded["abandoned"] = bool(last.get("abandoned")) and first.get("answered_at") is None
        if last.get("talk_time") is None:
            folded["talk_time"] = first.get("talk_time")
        old[-1] = folded
    call["segments"] = [*old, *new]
    ended = seen.get("ended")
    if ended is not None:
        # The live model closes the talk of the segments it saw answered; the snapshot's answers close here.
        call = with_end(call, float(ended))
    if any(item.get("answered_at") is not None for item in call["segments"]) or call.get("answered_at"):
        call["outcome"] = "answered"
    return call


def with_end(call: Mapping[str, Any], ended: float) -> dict[str, Any]:
    """``call`` over at ``ended``: what was answered and has no talk time yet talked until then (as the live model
    closes a call it sees end)."""
    result = dict(call)
    segments = [dict(item) for item in call.get("segments") or ()]
    for segment in segments:
        if segment.get("answered_at") is not None and segment.get("talk_time") is None:
            segment["talk_time"] = max(0.0, ended - float(segment["answered_at"]))
    result["segments"] = segments
    if call.get("answered_at") is not None and call.get("talk_time") is None:
        result["talk_time"] = max(0.0, ended - float(call["answered_at"]))
    return result


def with_queue(call: Mapping[str, Any], queue: str, joined: float | None, *, ended: float) -> dict[str, Any]:
    """``call`` as having waited in ``queue`` from ``joined`` to ``ended`` with nobody answering, when Asterisk's event
    log shows the queue and no seat, and the engine's own view of the call (a snapshot taken in the IVR) has no queue
    at all: without it the record would say ``failed`` instead of ``abandoned``."""
    if not queue or call.get("queue") or call.get("segments") or joined is None:
        return dict(call)
    segment = {"queue": queue, "entered": joined, "abandoned": True, "wait_time": max(0.0, ended - joined)}
    return {**call, "queue": queue, "queued_at": joined, "segments": [segment], "outcome": "abandoned"}


def with_answer(
    call: Mapping[str, Any],
    seat: str,
    at: float | None,
    queue: str,
    *,
    fallback: float,
    ended: float | None = None,
    joined: float | None = None,
) -> dict[str, Any]:
    """``call`` answered by ``seat`` at ``at`` in ``queue``, as Asterisk's event log says (a seat's channel entered
    the caller's bridge), when the engine did not see it: its queue segment gets the seat, the answer and the wait,
    and the talk up to ``ended`` (the call's own end when not given); a segment made here starts at ``joined`` (when
    the log shows the call joining the queue). A call already answered is left as it is."""
    result = dict(call)
    segments = [dict(item) for item in call.get("segments") or ()]
    if call.get("answered_at") or any(item.get("answered_at") is not None for item in segments):
        return result
    at = at if at is not None else fallback
    queue = str(call.get("queue") or queue)
    if not seat or not queue:
        return result
    result.update(agent=call.get("agent") or seat, answered_at=at, queue=queue, outcome="answered")
    for segment in reversed(segments):
        if segment.get("queue") == queue:
            entered = float(segment.get("entered") or at)
            segment.update(
                agent=segment.get("agent") or seat, answered_at=at, wait_time=max(0.0, at - entered), abandoned=False
            )
            break
    else:
        entered = float(joined or call.get("queued_at") or call.get("started") or at)
        segments.append(
            {"queue": queue, "entered": entered, "agent": seat, "answered_at": at, "wait_time": max(0.0, at - entered)}
        )
        result.setdefault("queued_at", entered)
    end = ended if ended is not None else call.get("ended")
    if end is not None:
        talk = max(0.0, float(end) - at)
        result["talk_time"] = talk
        for segment in segments:
            if segment.get("answered_at") == at and segment.get("talk_time") is None:
                segment["talk_time"] = talk
    result["segments"] = segments
    return result


def build_record(
    call: Mapping[str, Any],
    *,
    ivr: Mapping[str, Any] | None = None,
    handoff: Mapping[str, Any] | None = None,
    recording_ids: Sequence[str] = (),
    source: str = "live",
    ended: float | None = None,
    expert_queue: str = "expert",
) -> dict[str, Any]:
    """The values of one call_records row from a live-model call (``dataclasses.asdict(Call)``)."""
    segments = [Segment.of(item) for item in call.get("segments") or ()]
    if not segments and call.get("queue"):
        # A call seen only through a snapshot (or from before segments existed) has its queue fields only.
        segments = [
            Segment(
                queue=str(call["queue"]),
                entered=float(call.get("queued_at") or call.get("started") or 0.0),
                agent=str(call.get("agent") or ""),
                answered_at=call.get("answered_at"),
                wait_time=call.get("wait_time"),
                talk_time=call.get("talk_time"),
                abandoned=call.get("outcome") == "abandoned",
            )
        ]
    started = float(call.get("started") or 0.0)
    end = ended if ended is not None else call.get("ended")
    end = float(end) if end is not None else started
    waits = [segment.wait_time for segment in segments if segment.wait_time is not None]
    talks = [segment.talk_time for segment in segments if segment.talk_time is not None]
    answered = [segment for segment in segments if segment.agent and segment.answered_at is not None]
    first_agent = next((segment.agent for segment in answered if segment.queue != expert_queue), None)
    expert = next((segment.agent for segment in answered if segment.queue == expert_queue), None)
    if first_agent is None and expert is None and call.get("agent"):
        first_agent = str(call["agent"])
    outcome = outcome_of(segments, ivr, handoff, bridged=bool(call.get("bridges")))
    did = str(call.get("did") or "")
    if not did.lstrip("+").isdigit():
        # An originated call's first channel starts at extension "s": that is no number anybody dialled.
        did = ""
    return {
        "linkedid": str(call["linkedid"]),
        "direction": str(call.get("direction") or ("inbound" if did or ivr else "internal")),
        "caller_number": str(call.get("caller_number") or ""),
        "caller_name": str(call.get("caller_name") or ""),
        "did": did[:32],
        "started_at": when(started),
        "ended_at": when(max(end, started)),
        "outcome": str(outcome),
        "ivr_flow": (ivr or {}).get("flow"),
        "ivr_outcome": (ivr or {}).get("outcome"),
        "ivr_choice": ((ivr or {}).get("choice") or None) and str((ivr or {}).get("choice"))[:64],
        "ivr_path": json.dumps(list((ivr or {}).get("path") or []), default=str),
        "queues": json.dumps([segment.queue for segment in segments]),
        "segments": json.dumps([segment.as_json() for segment in segments]),
        "wait_time": round(sum(waits), 3) if waits else None,
        "talk_time": round(sum(talks), 3) if talks else None,
        "agent": first_agent,
        "expert": expert,
        "handoff_notes": (handoff or {}).get("notes"),
        "recording_ids": json.dumps(list(recording_ids)),
        "service_record_id": call.get("service_record_id"),
        "source": source,
    }


_FINISHED_FIELDS = tuple(field.name for field in fields(FinishedCall))


def finished_call(values: Mapping[str, Any]) -> FinishedCall:
    """A record as other packages read it (:class:`calls.ports.FinishedCall`), from the values of its row
    (:func:`build_record`'s, or a row's columns)."""
    return FinishedCall(**{name: values[name] for name in _FINISHED_FIELDS})
