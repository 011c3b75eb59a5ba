"""Pure AMI parsing and building: the parser fed bytes as Asterisk 22 writes them, the injection guard, the actions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.ami import actions
from callcenter.ami.exceptions import AmiInjectionError, AmiProtocolError
from callcenter.ami.message import MAX_HEADERS, MAX_LINE, AmiMessage, AmiParser, build_action

BANNER = b"Asterisk Call Manager/10.0.0\r\n"
LOGIN_OK = b"Response: Success\r\nActionID: cc-1\r\nMessage: Authentication accepted\r\n\r\n"
FULLY_BOOTED = (
    b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 12\r\nLastReload: 12\r\nStatus: Fully Booted\r\n\r\n"
)
# A Newchannel as Asterisk 22 writes it, with a caller whose display name tries to look like AMI.
NEWCHANNEL = (
    "Event: Newchannel\r\n"
    "Privilege: call,all\r\n"
    "Channel: PJSIP/pstn-00000007\r\n"
    "ChannelState: 0\r\n"
    "CallerIDNum: 5551234\r\n"
    "CallerIDName:  Zoë\\r\\nEvent: Hangup; DROP TABLE calls \r\n"
    "ConnectedLineName: <unknown>\r\n"
    "Uniqueid: 1700000000.9\r\n"
    "Linkedid: 1700000000.9\r\n"
    "ChanVariable: CC_ACTION=queue\r\n"
    "ChanVariable: CC_QUEUE=support\r\n"
    "\r\n"
).encode()


def parse_all(data: bytes, *, chunk: int | None = None, banner: bool = True) -> list[AmiMessage]:
    parser = AmiParser(expect_banner=banner)
    if chunk is None:
        return parser.feed(data)
    out: list[AmiMessage] = []
    for start in range(0, len(data), chunk):
        out += parser.feed(data[start : start + chunk])
    return out


def test_banner_reply_and_events_parse_in_order() -> None:
    parser = AmiParser()
    messages = parser.feed(BANNER + LOGIN_OK + FULLY_BOOTED + NEWCHANNEL)
    assert parser.banner == "Asterisk Call Manager/10.0.0"
    assert [m.response or m.event for m in messages] == ["Success", "FullyBooted", "Newchannel"]
    reply = messages[0]
    assert reply.is_response
    assert not reply.is_event
    assert reply.ok
    assert reply.action_id == "cc-1"
    assert reply["message"] == "Authentication accepted"


def test_hostile_caller_name_is_kept_verbatim_as_one_value() -> None:
    (event,) = parse_all(NEWCHANNEL, banner=False)
    # Only the one space after the colon is Asterisk's; the rest belongs to the caller.
    assert event.get("CallerIDName") == " Zoë\\r\\nEvent: Hangup; DROP TABLE calls "
    assert event.event == "Newchannel"
    assert "Hangup" not in [v for k, v in event.headers if k == "Event"]


def test_repeated_headers_are_kept_and_lookup_ignores_case() -> None:
    (event,) = parse_all(NEWCHANNEL, banner=False)
    assert event.get_all("chanvariable") == ["CC_ACTION=queue", "CC_QUEUE=support"]
    assert event.variables() == {"CC_ACTION": "queue", "CC_QUEUE": "support"}
    assert event.get("CHANNEL") == event["channel"] == "PJSIP/pstn-00000007"
    assert "linkedid" in event
    assert "Nope" not in event
    assert event.get("Nope", "default") == "default"
    with pytest.raises(KeyError):
        event["Nope"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_any_split_of_the_stream_gives_the_same_messages(chunk: int) -> None:
    stream = BANNER + LOGIN_OK + FULLY_BOOTED + NEWCHANNEL
    assert parse_all(stream, chunk=chunk) == parse_all(stream)


def test_lf_only_line_endings_are_tolerated() -> None:
    crlf = parse_all(BANNER + LOGIN_OK + NEWCHANNEL)
    lf = parse_all((BANNER + LOGIN_OK + NEWCHANNEL).replace(b"\r\n", b"\n"))
    assert lf == crlf


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    (event,) = parse_all(b"Event: Newchannel\r\nCallerIDName: caf\xe9 \xff\r\n\r\n", banner=False)
    assert event.get("CallerIDName") == "caf\ufffd \ufffd"


def test_blank_lines_between_messages_are_ignored() -> None:
    assert len(parse_all(b"\r\n\r\n" + FULLY_BOOTED + b"\r\n" + FULLY_BOOTED, banner=False)) == 2


def test_a_stream_that_does_not_start_with_the_banner_is_refused_for_good() -> None:
    parser = AmiParser()
    with pytest.raises(AmiProtocolError) as caught:
        parser.feed(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert not caught.value.recoverable
    assert "HTTP/1.1" in caught.value.raw
    with pytest.raises(AmiProtocolError):
        parser.feed(LOGIN_OK)


def test_an_endless_banner_is_refused_without_buffering_it() -> None:
    parser = AmiParser()
    assert parser.feed(b"A" * 500) == []
    assert parser.feed(b"A" * 500) == []
    with pytest.raises(AmiProtocolError, match="banner"):
        parser.feed(b"A" * 500)
    assert parser.buffered == 0


def test_an_overlong_line_drops_its_message_only_and_the_stream_goes_on() -> None:
    parser = AmiParser(expect_banner=False)
    long_name = b"x" * (MAX_LINE + 10)
    data = FULLY_BOOTED + b"Event: Newchannel\r\nCallerIDName: " + long_name + b"\r\n\r\n" + LOGIN_OK
    with pytest.raises(AmiProtocolError) as caught:
        parser.feed(data)
    assert caught.value.recoverable
    assert [m.event or m.response for m in caught.value.messages] == ["FullyBooted", "Success"]
    assert parser.feed(FULLY_BOOTED)[0].event == "FullyBooted"


def test_an_overlong_line_arriving_in_pieces_is_never_held_whole() -> None:
    parser = AmiParser(expect_banner=False)
    parser.feed(b"Event: Newchannel\r\nCallerIDName: ")
    for _ in range(50):
        assert parser.feed(b"y" * 700) == []
        assert parser.buffered <= MAX_LINE + 1
    with pytest.raises(AmiProtocolError) as caught:
        parser.feed(b"\r\nUniqueid: 1\r\n\r\n" + FULLY_BOOTED)
    assert caught.value.recoverable
    assert [m.event for m in caught.value.messages] == ["FullyBooted"]


def test_a_line_of_exactly_the_cap_is_accepted() -> None:
    value = "v" * (MAX_LINE - len("Data: "))
    (event,) = parse_all(f"Event: E\r\nData: {value}\r\n\r\n".encode(), banner=False)
    assert event.get("Data") == value


def test_too_many_headers_drop_the_message_and_keep_memory_bounded() -> None:
    parser = AmiParser(expect_banner=False)
    body = b"Event: Big\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(MAX_HEADERS + 50))
    assert parser.feed(body) == []
    assert parser.pending_headers <= MAX_HEADERS
    with pytest.raises(AmiProtocolError) as caught:
        parser.feed(b"\r\n" + FULLY_BOOTED)
    assert "128 headers" in str(caught.value)
    assert [m.event for m in caught.value.messages] == ["FullyBooted"]


def test_a_line_without_a_colon_drops_its_message() -> None:
    with pytest.raises(AmiProtocolError) as caught:
        parse_all(b"Event: X\r\nnonsense\r\n\r\n" + FULLY_BOOTED, banner=False)
    assert caught.value.recoverable
    assert caught.value.raw == "nonsense"
    assert len(caught.value.messages) == 1


def test_legacy_command_output_is_collected_until_end_command() -> None:
    data = (
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: cc-9\r\n"
        b"Channel: PJSIP/1001\nState: Up\n\nlast line\n--END COMMAND--\r\n\r\n" + FULLY_BOOTED
    )
    reply, booted = parse_all(data, banner=False)
    assert reply.ok
    assert reply.action_id == "cc-9"
    assert reply.get_all("Output") == ["Channel: PJSIP/1001", "State: Up", "", "last line"]
    assert booted.event == "FullyBooted"


# -- arbitrary input ------------------------------------------------------------------------------------------

_PIECES = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"\r\n",
            b"\n",
            b"\r",
            b"Event: X\r\n",
            b"Response: Success\r\n",
            b"Response: Follows\r\n",
            b"--END COMMAND--\r\n",
            b"ActionID: 1\r\n",
            b"EventList: start\r\n",
            b"K: " + b"v" * 1100,
            b"H: v\r\n" * 130,
            BANNER,
            b"\xff\xfe:\x00",
        ]
    ),
)


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(_PIECES, max_size=30), banner=st.booleans())
def test_arbitrary_bytes_only_ever_raise_protocol_errors_and_stay_bounded(chunks: list[bytes], banner: bool) -> None:
    parser = AmiParser(expect_banner=banner)
    for chunk in chunks:
        try:
            messages = parser.feed(chunk)
        except AmiProtocolError as exc:
            messages = list(exc.messages)
        assert parser.buffered <= parser.max_line + 1
        assert parser.pending_headers <= parser.max_headers
        for message in messages:
            assert 0 < len(message) <= parser.max_headers
            assert all(isinstance(value, str) for _, value in message)


_HEADER_NAMES = st.from_regex(r"\A[A-Za-z0-9_.\-]{1,20}\Z").filter(lambda n: n.lower() not in ("action", "actionid"))
_VALUES = st.text(st.characters(exclude_characters="\r\n\x00", exclude_categories=["Cs"]), max_size=60)


@settings(max_examples=200, deadline=None)
@given(headers=st.lists(st.tuples(_HEADER_NAMES, _VALUES), max_size=20))
def test_built_actions_parse_back_to_the_same_headers(headers: list[tuple[str, str]]) -> None:
    data = build_action("Originate", "cc-ab12-7", headers)
    (message,) = parse_all(data, banner=False)
    assert message.headers == (("Action", "Originate"), ("ActionID", "cc-ab12-7"), *headers)


# -- injection ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [("Value", "x\r\nAction: Hangup")],
        [("Value", "x\nAction: Hangup")],
        [("Value", "x\rAction: Hangup")],
        [("Value", "cut\x00here")],
        [("Va\r\nlue", "x")],
        [("Channel: PJSIP/1\r\nX", "y")],
        [("Na:me", "x")],
        [("", "x")],
        [("Has space", "x")],
        [("Value", "v" * MAX_LINE)],
        [("Value", "\ud800")],
        [("ActionID", "other")],
        [("action", "Hangup")],
        [(f"H{i}", "v") for i in range(MAX_HEADERS - 1)],
    ],
)
def test_unsafe_headers_are_refused_before_any_bytes_exist(headers: list[tuple[str, str]]) -> None:
    with pytest.raises(AmiInjectionError) as caught:
        build_action("Setvar", "cc-1", headers)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(("name", "action_id"), [("Set\r\nvar", "cc-1"), ("Setvar", "cc-1\r\nX: y"), ("", "cc-1")])
def test_action_name_and_id_are_checked_too(name: str, action_id: str) -> None:
    with pytest.raises(AmiInjectionError):
        build_action(name, action_id, [])


def test_a_line_of_exactly_1024_bytes_is_sent_and_one_more_is_not() -> None:
    value = "v" * (MAX_LINE - len("Value: \r\n"))
    line = f"Value: {value}\r\n".encode()
    assert len(line) == MAX_LINE
    assert line in build_action("Setvar", "cc-1", {"Value": value})
    with pytest.raises(AmiInjectionError):
        build_action("Setvar", "cc-1", {"Value": value + "v"})


# -- actions --------------------------------------------------------------------------------------------------


def test_reads_are_idempotent_and_effects_are_not() -> None:
    safe = [
        actions.ping(),
        actions.logoff(),
        actions.core_show_channels(),
        actions.queue_status("support"),
        actions.queue_summary(),
        actions.getvar("CC_ACTION", "PJSIP/1001-00000001"),
        actions.status(),
        actions.core_settings(),
        actions.core_status(),
    ]
    unsafe = [
        actions.originate("PJSIP/1001", context="spy", exten="s"),
        actions.redirect("PJSIP/1001-00000001", context="expert", exten="s"),
        actions.hangup("PJSIP/1001-00000001"),
        actions.queue_add("support", "PJSIP/1001", penalty=1),
        actions.queue_remove("support", "PJSIP/1001"),
        actions.queue_pause("PJSIP/1001", True, reason="lunch"),
        actions.setvar("CC_NOTE", "x", "PJSIP/1001-00000001"),
    ]
    assert all(a.idempotent for a in safe)
    assert not any(a.idempotent for a in unsafe)
    lists = {a.name for a in safe + unsafe if a.event_list}
    assert lists == {"CoreShowChannels", "QueueStatus", "QueueSummary", "Status"}


def test_queue_pause_carries_its_reason() -> None:
    action = actions.queue_pause("PJSIP/1001", True, queue="support", reason="lunch break")
    assert action.headers == (
        ("Interface", "PJSIP/1001"),
        ("Paused", "true"),
        ("Queue", "support"),
        ("Reason", "lunch break"),
    )


def test_login_never_shows_its_secret() -> None:
    action = actions.login("callcenter", "s3cret-value-xyz")
    assert action.get("Events") == "on"
    assert "s3cret" not in repr(action)


def test_originate_variables_cannot_smuggle_a_second_assignment() -> None:
    action = actions.originate("PJSIP/1001", application="ChanSpy", data="PJSIP/1002,qB", variables={"CC_A": "1"})
    assert ("Variable", "CC_A=1") in action.headers
    assert action.get("Async") == "true"
    with pytest.raises(AmiInjectionError):
        actions.originate("PJSIP/1001", context="c", exten="s", variables={"CC_NOTE": "ok,CC_ACTION=hangup"})
    with pytest.raises(AmiInjectionError):
        actions.originate("PJSIP/1001", context="c", exten="s", variables={"BAD=NAME": "x"})


def test_synchronous_originate_waits_longer_than_its_ring_time() -> None:
    action = actions.originate("PJSIP/1001", context="c", exten="s", timeout_ms=45000, run_async=False)
    assert action.timeout is not None
    assert action.timeout > 45


def test_hangup_refuses_a_channel_pattern() -> None:
    with pytest.raises(AmiInjectionError):
        actions.hangup("/PJSIP/.*/")


def test_constructors_refuse_crlf_where_the_input_is_given() -> None:
    with pytest.raises(AmiInjectionError):
        actions.queue_pause("PJSIP/1001", True, reason="lunch\r\nAction: Originate")
    with pytest.raises(AmiInjectionError):
        actions.setvar("CC_NOTE", "a\nb")
