"""Word tokens for text search, the same for stored text and for queries, on every database engine.

Case-folded, split at anything that is not a letter or a digit; runs of Chinese or Japanese characters,
written without spaces between words, are cut into overlapping pairs so that a word inside such a run can be
found ("空调维修" gives 空调, 调维, 维修).
"""

from __future__ import annotations

import re

from recordings.exceptions import InvalidFilter

MAX_TOKENS = 16

_SEPARATORS = re.compile(r"[\W_]+")
# Han ideographs, kana and their extensions: scripts written without spaces between words.
_CJK_RUN = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]+)")


def tokens_of(text: str) -> list[str]:
    """The distinct word tokens of a text, in order (see the module docstring)."""
    tokens: list[str] = []
    for word in _SEPARATORS.split(text.casefold()):
        for part in _CJK_RUN.split(word):
            if not part:
                continue
            if _CJK_RUN.fullmatch(part) and len(part) > 1:
                pieces = [part[index : index + 2] for index in range(len(part) - 1)]
            else:
                pieces = [part]
            for piece in pieces:
                if piece not in tokens:
                    tokens.append(piece)
    return tokens


def query_tokens(text: str) -> list[str]:
    """The tokens a text query must find; InvalidFilter('q') when there is none or too many."""
    tokens = tokens_of(text)
    if not tokens:
        raise InvalidFilter("q", "must contain a letter or a digit")
    if len(tokens) > MAX_TOKENS:
        raise InvalidFilter("q", f"at most {MAX_TOKENS} words")
    return tokens


def search_text_of(description: str, tags: list[str]) -> str:
    """What text search looks in: the tokens of the description and of every tag."""
    return " ".join(tokens_of(" ".join([description, *tags])))
