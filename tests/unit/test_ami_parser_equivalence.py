"""The fast AMI parser (``AmiParser``, production) gives exactly what the reference parser (``ReferenceAmiParser``)
gives: the same messages out of the same ``feed`` calls, the same errors, the same state between calls.

Both parsers get the same bytes cut into the same pieces, and every ``feed`` is compared: the messages it returns
(type, every header in order, the lower-cased first values, their number), or the error it raises (type, text,
``raw``, recoverable or not, and the messages it carries), then ``banner`` and ``buffered``. ``pending_headers``
is only held to its bound on both sides: the fast parser also counts the complete lines it holds unparsed for the
fast path, the reference only the headers it has read.

What each parser means is pinned elsewhere (tests/unit/test_ami_message.py and test_ami_parser_paths.py for the
fast one, a few cases below for the reference): a change to either shows up here as a difference.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.ami.exceptions import AmiProtocolError
from callcenter.ami.message import AmiParser
from callcenter.ami.parser_reference import ReferenceAmiParser

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ami"
TRANSCRIPTS = sorted(FIXTURES.glob("*.ami"))
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
EVENT = b"Event: Newchannel\r\nPrivilege: call,all\r\nChannel: PJSIP/pstn-00000001\r\nUniqueid: 1795431853.0\r\n\r\n"
REPLY = b"Response: Success\r\nActionID: cc-1\r\nMessage: Authentication accepted\r\n\r\n"
FOLLOWS = (
    b"Response: Follows\r\nPrivilege: Command\r\nActionID: cc-9\r\nState: Up\n\nlast line\n--END COMMAND--\r\n\r\n"
)

Parser = AmiParser | ReferenceAmiParser


def outcome(parser: Parser, chunks: Sequence[bytes]) -> list[tuple[Any, ...]]:
    """What each ``feed`` gave, and the parser's state after it."""
    seen: list[tuple[Any, ...]] = []
    for chunk in chunks:
        try:
            result: tuple[Any, ...] = ("messages", _messages(parser.feed(chunk)))
        except AmiProtocolError as exc:
            result = ("error", type(exc), str(exc), exc.raw, exc.recoverable, _messages(exc.messages))
        assert parser.buffered <= parser.max_line + 1
        assert parser.pending_headers <= parser.max_headers
        seen.append((*result, parser.banner, parser.buffered))
    return seen


def _messages(messages: Sequence[Any]) -> list[tuple[Any, ...]]:
    return [(type(m), m.headers, dict(m.lowered), len(m)) for m in messages]


def assert_same(chunks: Sequence[bytes], **limits: Any) -> list[tuple[Any, ...]]:
    fast = outcome(AmiParser(**limits), chunks)
    reference = outcome(ReferenceAmiParser(**limits), chunks)
    for number, (got, wanted) in enumerate(zip(fast, reference, strict=True)):
        assert got == wanted, f"feed #{number} of {len(chunks)} ({chunks[number][:60]!r}...)"
    return reference


def cut(data: bytes, positions: Sequence[int]) -> list[bytes]:
    bounds = [0, *sorted(positions), len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


def blocks(data: bytes) -> list[bytes]:
    """A transcript as the banner line, then each message with its blank line."""
    banner, _, rest = data.partition(b"\r\n")
    return [banner + b"\r\n"] + [block + b"\r\n\r\n" for block in rest.split(b"\r\n\r\n")[:-1]]


def test_the_transcripts_are_there() -> None:
    assert len(TRANSCRIPTS) >= 3
    for path in TRANSCRIPTS:
        assert b"".join(blocks(path.read_bytes())) == path.read_bytes()


# -- the recorded transcripts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_a_transcript_fed_whole_and_byte_by_byte_reads_the_same(path: Path) -> None:
    data = path.read_bytes()
    (whole,) = assert_same([data])
    assert whole[0] == "messages"
    assert len(whole[1]) == len(blocks(data)) - 1
    assert_same([data[i : i + 1] for i in range(len(data))])
    for size in (2, 3, 7, 100, 1024):
        assert_same([data[i : i + size] for i in range(0, len(data), size)])


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_a_transcript_cut_at_every_boundary_reads_the_same(path: Path) -> None:
    """Every byte boundary of every message, with the parser where the transcript puts it: each message is fed
    with the one after it (and the first with the banner), cut once at each of its positions."""
    parts = blocks(path.read_bytes())
    head = parts[0] + parts[1]
    windows = [(True, head, parts[2]), *((False, a, b) for a, b in pairwise(parts[2:]))]
    for expect_banner, first, second in windows:
        data = first + second
        for position in range(len(first) + 1):
            assert_same(cut(data, [position]), expect_banner=expect_banner)


@settings(max_examples=60, deadline=None)
@given(
    index=st.integers(0, len(TRANSCRIPTS) - 1),
    seed=st.integers(0, 2**32 - 1),
    count=st.integers(1, 60),
    max_line=st.sampled_from([64, 128, 1024, 8192]),
)
def test_a_transcript_cut_at_random_boundaries_reads_the_same(index: int, seed: int, count: int, max_line: int) -> None:
    data = TRANSCRIPTS[index].read_bytes()
    positions = random.Random(seed).choices(range(len(data) + 1), k=count)
    assert_same(cut(data, positions), max_line=max_line, max_headers=16)


# -- hostile input --------------------------------------------------------------------------------------------

HOSTILE: dict[str, list[bytes]] = {
    # CR and LF
    "lf line ends": [BANNER.replace(b"\r\n", b"\n") + EVENT.replace(b"\r\n", b"\n") + REPLY],
    "lf blank line": [EVENT.replace(b"\r\n\r\n", b"\r\n\n") + REPLY],
    "cr lf cr": [EVENT.replace(b"\r\n\r\n", b"\n\r\n") + REPLY],
    "lone cr in a value": [b"Event: X\r\nCallerIDName: a\rb\r\n\r\n" + EVENT],
    "cr cr lf": [b"Event: X\r\nA: 1\r\r\n\r\n" + EVENT],
    "cr only line": [b"Event: X\r\n\r\r\n" + EVENT],
    "crs only": [b"Event: X\rA: 1\r\r" + EVENT],
    "blank lines between messages": [b"\r\n\r\n" + EVENT + b"\r\n\n\r\n" + EVENT + b"\r\n"],
    "cut between cr and lf": [EVENT[:-1], EVENT[-1:] + EVENT[:-3], EVENT[-3:]],
    "cut before the blank line": [EVENT[:-2], b"\r\n" + EVENT],
    "blank line alone in a read": [EVENT, b"\r\n", EVENT],
    # headers
    "missing colon": [b"Event: X\r\nnonsense\r\nMore: x\r\n\r\n" + EVENT],
    "colon first": [b"Event: X\r\n: value\r\n\r\n" + EVENT],
    "blank name": [b"Event: X\r\n  : value\r\n\r\n" + EVENT],
    "no space after the colon": [b"Event:X\r\nA:1\r\n\r\n" + EVENT],
    "two spaces after the colon": [b"Event:  X\r\nA:  1\r\n\r\n" + EVENT],
    "name with spaces": [b"Event: X\r\n Chan nel : y\r\n\r\n" + EVENT],
    "value holding colon space": [b"Event: X\r\nCallerIDName: Event: Hangup\r\nA: b: c\r\n\r\n" + EVENT],
    "repeated names": [b"Event: X\r\nVariable: A=1\r\nvariable: B=2\r\nVARIABLE: C=3\r\n\r\n" + EVENT],
    "two bad messages": [b"Event: X\r\nbad one\r\n\r\nEvent: Y\r\nbad two\r\n\r\n" + EVENT],
    # non-UTF-8
    "invalid utf-8": [b"Event: X\r\nCallerIDName: caf\xe9 \xff\xfe\r\n\xff: v\r\n\r\n" + EVENT],
    "utf-8 cut by a read": [b"Event: X\r\nCallerIDName: Zo\xc3", b"\xab\r\n\r\n" + EVENT],
    "nul and controls": [b"Event: X\r\nA: \x00\x01\x1b[2J\r\n\x00: v\r\n\r\n" + EVENT],
    "non-ascii name": [b"Event: X\r\nN\xc3\xa4me: v\r\n\xc2\xa0Pad\xc2\xa0: v\r\n\r\n" + EVENT],
    # long lines
    "line of exactly the cap": [b"Event: X\r\nData: " + b"v" * (1024 - 6) + b"\r\n\r\n" + EVENT],
    "line one over the cap": [b"Event: X\r\nData: " + b"v" * (1024 - 5) + b"\r\n\r\n" + EVENT],
    "over-long line whole": [EVENT + b"Event: X\r\nData: " + b"v" * 5000 + b"\r\nA: 1\r\n\r\n" + EVENT],
    "over-long line in pieces": [b"Event: X\r\nData: ", *[b"y" * 700] * 8, b"\r\nA: 1\r\n\r\n" + EVENT],
    "cap plus cr held": [b"Event: X\r\nData: " + b"v" * (1024 - 6) + b"\r", b"\n\r\n" + EVENT],
    "over-long non-ascii line": [b"Event: X\r\nData: " + "é".encode() * 600 + b"\r\n\r\n" + EVENT],
    "over-long non-ascii line in pieces": [b"Event: X\r\nData: ", "é".encode() * 600, b"\r\n\r\n" + EVENT],
    "over-long line among non-ascii": [b"Event: X\r\nA: \xc3\xa9\r\nData: " + b"v" * 2000 + b"\r\n\r\n" + EVENT],
    "over-long name": [b"Event: X\r\n" + b"N" * 3000 + b": v\r\n\r\n" + EVENT],
    # many headers
    "exactly max headers": [b"Event: Big\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(127)) + b"\r\n" + EVENT],
    "one header too many": [b"Event: Big\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(128)) + b"\r\n" + EVENT],
    "very many headers": [b"Event: Big\r\n" + b"H: v\r\n" * 20000 + b"\r\n" + EVENT],
    "very many headers in pieces": [b"Event: Big\r\n", *[b"H: v\r\n" * 100] * 30, b"\r\n" + EVENT],
    # the banner
    "not a banner": [b"HTTP/1.1 400 Bad Request\r\n\r\n", EVENT],
    "blank first line": [b"\r\n" + BANNER + EVENT],
    "banner in pieces": [BANNER[:5], BANNER[5:-1], BANNER[-1:] + EVENT],
    "endless banner": [b"A" * 500, b"A" * 500, b"A" * 500, EVENT],
    "over-long banner whole": [b"Asterisk Call Manager/" + b"9" * 2000 + b"\r\n" + EVENT],
    "non-ascii over-long banner": ["é".encode() * 600 + b"\r\n" + EVENT],
    "two banners": [BANNER + BANNER + EVENT],
    # legacy command output
    "follows": [FOLLOWS + EVENT],
    "follows in pieces": [FOLLOWS[:30], FOLLOWS[30:61], FOLLOWS[61:] + EVENT],
    "follows without blank line": [b"Response: Follows\r\nActionID: 1\r\nline\r\n--END COMMAND--\r\n", EVENT],
    "follows after a blank line in a later read": [
        EVENT,
        b"\r\nResponse: Follows\r\nActionID: 1\r\nx\r\n--END COMMAND--\r\n",
    ],
    "follows with marker after text": [b"Response: Follows\r\nActionID: 1\r\noutput--END COMMAND--\r\n\r\n" + EVENT],
    "follows headers after output": [b"Response: Follows\r\nout\r\nActionID: 2\r\nPrivilege: x\r\n--END COMMAND--\r\n"],
    "follows shaped like headers": [
        EVENT + b"Response: Follows\r\nActionID: 1\r\nState: Up--END COMMAND--\r\n\r\n" + EVENT
    ],
    "follows lowercase": [b"response: follows\r\nactionid: 1\r\n--END COMMAND--\r\n\r\n" + EVENT],
    "follows not first": [b"ActionID: 1\r\nResponse: Follows\r\nx\r\n\r\n" + EVENT],
    "follows with an over-long line": [b"Response: Follows\r\n" + b"o" * 2000 + b"\r\nmore\r\n\r\n" + EVENT],
    "follows with too many lines": [b"Response: Follows\r\n" + b"line\r\n" * 200 + b"--END COMMAND--\r\n" + EVENT],
    "follows never ended": [b"Response: Follows\r\nActionID: 1\r\nout\r\n\r\n" + EVENT],
}


@pytest.mark.parametrize("limits", [{}, {"expect_banner": False}, {"expect_banner": False, "max_line": 40}])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_reads_the_same(name: str, limits: dict[str, Any]) -> None:
    chunks = list(HOSTILE[name])
    if limits.get("expect_banner", True) and not name.startswith(("not a banner", "blank first", "banner", "endless")):
        chunks[0] = BANNER + chunks[0]
    assert_same(chunks, **limits)
    data = b"".join(chunks)
    # Whole, and a byte at a time where that stays quick.
    assert_same([data], **limits)
    if len(data) <= 6000:
        assert_same([data[i : i + 1] for i in range(len(data))], **limits)


_PIECES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"\r\n",
            b"\n",
            b"\r",
            b":",
            b": ",
            b" ",
            b"Event: X\r\n",
            b"Response: Success\r\n",
            b"Response: Follows\r\n",
            b"Privilege: Command\r\n",
            b"ActionID: 1\r\n",
            b"--END COMMAND--",
            b"Channel: PJSIP/1--END COMMAND--\r\n",
            b"nonsense\r\n",
            b"a: b: c\r\n",
            b"\xff\xfe\xc3",
            "Zoë".encode(),
            b"v" * 70,
            b"H: v\r\n" * 9,
            BANNER,
            EVENT,
            REPLY,
        ]
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(_PIECES, max_size=30),
    cuts=st.lists(st.integers(0, 4000), max_size=10),
    expect_banner=st.booleans(),
    max_line=st.sampled_from([16, 40, 100, 1024]),
    max_headers=st.sampled_from([1, 4, 16, 128]),
)
def test_any_bytes_cut_anywhere_read_the_same(
    pieces: list[bytes], cuts: list[int], expect_banner: bool, max_line: int, max_headers: int
) -> None:
    data = b"".join(pieces)
    chunks = cut(data, [min(c, len(data)) for c in cuts])
    assert_same(chunks, expect_banner=expect_banner, max_line=max_line, max_headers=max_headers)


@st.composite
def _damaged_transcripts(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    data = bytearray(TRANSCRIPTS[draw(st.integers(0, len(TRANSCRIPTS) - 1))].read_bytes())
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        if draw(st.booleans()):
            del data[at : at + draw(st.integers(1, 8))]
        else:
            data[at:at] = draw(
                st.sampled_from(
                    [
                        b"\r",
                        b"\n",
                        b"\r\n",
                        b"\r\n\r\n",
                        b":",
                        b" ",
                        b"\xff",
                        b"\xc3",
                        b"x" * 1100,
                        b"Response: Follows\r\n",
                    ]
                )
            )
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=12))
    return bytes(data), cuts


@settings(max_examples=150, deadline=None)
@given(damaged=_damaged_transcripts())
def test_a_damaged_transcript_reads_the_same(damaged: tuple[bytes, list[int]]) -> None:
    data, cuts = damaged
    assert_same(cut(data, cuts))


# -- the reference says what is meant -------------------------------------------------------------------------


def test_the_reference_reads_the_fixtures_as_asterisk_wrote_them() -> None:
    parser = ReferenceAmiParser()
    messages = parser.feed((FIXTURES / "answered.ami").read_bytes())
    assert parser.banner == "Asterisk Call Manager/11.0.0"
    assert messages[0].response == "Success"
    assert messages[1].event == "QueueMemberAdded"
    assert messages[1].get("pausedreason") == ""
    assert parser.buffered == parser.pending_headers == 0


def test_the_reference_drops_a_damaged_message_and_keeps_the_rest() -> None:
    parser = ReferenceAmiParser(expect_banner=False)
    with pytest.raises(AmiProtocolError) as caught:
        parser.feed(b"Event: X\r\nnonsense\r\n\r\n" + EVENT + b"Event: Y\r\nA: " + b"v" * 2000 + b"\r\n\r\n")
    assert caught.value.recoverable
    assert str(caught.value) == "message dropped: not a header line (and 1 more): 'nonsense'"
    assert [m.event for m in caught.value.messages] == ["Newchannel"]


def test_the_reference_collects_legacy_command_output() -> None:
    reply, event = ReferenceAmiParser(expect_banner=False).feed(FOLLOWS + EVENT)
    assert reply.headers == (
        ("Response", "Follows"),
        ("Privilege", "Command"),
        ("ActionID", "cc-9"),
        ("Output", "State: Up"),
        ("Output", ""),
        ("Output", "last line"),
    )
    assert event.event == "Newchannel"


def test_the_reference_refuses_a_stream_without_banner_for_good() -> None:
    parser = ReferenceAmiParser()
    with pytest.raises(AmiProtocolError) as caught:
        parser.feed(b"SSH-2.0-OpenSSH\r\n")
    assert not caught.value.recoverable
    assert caught.value.raw == "SSH-2.0-OpenSSH"
    with pytest.raises(AmiProtocolError, match="not an AMI banner"):
        parser.feed(EVENT)
