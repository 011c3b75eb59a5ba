"""Phone numbers to lookup keys: one key for every way a number is written (pure, no I/O).

A caller ID arrives as ``+8613800138000``, ``008613800138000``, ``013800138000`` or ``13800138000`` depending on
the trunk, and a customer's file holds it as someone typed it (``+86 138 0013 8000``, ``010-6234 5678``). Both
sides are reduced to the same key, the number's E.164 digits without the ``+`` (``8613800138000``), and the key
is what the lookup index holds.

Only numbers give a key. Letters, markup, control characters, or anything longer than a phone number could be,
give None: the caller ID is hostile input and must never turn into a lookup of something else.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# Longer raw text is refused before any work: the longest written number with separators is far shorter.
MAX_RAW_CHARS = 64
# ITU-T E.164: at most 15 digits with the country code.
MAX_DIGITS = 15
# International numbers shorter than this are typos or service codes, not subscriber numbers.
MIN_INTERNATIONAL_DIGITS = 7
# Short numbers (service codes such as 10086, extensions) keep at least this many digits.
MIN_DIGITS = 3

# What people and switches put between digit groups: "+86 (0)10 6234-5678", "138.0013.8000", "010/62345678".
_SEPARATORS = frozenset(" -.()/")
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True, slots=True)
class PhoneRules:
    """How the numbers of the center's own country are written.

    ``country_code`` is the default country (86: China), ``trunk_prefix`` what a national number starts with
    when dialled inside the country (0), ``international_prefix`` what dials out of it (00). A number of at most
    ``local_max_digits`` digits without any prefix is a local number: with an ``area_code`` it is placed in that
    area, without one it keeps its own digits as key (it cannot be placed in the numbering plan). A number of
    more than ``national_max_digits`` digits without any prefix is international without its ``+``, the way many
    trunks present caller IDs (``8613800138000``).
    """

    country_code: str = "86"
    trunk_prefix: str = "0"
    international_prefix: str = "00"
    area_code: str = ""
    local_max_digits: int = 8
    national_max_digits: int = 11

    def __post_init__(self) -> None:
        for name in ("country_code", "trunk_prefix", "international_prefix", "area_code"):
            value = getattr(self, name)
            if value and not (value.isascii() and value.isdigit() and len(value) <= 4):
                raise ValueError(f"{name} must be at most 4 digits")
        if not self.country_code:
            raise ValueError("country_code must be given")
        if self.international_prefix and self.trunk_prefix and self.trunk_prefix.startswith(self.international_prefix):
            raise ValueError("the trunk prefix cannot start with the international prefix")
        if not 0 <= self.local_max_digits < self.national_max_digits <= MAX_DIGITS:
            raise ValueError("local_max_digits must be below national_max_digits, at most 15")

    def normalize(self, raw: str) -> str | None:
        return normalize(raw, self)


DEFAULT_RULES = PhoneRules()


def _digits_of(raw: str) -> tuple[bool, str] | None:
    """(starts with '+', the digits) of a written number, or None when it holds anything but a number."""
    text = unicodedata.normalize("NFKC", raw).strip(" ")
    plus = text.startswith("+")
    if plus:
        text = text[1:]
    digits = []
    for char in text:
        if char in _DIGITS:
            digits.append(char)
        elif char not in _SEPARATORS:
            return None
    return plus, "".join(digits)


def _international(digits: str, rules: PhoneRules) -> str | None:
    # "+86 (0)10 ..." and "0086 010 ...": the trunk prefix has no place after the country code; drop it.
    home = rules.country_code + rules.trunk_prefix
    if rules.trunk_prefix and digits.startswith(home):
        digits = rules.country_code + digits[len(home) :]
    if not MIN_INTERNATIONAL_DIGITS <= len(digits) <= MAX_DIGITS:
        return None
    return digits


def normalize(raw: str, rules: PhoneRules = DEFAULT_RULES) -> str | None:
    """The lookup key of a written phone number, or None when ``raw`` is not one. Never raises."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_RAW_CHARS:
        return None
    parsed = _digits_of(raw)
    if parsed is None:
        return None
    plus, digits = parsed
    if not digits:
        return None
    if plus:
        return _international(digits, rules)
    if rules.international_prefix and digits.startswith(rules.international_prefix):
        return _international(digits[len(rules.international_prefix) :], rules)
    if rules.trunk_prefix and digits.startswith(rules.trunk_prefix):
        national = digits[len(rules.trunk_prefix) :]
        if not national:
            return None
        return _international(rules.country_code + national, rules)
    if len(digits) <= rules.local_max_digits:
        if rules.area_code:
            return _international(rules.country_code + rules.area_code + digits, rules)
        return digits if len(digits) >= MIN_DIGITS else None
    if len(digits) > rules.national_max_digits:
        return _international(digits, rules)
    return _international(rules.country_code + digits, rules)
