"""The parser's fast path (whole messages at once) gives exactly what reading line by line gives."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.ami.exceptions import AmiProtocolError
from callcenter.ami.message import AmiMessage, AmiParser

NEWCHANNEL = (
    b"Event: Newchannel\r\nPrivilege: call,all\r\nChannel: PJSIP/pstn-00000001\r\nCallerIDNum: 5550101\r\n"
    b"CallerIDName: Ann\r\nAccountCode: \r\nUniqueid: 1700000000.1\r\nLinkedid: 1700000000.1\r\n\r\n"
)


def reference(data: bytes) -> list[tuple[tuple[str, str], ...]]:
    """What AMI means, read the plainest way: lines, blank lines end messages, the first ':' splits a header."""
    messages: list[tuple[tuple[str, str], ...]] = []
    headers: list[tuple[str, str]] = []
    for raw in data.split(b"\n")[:-1]:
        line = raw.decode("utf-8", errors="replace").removesuffix("\r")
        if not line:
            if headers:
                messages.append(tuple(headers))
            headers = []
            continue
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.removeprefix(" ")))
    return messages


def feed_all(parser: AmiParser, chunks: list[bytes]) -> list[AmiMessage]:
    out: list[AmiMessage] = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out


_NAMES = st.sampled_from(["Event", "Channel", "CallerIDName", "Cause-txt", "X_y.z", "ChanVariable", "ActionID", "Q"])
_VALUES = st.one_of(
    st.sampled_from(["", " lead", "trail ", "x: y", "Event: Hangup", "a: b: c", ":", "b:", "sip:1@h:5060", "a\rb"]),
    st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]), max_size=30),
)
_SEPARATORS = st.sampled_from([": ", ": ", ": ", ":", ":  "])


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    messages = []
    for _ in range(draw(st.integers(1, 12))):
        lines = [b"Event: " + draw(st.sampled_from([b"Newchannel", b"Hangup", b"UserEvent"]))]
        for _ in range(draw(st.integers(0, 8))):
            lines.append((draw(_NAMES) + draw(_SEPARATORS) + draw(_VALUES)).encode())
        ending = draw(st.sampled_from([b"\r\n"] * 12 + [b"\n", b"\r\r\n"]))
        messages.append(ending.join(lines) + ending + draw(st.sampled_from([b"\r\n"] * 8 + [b"\n", b"\r\n\r\n"])))
    data = b"".join(messages)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    return data, cuts


@settings(max_examples=400, deadline=None)
@given(stream=streams())
def test_any_stream_of_valid_messages_reads_as_the_plain_reference(stream: tuple[bytes, list[int]]) -> None:
    data, cuts = stream
    bounds = [0, *cuts, len(data)]
    chunks = [data[a:b] for a, b in pairwise(bounds)]
    parsed = feed_all(AmiParser(expect_banner=False), chunks)
    expected = reference(data)
    assert [m.headers for m in parsed] == expected
    for message, headers in zip(parsed, expected, strict=True):
        assert len(message) == len(headers)
        for name, _ in headers:
            first = next(value for key, value in headers if key.lower() == name.lower())
            assert message.get(name.upper()) == first


def test_a_value_with_colon_space_stays_whole_and_neighbours_stay_fast() -> None:
    hostile = NEWCHANNEL.replace(b"CallerIDName: Ann", b"CallerIDName: Event: Hangup\r\nX: y")
    first, second, third = AmiParser(expect_banner=False).feed(NEWCHANNEL + hostile + NEWCHANNEL)
    assert second.get("CallerIDName") == "Event: Hangup"
    assert second.event == "Newchannel"
    assert first == third
    assert first.get("accountcode") == ""


def test_a_repeated_header_keeps_its_first_value_and_every_value_in_order() -> None:
    data = b"Event: UserEvent\r\nVariable: A=1\r\nvariable: B=2\r\nVARIABLE: C=3\r\n\r\n"
    (message,) = AmiParser(expect_banner=False).feed(data)
    assert message.get("Variable") == "A=1"
    assert message.get_all("variable") == ["A=1", "B=2", "C=3"]
    assert message.variables("Variable") == {"A": "1", "B": "2", "C": "3"}
    assert len(message) == 4
    assert message == AmiMessage.of(
        ("Event", "UserEvent"), ("Variable", "A=1"), ("variable", "B=2"), ("VARIABLE", "C=3")
    )
    assert hash(message) == hash(AmiMessage(message.headers))


def test_an_unfinished_message_is_completed_by_the_next_read() -> None:
    parser = AmiParser(expect_banner=False)
    assert parser.feed(NEWCHANNEL[:100]) == []
    assert parser.buffered < 100
    assert parser.pending_headers > 0
    (message,) = parser.feed(NEWCHANNEL[100:])
    assert message.get("Linkedid") == "1700000000.1"
    assert parser.buffered == 0
    assert parser.pending_headers == 0


def test_a_legacy_reply_whose_end_arrives_without_a_blank_line_is_not_held_back() -> None:
    data = b"Response: Follows\r\nActionID: 1\r\nline one\r\n--END COMMAND--\r\n"
    (reply,) = AmiParser(expect_banner=False).feed(data)
    assert reply.action_id == "1"
    assert reply.get_all("Output") == ["line one"]


def test_a_line_without_colon_space_drops_only_its_message() -> None:
    broken = NEWCHANNEL.replace(b"Privilege: call,all", b"Privilege:call,all\r\nnonsense")
    with pytest.raises(AmiProtocolError) as caught:
        AmiParser(expect_banner=False).feed(NEWCHANNEL + broken + NEWCHANNEL)
    assert caught.value.recoverable
    assert caught.value.raw == "nonsense"
    first, second = caught.value.messages
    assert first == second
    assert first.get("Privilege") == "call,all"
