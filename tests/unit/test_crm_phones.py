"""Phone numbers to lookup keys: every written form of one number gives one key, anything else gives none."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_bridge.phones import DEFAULT_RULES, PhoneRules, normalize

MOBILE = "8613800138000"
BEIJING = "861062345678"


@pytest.mark.parametrize(
    ("written", "key"),
    [
        ("+86 138 0013 8000", MOBILE),
        ("+8613800138000", MOBILE),
        ("0086 138 0013 8000", MOBILE),
        ("008613800138000", MOBILE),
        ("013800138000", MOBILE),
        ("13800138000", MOBILE),
        ("138-0013-8000", MOBILE),
        ("(138) 0013.8000", MOBILE),
        # Trunks that present caller IDs in E.164 without the plus.
        ("8613800138000", MOBILE),
        # Full-width digits, as some phones and IMEs type them.
        ("".join(chr(0xFF10 + int(digit)) for digit in "13800138000"), MOBILE),
        ("010-6234 5678", BEIJING),
        ("(010) 62345678", BEIJING),
        ("+86 10 6234 5678", BEIJING),
        ("+86 (0)10 6234 5678", BEIJING),
        ("0086 010 62345678", BEIJING),
        ("+1 415 555 0134", "14155550134"),
        ("+44 20 7946 0958", "442079460958"),
        # Without an area code configured, a local number keeps its own digits.
        ("62345678", "62345678"),
        ("10086", "10086"),
    ],
)
def test_written_forms_give_the_lookup_key(written: str, key: str) -> None:
    assert normalize(written) == key


@pytest.mark.parametrize(
    "junk",
    [
        "",
        " ",
        "+",
        "00",
        "0",
        "12",
        "unknown",
        "anonymous",
        "<script>alert(1)</script>",
        "13800138000<b>",
        "1' OR '1'='1",
        "13800138000; DROP TABLE customers",
        "138001\r\n38000",
        "13800138000\n",
        "\x0013800138000",
        "sip:13800138000@example.com",
        "9" * 16,
        "+" + "9" * 16,
        "1" * 200,
        "1" * 1024,
        "+86 138 0013 8000 ext 12",
        "+123",
    ],
)
def test_junk_gives_no_key(junk: str) -> None:
    assert normalize(junk) is None


def test_an_area_code_places_local_numbers() -> None:
    rules = PhoneRules(area_code="10")
    assert normalize("62345678", rules) == BEIJING
    assert normalize("010 6234 5678", rules) == BEIJING
    assert normalize("13800138000", rules) == MOBILE


def test_another_country_and_trunk() -> None:
    # France: +33, national numbers start with 0, nine digits after it.
    rules = PhoneRules(country_code="33", trunk_prefix="0", international_prefix="00", national_max_digits=9)
    assert normalize("01 42 68 53 00", rules) == "33142685300"
    assert normalize("+33 1 42 68 53 00", rules) == "33142685300"
    assert normalize("0033 1 42 68 53 00", rules) == "33142685300"


@pytest.mark.parametrize(
    "bad",
    [
        {"country_code": ""},
        {"country_code": "8a"},
        {"trunk_prefix": "00"},
        {"local_max_digits": 11},
        {"national_max_digits": 16},
    ],
)
def test_rules_that_cannot_work_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        PhoneRules(**bad)  # type: ignore[arg-type]


# -- properties -----------------------------------------------------------------------------------------

_mobile = st.builds(
    lambda second, rest: f"1{second}{rest}",
    st.sampled_from("3456789"),
    st.text("0123456789", min_size=9, max_size=9),
)
_landline = st.builds(
    lambda area, first, rest: f"{area}{first}{rest}",
    st.sampled_from(["10", "20", "21", "22", "23", "24", "25", "27", "28", "29", "311", "571", "755", "898"]),
    st.sampled_from("23456789"),
    st.text("0123456789", min_size=7, max_size=7),
)
_national = st.one_of(_mobile, _landline)
_separator = st.sampled_from(["", " ", "-", ".", " - ", "/"])


@st.composite
def _written(draw: st.DrawFn, nsn: str) -> str:
    """One way a person or a switch writes the national significant number ``nsn``."""
    prefix = draw(st.sampled_from(["+86", "+86 ", "0086", "0086 ", "0", "", "86", "+86 (0)", "+86 0"]))
    if prefix == "86" and len(nsn) + 2 <= DEFAULT_RULES.national_max_digits:
        prefix = "+86"
    cuts = sorted(draw(st.lists(st.integers(1, len(nsn) - 1), max_size=4, unique=True)))
    pieces = [nsn[start:end] for start, end in zip([0, *cuts], [*cuts, len(nsn)], strict=True)]
    body = pieces[0] + "".join(draw(_separator) + piece for piece in pieces[1:])
    if prefix == "0" and draw(st.booleans()):
        # Area codes in parentheses: (010) 6234 5678.
        return f"({prefix}{body})"
    return prefix + body


@given(st.data(), _national)
@settings(max_examples=300)
def test_every_written_form_of_one_number_gives_the_same_key(data: st.DataObject, nsn: str) -> None:
    first = data.draw(_written(nsn))
    second = data.draw(_written(nsn))
    assert normalize(first) == normalize(second) == "86" + nsn


_junk_char = st.one_of(
    st.characters(categories=["Lu", "Ll", "Lo"]),
    st.sampled_from(list("<>&\"';=\r\n\t\x00%_*#@:,!?")),
)


@given(st.text(min_size=0, max_size=40), _junk_char, st.text(min_size=0, max_size=40))
@settings(max_examples=300)
def test_text_with_letters_markup_or_control_characters_gives_no_key(before: str, junk: str, after: str) -> None:
    assert normalize(before + junk + after) is None


@given(st.text(max_size=2000))
@settings(max_examples=300)
def test_any_text_never_raises_and_gives_digits_or_nothing(text: str) -> None:
    key = normalize(text)
    assert key is None or (key.isascii() and key.isdigit() and 3 <= len(key) <= 15)


@given(st.text("0123456789 -+()", min_size=65, max_size=1024))
def test_anything_longer_than_a_written_number_gives_no_key(text: str) -> None:
    assert normalize(text) is None
