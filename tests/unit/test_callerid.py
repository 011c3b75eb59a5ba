"""Caller ID as the caller sent it: the SIP quoted pairs and the AMI's C-style escapes undone exactly."""

from __future__ import annotations

import pytest

from callcenter.ami.message import AmiMessage
from callcenter.ami.reducer import apply
from callcenter.callerid import ami_caller_name, ami_caller_number, from_ami, from_sip_display
from callcenter.model import LiveModel

NAMES = [
    "Ann Lee",
    "<img src=x onerror=alert(1)>' OR 1=1--",
    'Ann "Q" Lee',
    "back\\slash and \\\\ two",
    "a & b < c > d",
    "张伟 (客户)",
    "😀 emoji",
    "trailing \\",
    "'; DROP TABLE call_records; --",
]


def sip_quoted(name: str) -> str:
    """What a SIP phone puts between the quotes of a display name (RFC 3261 quoted pairs)."""
    return name.replace("\\", "\\\\").replace('"', '\\"')


def asterisk_escape_c(value: str) -> str:
    """What Asterisk's manager does to caller ID values (ast_escape_c)."""
    table = {"\a": "a", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t", "\v": "v"}
    out = []
    for char in value:
        if char in "\\'\"?":
            out.append("\\" + char)
        elif char in table:
            out.append("\\" + table[char])
        else:
            out.append(char)
    return "".join(out)


@pytest.mark.parametrize("name", NAMES)
def test_a_name_comes_back_as_sent_through_sip_and_the_ami(name: str) -> None:
    on_the_wire = sip_quoted(name)
    assert from_sip_display(on_the_wire) == name  # the AGI environment's agi_calleridname
    assert ami_caller_name(asterisk_escape_c(on_the_wire)) == name  # an AMI event's CallerIDName


def test_numbers_lose_only_the_amis_escapes() -> None:
    assert ami_caller_number("5550100") == "5550100"
    assert ami_caller_number(asterisk_escape_c("+86'138")) == "+86'138"
    assert from_ami("tab\\there\\n") == "tab\there\n"
    # A backslash that starts no escape is kept, and so is one at the end.
    assert from_ami("a\\zb\\") == "a\\zb\\"


def test_the_live_model_keeps_the_callers_name_and_never_decodes_it_twice() -> None:
    name = 'Zoë "the \\ boss" <b>'
    escaped = asterisk_escape_c(sip_quoted(name))
    first = AmiMessage.of(
        ("Event", "Newchannel"),
        Channel="PJSIP/pstn-00000001",
        Uniqueid="1.1",
        Linkedid="1.1",
        CallerIDNum="5550100",
        CallerIDName=escaped,
        Exten="4000",
    )
    model, _ = apply(LiveModel(), first, 1.0)
    assert model.channels["1.1"].caller_name == name
    assert model.calls["1.1"].caller_name == name
    # An event that does not carry the name keeps it; one that carries it again gives the same name.
    state = AmiMessage.of(("Event", "Newstate"), Channel="PJSIP/pstn-00000001", Uniqueid="1.1", ChannelState="6")
    model, _ = apply(model, state, 2.0)
    assert model.channels["1.1"].caller_name == name
    again = AmiMessage.of(("Event", "Newstate"), Uniqueid="1.1", CallerIDName=escaped, CallerIDNum="5550100")
    model, _ = apply(model, again, 3.0)
    assert model.channels["1.1"].caller_name == name
