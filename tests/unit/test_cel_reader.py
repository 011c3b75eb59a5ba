"""The CEL JSON-lines reader: whole lines only, appended lines, rotation and truncation, damaged lines."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from calls.cel import MAX_LINE, CelCall, CelEvent, CelReader, parse_line

CALLER = "1700000000.1"


def line(**fields: Any) -> bytes:
    values: dict[str, Any] = {"EventType": "CHAN_START", "EventTime": 1700000000.5, "UniqueID": CALLER}
    values["LinkedID"] = CALLER
    values.update(fields)
    return json.dumps(values).encode() + b"\n"


def event(kind: str, at: float, **changes: Any) -> CelEvent:
    values: dict[str, Any] = {"type": kind, "time": at, "uniqueid": CALLER, "linkedid": CALLER}
    values.update(changes)
    return CelEvent(**values)


def append(path: Path, *chunks: bytes) -> None:
    with path.open("ab") as handle:
        for chunk in chunks:
            handle.write(chunk)


# -- parse_line -----------------------------------------------------------------------------------------------


def test_a_line_with_every_field_is_parsed() -> None:
    raw = line(
        EventType="APP_START",
        AppName="Queue",
        AppData="general,tT,,,300",
        Num="+8613800000000",
        Exten="4000",
        Context="from-pstn",
        ChanName="PJSIP/pstn-00000001",
    )
    assert parse_line(raw.rstrip(b"\n")) == CelEvent(
        type="APP_START",
        time=1700000000.5,
        uniqueid=CALLER,
        linkedid=CALLER,
        app="Queue",
        app_data="general,tT,,,300",
        number="+8613800000000",
        exten="4000",
        context="from-pstn",
        channel="PJSIP/pstn-00000001",
    )


def test_keys_are_read_in_any_case_and_numbers_as_strings() -> None:
    raw = b'{"eventtype": "HANGUP", "EVENTTIME": "1700000001.25", "uniqueID": 17, "LINKEDID": "17", "num": null}'
    parsed = parse_line(raw)
    assert parsed is not None
    assert (parsed.type, parsed.time, parsed.uniqueid, parsed.linkedid, parsed.number) == (
        "HANGUP",
        1700000001.25,
        "17",
        "17",
        "",
    )


def test_hostile_caller_number_is_kept_verbatim_and_app_data_is_bounded() -> None:
    hostile = "<script>\"'; DROP TABLE call_records; --\r\n王"
    parsed = parse_line(line(Num=hostile, AppData="x" * 1000))
    assert parsed is not None
    assert parsed.number == hostile
    assert parsed.app_data == "x" * 256


def test_junk_and_wrong_shapes_are_refused() -> None:
    for raw in (
        b"",
        b"not json at all",
        b'{"EventType": "HANGUP", "EventTime": 1',  # a partial write
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b'"a string"',
        b"42",
        b"null",
    ):
        assert parse_line(raw) is None, raw


def test_a_line_missing_a_required_key_or_with_a_bad_time_is_refused() -> None:
    for missing in ("EventType", "EventTime", "UniqueID", "LinkedID"):
        values = json.loads(line())
        del values[missing]
        assert parse_line(json.dumps(values).encode()) is None, missing
    assert parse_line(line(EventTime="yesterday")) is None
    assert parse_line(line(EventTime=None)) is None
    assert parse_line(line(EventTime={"nested": 1})) is None


def test_an_over_long_line_is_refused_even_if_it_is_valid_json() -> None:
    padded = line(AppData="y" * (MAX_LINE + 10))
    assert json.loads(padded)["AppData"]  # valid JSON
    assert parse_line(padded) is None
    assert parse_line(line(AppData="y" * (MAX_LINE // 2))) is not None


# -- CelReader ------------------------------------------------------------------------------------------------


def test_a_missing_file_gives_nothing(tmp_path: Path) -> None:
    reader = CelReader(tmp_path / "absent.jsonl")
    assert reader.read_new() == []
    assert reader.skipped == 0


def test_only_whole_lines_are_read_and_the_rest_waits_for_the_next_call(tmp_path: Path) -> None:
    path = tmp_path / "cel.jsonl"
    second = line(EventType="HANGUP", EventTime=1700000009.0)
    path.write_bytes(line() + second[:20])
    reader = CelReader(path)
    assert [e.type for e in reader.read_new()] == ["CHAN_START"]
    assert reader.read_new() == []  # still half a line
    append(path, second[20:])
    assert [(e.type, e.time) for e in reader.read_new()] == [("HANGUP", 1700000009.0)]
    assert reader.skipped == 0
    assert [e.type for e in reader.calls[CALLER].events] == ["CHAN_START", "HANGUP"]


def test_a_file_with_no_newline_yet_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "cel.jsonl"
    path.write_bytes(line().rstrip(b"\n"))
    reader = CelReader(path)
    assert reader.read_new() == []
    append(path, b"\n")
    assert len(reader.read_new()) == 1


def test_appended_lines_are_picked_up_once(tmp_path: Path) -> None:
    path = tmp_path / "cel.jsonl"
    path.write_bytes(line())
    reader = CelReader(path)
    assert len(reader.read_new()) == 1
    assert reader.read_new() == []
    append(path, line(EventType="ANSWER"), b"\n", line(EventType="HANGUP", UniqueID="1700000000.2"))
    assert [e.type for e in reader.read_new()] == ["ANSWER", "HANGUP"]
    assert reader.read_new() == []
    assert len(reader.calls[CALLER].events) == 3


def test_damaged_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "cel.jsonl"
    path.write_bytes(line() + b"{broken\n" + b"[1]\n" + line(AppData="z" * (MAX_LINE + 1)) + line(EventType="ANSWER"))
    reader = CelReader(path)
    assert [e.type for e in reader.read_new()] == ["CHAN_START", "ANSWER"]
    assert reader.skipped == 3
    append(path, b"also junk\n")
    assert reader.read_new() == []
    assert reader.skipped == 4


def test_a_truncated_file_is_read_again_from_the_top(tmp_path: Path) -> None:
    path = tmp_path / "cel.jsonl"
    path.write_bytes(line() + line(EventType="ANSWER") + line(EventType="HANGUP"))
    reader = CelReader(path)
    assert len(reader.read_new()) == 3
    # Truncated in place (same inode), then a shorter content written.
    inode = path.stat().st_ino
    with path.open("r+b") as handle:
        handle.truncate(0)
    path.write_bytes(line(EventType="LINKEDID_END", LinkedID="1700000050.7", UniqueID="1700000050.7"))
    assert path.stat().st_ino == inode
    assert [e.linkedid for e in reader.read_new()] == ["1700000050.7"]


def test_a_rotated_file_is_read_from_the_top_even_if_it_is_longer(tmp_path: Path) -> None:
    path = tmp_path / "cel.jsonl"
    path.write_bytes(line())
    reader = CelReader(path)
    assert len(reader.read_new()) == 1
    # logrotate: the old file moves away, a new one (a new inode) takes its name and is already longer.
    # The old file still exists under its new name, so the new one cannot reuse its inode.
    os.rename(path, tmp_path / "cel.jsonl.1")
    fresh = [line(EventType=kind, LinkedID="1700000099.1", UniqueID="1700000099.1") for kind in ("A", "B", "C")]
    path.write_bytes(b"".join(fresh))
    assert [e.type for e in reader.read_new()] == ["A", "B", "C"]
    assert [e.type for e in reader.calls["1700000099.1"].events] == ["A", "B", "C"]


def test_forget_drops_a_call(tmp_path: Path) -> None:
    path = tmp_path / "cel.jsonl"
    path.write_bytes(line() + line(LinkedID="other", UniqueID="other"))
    reader = CelReader(path)
    reader.read_new()
    reader.forget(CALLER)
    reader.forget("never seen")
    assert set(reader.calls) == {"other"}


# -- CelCall --------------------------------------------------------------------------------------------------


def answered_call() -> CelCall:
    return CelCall(
        CALLER,
        [
            event("CHAN_START", 100.0, number="555", exten="4000", channel="PJSIP/pstn-00000001"),
            event("APP_START", 104.0, app="Queue", app_data="general,tT,,,300"),
            event("CHAN_START", 105.0, uniqueid="1700000000.2", channel="PJSIP/1001-00000002"),
            event("BRIDGE_ENTER", 110.0, channel="PJSIP/pstn-00000001"),
            event("BRIDGE_ENTER", 110.1, uniqueid="1700000000.2", channel="PJSIP/1001-00000002"),
            event("APP_START", 150.0, app="queue", app_data="expert,t"),
            event("HANGUP", 200.0),
            event("LINKEDID_END", 200.5),
        ],
    )


def test_a_call_knows_its_start_end_queue_and_seat() -> None:
    call = answered_call()
    assert call.started == 100.0
    assert call.ended == 200.5
    assert call.last == 200.5
    assert call.queue() == "general"
    assert call.answered_by() == "PJSIP/1001"
    first = call.first_channel()
    assert first is not None
    assert (first.number, first.exten) == ("555", "4000")


def test_a_call_still_running_has_no_end_and_one_never_answered_no_seat() -> None:
    call = CelCall(CALLER, [event("CHAN_START", 10.0), event("APP_START", 11.0, app="Queue", app_data=",t")])
    assert call.ended is None
    assert call.answered_by() == ""
    # Queue() with an empty first argument: a queue was joined, its name is unknown.
    assert call.queue() == "?"
    # The caller's own bridge entry never counts as a seat.
    call.events.append(event("BRIDGE_ENTER", 12.0, channel="PJSIP/pstn-00000001"))
    assert call.answered_by() == ""


def test_an_empty_call_has_no_times() -> None:
    call = CelCall(CALLER)
    assert (call.started, call.last, call.ended, call.queue(), call.first_channel()) == (0.0, 0.0, None, "", None)
