"""How the CRM turns typed text into what it searches by: name keys, LIKE patterns, search words, FTS5 phrases.

Pure functions, shared by the customer lookup (names) and the knowledge base (articles), and unit-tested alone:
the rules of what a search may match are easier to read (and to hold) away from the queries that use them. None
of them builds SQL: what they return is bound as a parameter.
"""

from __future__ import annotations

import unicodedata

from crm_bridge.models import NAME_KEY_MAX

SEARCH_WORDS_MAX = 8
SEARCH_WORD_MAX = 64


def name_key(name: str) -> str:
    """What a name is searched by: NFKC, case-folded, the first NAME_KEY_MAX characters."""
    return unicodedata.normalize("NFKC", name).casefold()[:NAME_KEY_MAX]


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (code point order), if any."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop()) + 1
        if 0xD800 <= last <= 0xDFFF:
            last = 0xE000
        if last <= 0x10FFFF:
            return "".join(chars) + chr(last)
    return None


def like_escape(text: str) -> str:
    """``text`` with LIKE's wildcards escaped (escape character: backslash), to be wrapped in % by the caller."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_words(query: str) -> list[str]:
    """The distinct words of a search, at most SEARCH_WORDS_MAX of at most SEARCH_WORD_MAX characters each."""
    words: list[str] = []
    for word in query.split():
        word = word[:SEARCH_WORD_MAX]
        if word.casefold() not in (w.casefold() for w in words):
            words.append(word)
        if len(words) == SEARCH_WORDS_MAX:
            break
    return words


def fts_phrase(word: str) -> str:
    """An FTS5 string: the word as a phrase, its double quotes doubled; nothing in it is query syntax."""
    return '"' + word.replace('"', '""') + '"'
