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
    second = line(EventType="LINKEDID_END", EventTime=1700000009.0)
    path.write_bytes(line() + second[:20])
    reader = CelReader(path)
    assert [e.type for e in reader.read_new()] == ["CHAN_START"]
    assert reader.read_new() == []  # still half a line
    append(path, second[20:])
    assert [(e.type, e.time) for e in reader.read_new()] == [("LINKEDID_END", 1700000009.0)]
    assert reader.skipped == 0
    assert [e.type for e in reader.calls[CALLER].events] == ["CHAN_START", "LINKEDID_END"]


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
    append(path, line(EventType="APP_START", AppName="Queue"), b"\n", line(EventType="LINKEDID_END"))
    assert [e.type for e in reader.read_new()] == ["APP_START", "LINKEDID_END"]
    assert reader.read_new() == []
    assert len(reader.calls[CALLER].events) == 3


def test_damaged_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "cel.jsonl"
    path.write_bytes(
        line() + b"{broken\n" + b"[1]\n" + line(AppData="z" * (MAX_LINE + 1)) + line(EventType="LINKEDID_END")
    )
    reader = CelReader(path)
    assert [e.type for e in reader.read_new()] == ["CHAN_START", "LINKEDID_END"]
    assert reader.skipped == 3
    append(path, b"also junk\n")
    assert reader.read_new() == []
    assert reader.skipped == 4


def test_a_truncated_file_is_read_again_from_the_top(tmp_path: Path) -> None:
    path = tmp_path / "cel.jsonl"
    path.write_bytes(line() + line(EventType="APP_START", AppName="Queue") + line(EventType="LINKEDID_END"))
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
    kinds = ("CHAN_START", "BRIDGE_ENTER", "LINKEDID_END")
    fresh = [line(EventType=kind, LinkedID="1700000099.1", UniqueID="1700000099.2") for kind in kinds]
    fresh[0] = line(EventType="CHAN_START", LinkedID="1700000099.1", UniqueID="1700000099.1")
    path.write_bytes(b"".join(fresh))
    assert [e.type for e in reader.read_new()] == list(kinds)
    assert [e.type for e in reader.calls["1700000099.1"].events] == list(kinds)


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


# -- Asterisk's own lines, what is kept, chunks and the position ----------------------------------------------

# Lines as asterisk-conf/cel_custom.conf makes Asterisk 22 write them (from the sandbox's log), shortened to one call.
ASTERISK_CALL = [
    b'{"eventtype":"CHAN_START","eventtime":1796627361.322985,"uniqueid":"1796627361.0","linkedid":"1796627361.0",'
    b'"appname":"","appdata":"","num":"5550777","exten":"4000","context":"from-pstn","channame":"PJSIP/pstn-00000000"}',
    b'{"eventtype":"APP_START","eventtime":1796627361.323720,"uniqueid":"1796627361.0","linkedid":"1796627361.0",'
    b'"appname":"AGI","appdata":"agi://127.0.0.1:4673/ivr?linkedid=1796627361.0&did=4000","num":"5550777",'
    b'"exten":"s","context":"cc-inbound","channame":"PJSIP/pstn-00000000"}',
    b'{"eventtype":"APP_START","eventtime":1796627361.828614,"uniqueid":"1796627361.0","linkedid":"1796627361.0",'
    b'"appname":"Queue","appdata":"support","num":"5550777","exten":"s","context":"cc-inbound",'
    b'"channame":"PJSIP/pstn-00000000"}',
    b'{"eventtype":"CHAN_START","eventtime":1796627361.829259,"uniqueid":"1796627361.1","linkedid":"1796627361.0",'
    b'"appname":"","appdata":"","num":"1001","exten":"s","context":"from-phones","channame":"PJSIP/1001-00000001"}',
    b'{"eventtype":"ANSWER","eventtime":1796627362.149723,"uniqueid":"1796627361.1","linkedid":"1796627361.0",'
    b'"appname":"AppQueue","appdata":"(Outgoing Line)","num":"1001","exten":"s","context":"from-phones",'
    b'"channame":"PJSIP/1001-00000001"}',
    b'{"eventtype":"BRIDGE_ENTER","eventtime":1796627362.164670,"uniqueid":"1796627361.1","linkedid":"1796627361.0",'
    b'"appname":"AppQueue","appdata":"(Outgoing Line)","num":"1001","exten":"s","context":"from-phones",'
    b'"channame":"PJSIP/1001-00000001"}',
    b'{"eventtype":"BRIDGE_ENTER","eventtime":1796627362.164972,"uniqueid":"1796627361.0","linkedid":"1796627361.0",'
    b'"appname":"Queue","appdata":"support","num":"5550777","exten":"s","context":"cc-inbound",'
    b'"channame":"PJSIP/pstn-00000000"}',
    b'{"eventtype":"HANGUP","eventtime":1796627375.334090,"uniqueid":"1796627361.0","linkedid":"1796627361.0",'
    b'"appname":"","appdata":"","num":"5550777","exten":"s","context":"cc-inbound","channame":"PJSIP/pstn-00000000"}',
    b'{"eventtype":"CHAN_END","eventtime":1796627375.334090,"uniqueid":"1796627361.0","linkedid":"1796627361.0",'
    b'"appname":"","appdata":"","num":"5550777","exten":"s","context":"cc-inbound","channame":"PJSIP/pstn-00000000"}',
    b'{"eventtype":"LINKEDID_END","eventtime":1796627375.334532,"uniqueid":"1796627361.1",'
    b'"linkedid":"1796627361.0","appname":"AppQueue","appdata":"(Outgoing Line)","num":"1001","exten":"s",'
    b'"context":"from-phones","channame":"PJSIP/1001-00000001"}',
]


def test_asterisks_lines_are_kept_as_parse_line_reads_them_and_only_those_reconciliation_reads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cel.jsonl"
    path.write_bytes(b"\n".join(ASTERISK_CALL) + b"\n")
    reader = CelReader(path)
    kept = reader.read_new()
    # The caller's start, the queue (not the AGI), the seat's bridge entry (not the caller's), the end.
    assert kept == [parse_line(ASTERISK_CALL[n]) for n in (0, 2, 5, 9)]
    call = reader.calls["1796627361.0"]
    assert (call.whole, call.queue(), call.answer()) == (True, "support", ("PJSIP/1001", 1796627362.164670))
    assert (call.started, call.ended, call.last) == (1796627361.322985, 1796627375.334532, 1796627375.334532)
    assert reader.skipped == 0


def test_a_value_with_an_escape_is_read_by_the_json_decoder(tmp_path: Path) -> None:
    path = tmp_path / "cel.jsonl"
    escaped = ASTERISK_CALL[0].replace(b'"num":"5550777"', b'"num":"\\"Boss\\" <555\\u738b>"')
    path.write_bytes(escaped + b"\n")
    (event,) = CelReader(path).read_new()
    assert event.number == '"Boss" <555王>'


def test_a_hangup_without_an_end_moves_the_last_sight(tmp_path: Path) -> None:
    path = tmp_path / "cel.jsonl"
    path.write_bytes(b"\n".join(ASTERISK_CALL[:8]) + b"\n")
    reader = CelReader(path)
    reader.read_new()
    call = reader.calls["1796627361.0"]
    assert call.ended is None
    assert call.last == 1796627375.334090


def test_chunks_are_bounded_and_the_position_waits_for_the_first_call_still_kept(tmp_path: Path) -> None:
    path = tmp_path / "cel.jsonl"
    calls = [(f"17000{n:05d}.0", f"17000{n:05d}.1") for n in range(400)]
    lines = []
    for linkedid, seat in calls:
        lines.append(line(EventType="CHAN_START", UniqueID=linkedid, LinkedID=linkedid, AppData="p" * 60))
        lines.append(line(EventType="BRIDGE_ENTER", UniqueID=seat, LinkedID=linkedid, ChanName="PJSIP/1001-1"))
    path.write_bytes(b"".join(lines))
    size = path.stat().st_size
    reader = CelReader(path, chunk_bytes=1)  # the smallest chunk a reader takes: two longest lines
    steps = 0
    while reader.read_chunk() is not None:
        steps += 1
        assert reader.bytes_read <= steps * reader.chunk_bytes
    assert reader.bytes_read == reader.offset == size
    assert steps >= size // reader.chunk_bytes
    # Nothing settled: a restart must read again from the first call's first line.
    inode = path.stat().st_ino
    assert reader.position() == (inode, 0)
    first, second = calls[0][0], calls[1][0]
    assert reader.position(settling={first}) == (inode, len(lines[0]) + len(lines[1]))
    reader.settle(first)
    reader.settle(second)
    assert reader.position() == (inode, sum(len(item) for item in lines[:4]))
    for linkedid, _ in calls[2:]:
        reader.settle(linkedid)
    assert reader.position() == (inode, size)
    # A settled call's late lines are dropped at once.
    append(path, line(EventType="LINKEDID_END", UniqueID=first, LinkedID=first))
    assert reader.read_new() == []
    assert reader.calls == {}


def test_a_resumed_reader_starts_at_its_offset_and_from_the_top_of_another_file(tmp_path: Path) -> None:
    path = tmp_path / "cel.jsonl"
    path.write_bytes(line() + line(EventType="CHAN_START", UniqueID="2.0", LinkedID="2.0"))
    inode = path.stat().st_ino
    reader = CelReader(path)
    reader.resume(inode, len(line()))
    assert [e.linkedid for e in reader.read_new()] == ["2.0"]
    other = CelReader(path)
    other.resume(inode + 1, len(line()))  # the stored position is of a file that was rotated away
    assert [e.linkedid for e in other.read_new()] == [CALLER, "2.0"]
