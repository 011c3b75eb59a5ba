"""Caller ID as the caller sent it: undoing, exactly, what Asterisk and SIP escaped on the way to us.

Two layers add backslashes to a caller's text before the engine sees it:

- SIP: a display name in a quoted string escapes ``"`` and ``\\`` as quoted pairs (RFC 3261, 25.1:
  ``"Ann \\"Q\\" Lee"`` is the name ``Ann "Q" Lee``). Asterisk's PJSIP stack keeps the pairs as they were on the wire,
  so the AGI environment and the AMI both carry them. A name sent as a token cannot hold a backslash, so undoing
  the pairs of any name is exact.
- AMI: Asterisk's manager escapes caller ID values (names and numbers) C-style (``ast_escape_c``: ``\\\\``, ``\\'``,
  ``\\"``, ``\\?`` and the control characters ``\\a \\b \\f \\n \\r \\t \\v``), the AGI environment does not.

The text that comes out is hostile as ever (it may hold quotes, markup, anything): stored as given, bound as SQL
parameters, escaped where shown.
"""

from __future__ import annotations

# ast_escape_c's escapes, by the letter that follows the backslash.
_C_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}


def _undo(text: str, table: dict[str, str] | None) -> str:
    """``text`` with each backslash pair replaced (by ``table``, or by the escaped character itself)."""
    if "\\" not in text:
        return text
    out: list[str] = []
    index, end = 0, len(text)
    while index < end:
        char = text[index]
        if char == "\\" and index + 1 < end:
            following = text[index + 1]
            if table is None:
                out.append(following)
                index += 2
                continue
            if following in table:
                out.append(table[following])
                index += 2
                continue
        out.append(char)
        index += 1
    return "".join(out)


def from_ami(value: str) -> str:
    """A caller ID value (CallerIDNum, CallerIDName, ConnectedLine...) of an AMI event without the manager's
    C-style escapes; a backslash that starts no escape is kept."""
    return _undo(value, _C_ESCAPES)


def from_sip_display(name: str) -> str:
    """A display name without its SIP quoted pairs (``\\x`` is ``x``)."""
    return _undo(name, None)


def ami_caller_name(value: str) -> str:
    """The name the caller sent, from an AMI event's CallerIDName."""
    return from_sip_display(from_ami(value)) if "\\" in value else value


def ami_caller_number(value: str) -> str:
    """The number the caller sent, from an AMI event's CallerIDNum."""
    return from_ami(value) if "\\" in value else value
