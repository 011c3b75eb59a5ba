"""The AMI exception tree. Protocol errors carry the raw text that caused them; action errors carry the reply.

What a caller may do after each failure of an action:

- ``AmiInjectionError``: nothing was written; the action cannot be sent as built (fix the input).
- ``AmiConnectionLost``: the action was never answered and it is safe to send it again (it is idempotent, or it
  never reached the socket).
- ``AmiActionUnsafeAfterReconnect``: a non-idempotent action (Originate, Redirect, Hangup, QueueAdd...) was written
  and the connection dropped before its answer. It may or may not have run; the connection never sends it again.
- ``AmiTimeout``: no answer within the action's deadline; like the previous one, a non-idempotent action may have
  run. The connection stays up (the ping decides whether it is dead).
- ``AmiActionError``: Asterisk answered ``Response: Error``; ``response`` holds the whole reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callcenter.ami.message import AmiMessage


class AmiError(Exception):
    """Base of everything the AMI layer raises."""


class AmiProtocolError(AmiError):
    """What came from the socket is not AMI (or breaks a limit: line length, header count, banner).

    ``recoverable`` is True when the parser dropped only the damaged message and kept its place in the stream;
    ``messages`` then holds the good messages parsed from the same chunk, in order, which the caller should still
    handle. A non-recoverable error means the stream cannot be read any further.
    """

    def __init__(
        self,
        message: str,
        raw: str = "",
        *,
        messages: Sequence[AmiMessage] = (),
        recoverable: bool = False,
    ) -> None:
        super().__init__(f"{message}: {raw[:120]!r}" if raw else message)
        self.raw = raw
        self.messages: tuple[AmiMessage, ...] = tuple(messages)
        self.recoverable = recoverable


class AmiConnectionLost(AmiError):
    """The connection is down, or dropped before the answer came; retrying the action is safe."""


class AmiTimeout(AmiError):
    """No answer within the deadline (an action, the banner, or waiting to be connected)."""


class AmiActionError(AmiError):
    """Asterisk refused the action (``Response: Error``). ``message`` is Asterisk's ``Message`` header."""

    def __init__(self, action: str, response: AmiMessage) -> None:
        self.action = action
        self.response = response
        self.message = response.get("Message") or "no message"
        super().__init__(f"{action} failed: {self.message}")


class AmiActionUnsafeAfterReconnect(AmiError):
    """A non-idempotent action in flight when the connection dropped: not resent.

    Asterisk may have run it (the Originate may be ringing); whoever sent it decides what to do, usually by
    looking at the live model after the resync rather than by sending it again.
    """

    def __init__(self, action: str, action_id: str, reason: str) -> None:
        super().__init__(
            f"{action} (ActionID {action_id}) was in flight when the connection dropped ({reason}); not resent"
        )
        self.action = action
        self.action_id = action_id


class AmiInjectionError(AmiError, ValueError):
    """A header cannot be sent safely: CR, LF or NUL in a name or value, ':' in a name, a line over 1024 bytes,
    too many headers, or text that would change the meaning of the header (a ',' in an Originate variable).

    Raised while building the action, before anything is written to the socket.
    """


class AmiLoginError(AmiError):
    """Asterisk refused the configured user or secret (``Message: Authentication failed``)."""
