"""The FastAGI exception tree. Protocol errors carry the raw text that caused them."""

from __future__ import annotations


class AgiError(Exception):
    """Base of everything the FastAGI layer raises."""


class AgiProtocolError(AgiError):
    """Asterisk (or whatever is on the socket) sent something that is not AGI."""

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(f"{message}: {raw[:120]!r}" if raw else message)
        self.raw = raw


class AgiConnectionLost(AgiError):
    """The socket closed (or went silent past the deadline) before the session ended."""


class AgiTimeout(AgiConnectionLost):
    """No complete line arrived within the read deadline; the connection is treated as dead."""


class AgiHangup(AgiError):
    """The caller hung up. The one exception type a flow catches to end its walk cleanly."""


class AgiDeadChannel(AgiHangup):
    """Asterisk answered 511: the channel is gone, so the command could not run."""

    def __init__(self, raw: str = "") -> None:
        super().__init__("channel is dead (511)")
        self.raw = raw


class AgiCommandError(AgiError):
    """Asterisk refused or failed a command; ``code`` is the AGI status code."""

    def __init__(self, code: int, message: str, raw: str = "") -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.raw = raw


class AgiInvalidCommand(AgiCommandError):
    """510: Asterisk does not know the command."""


class AgiUsageError(AgiCommandError):
    """520: the command's syntax was wrong; ``usage`` holds Asterisk's usage text."""

    def __init__(self, usage: str, raw: str = "") -> None:
        super().__init__(520, "invalid command syntax", raw)
        self.usage = usage


class AgiCommandFailed(AgiCommandError):
    """200 result=-1 on a live channel: the command ran but failed (a missing sound file, say)."""


class AgiArgumentError(AgiError, ValueError):
    """An argument cannot be sent safely (CR/LF or other control characters, or it is empty)."""
