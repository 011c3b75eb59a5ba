"""Pure FastAGI parsing: the agi_* environment block and command responses, as Asterisk sends them."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from callcenter.agi import protocol
from callcenter.agi.exceptions import (
    AgiArgumentError,
    AgiCommandError,
    AgiDeadChannel,
    AgiError,
    AgiHangup,
    AgiInvalidCommand,
    AgiProtocolError,
    AgiUsageError,
)
from callcenter.agi.protocol import (
    MAX_LINE,
    build_command,
    digit_from_result,
    parse_environment,
    parse_environment_line,
    parse_response,
    quote_argument,
)

# What Asterisk 22's res_agi writes for `AGI(agi://127.0.0.1:4573/ivr?linkedid=${CHANNEL(linkedid)},en,vip)`.
ASTERISK_22_HEADER = [
    "agi_network: yes",
    "agi_network_script: ivr?linkedid=1700000000.5",
    "agi_request: agi://127.0.0.1:4573/ivr?linkedid=1700000000.5",
    "agi_channel: PJSIP/pstn-00000007",
    "agi_language: en",
    "agi_type: PJSIP",
    "agi_uniqueid: 1700000000.9",
    "agi_version: 22.10.1",
    "agi_callerid: 5551234",
    "agi_calleridname: Alice Example",
    "agi_callingpres: 0",
    "agi_callingani2: 0",
    "agi_callington: 0",
    "agi_callingtns: 0",
    "agi_dnid: 4000",
    "agi_rdnis: unknown",
    "agi_context: from-pstn",
    "agi_extension: 4000",
    "agi_priority: 2",
    "agi_enhanced: 0.0",
    "agi_accountcode: ",  # sent with a trailing space and no value
    "agi_threadid: 140245178660544",
    "agi_arg_1: en",
    "agi_arg_2: vip",
    "",
]


def header_lines(calleridname: str | None = None) -> list[str]:
    lines = [f"{line}\n" for line in ASTERISK_22_HEADER]
    if calleridname is not None:
        lines = [
            f"agi_calleridname: {calleridname}\n" if line.startswith("agi_calleridname:") else line for line in lines
        ]
    return lines


def res_agi_parse_args(line: str) -> list[str]:
    """A transcription of res_agi.c parse_args(): how Asterisk splits a command line into words."""
    words: list[list[str]] = []
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                words.append([])
                whitespace = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            words.append([])
            whitespace = False
        words[-1].append(ch)
        escaped = False
    return ["".join(word) for word in words]


# -- environment ----------------------------------------------------------------------------------------


def test_real_asterisk_header_is_parsed_into_values_and_args() -> None:
    env = parse_environment(header_lines())

    assert env.get("network") == "yes"
    assert env.get("agi_request") == "agi://127.0.0.1:4573/ivr?linkedid=1700000000.5"
    assert env.network_script == "ivr?linkedid=1700000000.5"
    assert env.channel == "PJSIP/pstn-00000007"
    assert env.uniqueid == "1700000000.9"
    assert env.callerid == "5551234"
    assert env.calleridname == "Alice Example"
    assert env.extension == "4000"
    assert env.dnid == "4000"
    assert env.get("accountcode") == ""
    assert env.get("missing", "dflt") == "dflt"
    assert env.args == ("en", "vip")


def test_script_drops_query_string_and_slashes() -> None:
    env = parse_environment(header_lines())
    assert env.script == "ivr"
    assert env.params == {"linkedid": "1700000000.5"}

    nested = parse_environment(["agi_network_script: /ivr/?x=1&empty=&x=2\n"])
    assert nested.script == "ivr"
    assert nested.params == {"x": "2", "empty": ""}


def test_linkedid_comes_from_the_query_string() -> None:
    env = parse_environment(header_lines())
    assert env.linkedid == "1700000000.5"
    assert env.uniqueid != env.linkedid


def test_linkedid_falls_back_to_uniqueid_without_a_query() -> None:
    env = parse_environment(["agi_network_script: ivr\n", "agi_uniqueid: 1700000001.2\n", "\n"])
    assert env.script == "ivr"
    assert env.params == {}
    assert env.linkedid == "1700000001.2"


def test_args_stop_at_the_first_gap() -> None:
    env = parse_environment(["agi_request: ivr\n", "agi_arg_1: a\n", "agi_arg_3: c\n"])
    assert env.args == ("a",)


def test_environment_ends_at_the_blank_line() -> None:
    env = parse_environment(["agi_network_script: ivr\r\n", "\r\n", "agi_channel: ignored\n"])
    assert env.channel == ""


@pytest.mark.parametrize(
    "name",
    [
        '"Bobby" <bobby@example.com>',
        "Robert'); DROP TABLE calls;--",
        '<script>alert("x")</script>&amp;',
        "Zoë Ångström 李小龍 🚀 مرحبا",
        "  leading and trailing spaces  ",
        "back\\slash \"quote' ${CALLERID(num)}",
        "colon: inside: value",
    ],
)
def test_hostile_caller_id_names_are_kept_verbatim(name: str) -> None:
    # Asterisk passes the display name with the SIP phone's quoted pairs (\" and \\); the name is what they quote.
    on_the_wire = name.replace("\\", "\\\\").replace('"', '\\"')
    env = parse_environment(header_lines(calleridname=on_the_wire))
    assert env.calleridname == name


@pytest.mark.parametrize(
    "line",
    [
        "GET / HTTP/1.1\n",
        "agi_channel PJSIP/x\n",
        "AGI_CHANNEL: upper case is not what Asterisk sends\n",
        ": no name\n",
        "SSH-2.0-OpenSSH_9.2\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",
        "agi_" + "x" * 65 + ": name too long\n",
    ],
)
def test_garbage_lines_raise_protocol_error(line: str) -> None:
    with pytest.raises(AgiProtocolError):
        parse_environment_line(line)
    with pytest.raises(AgiProtocolError):
        parse_environment(["agi_network_script: ivr\n", line, "\n"])


def test_over_long_environment_line_is_refused() -> None:
    line = "agi_calleridname: " + "A" * MAX_LINE + "\n"
    with pytest.raises(AgiProtocolError, match="too long") as info:
        parse_environment_line(line)
    assert len(info.value.raw) <= 200


def test_environment_needs_a_request_or_script() -> None:
    with pytest.raises(AgiProtocolError, match="agi_request"):
        parse_environment(["agi_channel: PJSIP/x\n", "\n"])
    with pytest.raises(AgiProtocolError):
        parse_environment([])


def test_blank_line_parses_to_none() -> None:
    assert parse_environment_line("\n") is None
    assert parse_environment_line("\r\n") is None
    assert parse_environment_line("agi_dnid: \n") == ("agi_dnid", "")


# -- responses ------------------------------------------------------------------------------------------


def test_plain_success() -> None:
    response = parse_response(["200 result=1\n"])
    assert response.result == 1
    assert response.data is None
    assert response.text == "1"
    assert response.extras == {}
    assert response.endpos is None
    assert response.raw == "200 result=1"


def test_negative_result() -> None:
    assert parse_response(["200 result=-1"]).result == -1


def test_stream_file_digit_and_endpos() -> None:
    response = parse_response(["200 result=49 endpos=12345\r\n"])
    assert response.result == 49
    assert digit_from_result(response.result) == "1"
    assert response.endpos == 12345
    assert response.extras == {"endpos": "12345"}


def test_get_data_with_no_digits_and_timeout() -> None:
    response = parse_response(["200 result= (timeout)"])
    assert response.text == ""
    assert response.result == 0
    assert response.data == "timeout"


def test_get_data_with_nothing_at_all() -> None:
    response = parse_response(["200 result="])
    assert response.text == ""
    assert response.result == 0
    assert response.data is None


def test_get_data_keeps_leading_zeros_as_text() -> None:
    response = parse_response(["200 result=007"])
    assert response.text == "007"
    assert response.result == 7


def test_get_data_with_star_and_pound() -> None:
    response = parse_response(["200 result=12*# (timeout)"])
    assert response.text == "12*#"
    assert response.result == 0
    assert response.data == "timeout"


def test_data_with_parentheses_and_spaces() -> None:
    response = parse_response(["200 result=1 (Alice (sales) <5551234>)"])
    assert response.data == "Alice (sales) <5551234>"


def test_data_with_parentheses_and_extras() -> None:
    response = parse_response(["200 result=1 (a (b) c) endpos=3 results=2 x_y=\n"])
    assert response.data == "a (b) c"
    assert response.extras == {"endpos": "3", "results": "2", "x_y": ""}
    assert response.endpos == 3


def test_record_file_reason_and_endpos() -> None:
    response = parse_response(["200 result=35 (dtmf) endpos=16000"])
    assert digit_from_result(response.result) == "#"
    assert response.data == "dtmf"
    assert response.endpos == 16000


@pytest.mark.parametrize("value", ["--5", "5-", "²", "١٢", "", "1e3"])
def test_unusable_endpos_reads_as_none(value: str) -> None:
    assert parse_response([f"200 result=0 endpos={value}"]).endpos is None


@pytest.mark.parametrize(
    "line",
    ["200 result=abc", "200 result=1 (unterminated", "200 result=1 junk", "200 nothing", "200 result=١٢"],
)
def test_malformed_success_is_protocol_error(line: str) -> None:
    with pytest.raises(AgiProtocolError) as info:
        parse_response([line])
    assert info.value.raw == line


def test_510_invalid_command() -> None:
    with pytest.raises(AgiInvalidCommand) as info:
        parse_response(["510 Invalid or unknown command\n"])
    assert info.value.code == 510
    assert info.value.raw == "510 Invalid or unknown command"
    assert "Invalid or unknown command" in str(info.value)


def test_511_dead_channel_is_a_hangup() -> None:
    line = "511 Command Not Permitted on a dead channel or intercepted channel"
    with pytest.raises(AgiDeadChannel) as info:
        parse_response([line])
    assert isinstance(info.value, AgiHangup)
    assert info.value.raw == line


def test_520_single_line_has_no_usage() -> None:
    line = "520 Invalid command syntax.  Proper usage not available."
    with pytest.raises(AgiUsageError) as info:
        parse_response([line])
    assert info.value.code == 520
    assert info.value.usage == ""
    assert info.value.raw == line


def test_520_usage_block_carries_the_usage_text() -> None:
    block = [
        "520-Invalid command syntax.  Proper usage follows:\n",
        " Usage: STREAM FILE <filename> <escape digits> [sample offset]\n",
        "Send the given file, allowing playback to be interrupted by the given digits, if any.\n",
        "520 End of proper usage.\n",
    ]
    with pytest.raises(AgiUsageError) as info:
        parse_response(block)
    assert info.value.usage == (
        " Usage: STREAM FILE <filename> <escape digits> [sample offset]\n"
        "Send the given file, allowing playback to be interrupted by the given digits, if any."
    )
    assert info.value.raw.startswith("520-Invalid command syntax.")
    assert info.value.raw.endswith("520 End of proper usage.")


def test_hangup_line_is_not_a_response() -> None:
    with pytest.raises(AgiProtocolError, match="HANGUP"):
        parse_response(["HANGUP\n"])


def test_other_status_codes_are_command_errors() -> None:
    with pytest.raises(AgiCommandError) as info:
        parse_response(["503 Service Unavailable"])
    assert info.value.code == 503
    assert type(info.value) is AgiCommandError


@pytest.mark.parametrize("lines", [[], [""], ["hello"], ["²²² superscript digits"]])
def test_non_responses_are_protocol_errors(lines: list[str]) -> None:
    with pytest.raises(AgiProtocolError):
        parse_response(lines)


def test_digit_from_result() -> None:
    assert digit_from_result(0) is None
    assert digit_from_result(-1) is None
    assert digit_from_result(ord("5")) == "5"
    assert digit_from_result(0x110000) is None
    assert digit_from_result(10**30) is None


# -- quoting ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a\rb", "a\nSET VARIABLE X 1", "nul\x00", "\r\n", "tab\there", "del\x7f"])
def test_quote_argument_refuses_control_characters(bad: str) -> None:
    with pytest.raises(AgiArgumentError):
        quote_argument(bad)
    with pytest.raises(AgiArgumentError):
        build_command("STREAM FILE", bad, "")
    assert issubclass(AgiArgumentError, ValueError)


def test_quote_argument_escapes_quotes_and_backslashes() -> None:
    assert quote_argument("plain") == '"plain"'
    assert quote_argument("") == '""'
    assert quote_argument('say "hi"') == '"say \\"hi\\""'
    assert quote_argument("C:\\path\\") == '"C:\\\\path\\\\"'


def test_build_command_quotes_strings_and_not_integers() -> None:
    assert build_command("GET DATA", "callcenter/welcome", 5000, 4) == 'GET DATA "callcenter/welcome" 5000 4\n'
    assert build_command("ANSWER") == "ANSWER\n"
    assert build_command("STREAM FILE", "beep", "") == 'STREAM FILE "beep" ""\n'


@pytest.mark.parametrize("verb", ["", "ANSWER\nHANGUP", "NOOP\r", "X\x00"])
def test_build_command_refuses_bad_verbs(verb: str) -> None:
    with pytest.raises(AgiArgumentError):
        build_command(verb)


def test_asterisk_reads_back_what_we_quote() -> None:
    line = build_command("SET VARIABLE", "CC_NOTE", 'he said "no" \\ then left')
    assert res_agi_parse_args(line.rstrip("\n")) == [
        "SET",
        "VARIABLE",
        "CC_NOTE",
        'he said "no" \\ then left',
    ]


# -- properties --------------------------------------------------------------------------------------------

_response_like = st.one_of(
    st.text(),
    st.builds(
        lambda prefix, rest: prefix + rest,
        st.sampled_from(["200 result=", "200 ", "510 ", "511 ", "520-", "520 ", "HANGUP", "", "5", "²²² "]),
        st.text(),
    ),
    st.builds(
        lambda digits, data, extra: f"200 result={digits}{data}{extra}",
        st.from_regex(r"-?[0-9*#]{0,25}", fullmatch=True),
        st.one_of(st.just(""), st.text().map(lambda s: f" ({s})")),
        st.one_of(st.just(""), st.text().map(lambda s: f" endpos={s}")),
    ),
)


@given(st.lists(_response_like, max_size=5))
@example(["²²² x"])
@example(["200 result=0 endpos=--5"])
@example(["200 result=99999999999999999999999"])
def test_parse_response_only_raises_agi_errors(lines: list[str]) -> None:
    try:
        response = parse_response(lines)
    except AgiError:
        return
    # Whatever parsed must be usable without further surprises.
    assert isinstance(response.result, int)
    assert response.endpos is None or isinstance(response.endpos, int)
    digit_from_result(response.result)


_printable = st.text(st.characters(blacklist_categories=("Cc", "Cs")))


@given(_printable)
@example('"\\"\\\\ ')
@example("\\")
@example('"')
def test_printable_arguments_round_trip_without_newlines(value: str) -> None:
    quoted = quote_argument(value)
    assert "\n" not in quoted
    assert "\r" not in quoted
    assert "\x00" not in quoted
    line = build_command("SET VARIABLE", "CC_X", value)
    wire = line.encode("utf-8")
    assert wire.count(b"\n") == 1
    assert wire.endswith(b"\n")
    assert b"\r" not in wire
    assert res_agi_parse_args(line[:-1]) == ["SET", "VARIABLE", "CC_X", value]


# -- the shared secret in the AGI URL (issue 16) -----------------------------------------------------------------


def _env_with(script: str, request: str | None = None) -> protocol.AgiEnvironment:
    pairs = [("agi_network_script", script), ("agi_uniqueid", "1.1")]
    if request is not None:
        pairs.append(("agi_request", request))
    return protocol.environment_from_pairs(pairs)


def test_take_secret_removes_it_from_the_script_and_the_request() -> None:
    env, secret = protocol.take_secret(
        _env_with(
            "ivr?linkedid=1.1&secret=abc%2Dxyz&did=4000",
            "agi://127.0.0.1:4573/ivr?linkedid=1.1&secret=abc-xyz&did=4000",
        )
    )
    assert secret == "abc-xyz"
    assert env.network_script == "ivr?linkedid=1.1&did=4000"
    assert env.get("request") == "agi://127.0.0.1:4573/ivr?linkedid=1.1&did=4000"
    assert env.params == {"linkedid": "1.1", "did": "4000"}
    assert env.script == "ivr"


def test_take_secret_without_one_changes_nothing() -> None:
    env, secret = protocol.take_secret(_env_with("ivr?linkedid=1.1"))
    assert secret is None
    assert env.network_script == "ivr?linkedid=1.1"
    env, secret = protocol.take_secret(_env_with("ivr?secret=only"))
    assert (env.network_script, secret) == ("ivr", "only")


@pytest.mark.parametrize(
    ("script", "request_url"),
    [
        ("ivr?secret=a&secret=a", None),
        ("ivr?secret=a", "agi://h/ivr?secret=b"),
    ],
)
def test_take_secret_refuses_a_repeated_or_contradicting_secret(script: str, request_url: str | None) -> None:
    with pytest.raises(AgiProtocolError):
        protocol.take_secret(_env_with(script, request_url))
