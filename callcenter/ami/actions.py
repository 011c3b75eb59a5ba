"""Typed constructors for the AMI actions the engine sends.

Each action says whether it is safe to send twice (``idempotent``) and whether Asterisk answers it with a list
of events (``event_list``). The connection never resends anything; ``idempotent`` decides which error a caller
gets when the connection drops mid-action (see :mod:`callcenter.ami.exceptions`), so a caller knows whether a
retry is harmless. Reads (Ping, the status listings, Getvar) are idempotent; anything that changes a call or a
queue seat (Originate, Redirect, Hangup, QueueAdd, QueueRemove, QueuePause, Setvar) is not.

Every header is checked when the action is built (CR/LF/NUL, names, line length), and again by
:func:`callcenter.ami.message.build_action` when it is written, so bad input fails where it is given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from callcenter.ami.exceptions import AmiInjectionError
from callcenter.ami.message import check_header

LOGIN = "Login"
LOGOFF = "Logoff"
PING = "Ping"
CORE_SHOW_CHANNELS = "CoreShowChannels"
QUEUE_STATUS = "QueueStatus"
QUEUE_SUMMARY = "QueueSummary"
QUEUE_ADD = "QueueAdd"
QUEUE_REMOVE = "QueueRemove"
QUEUE_PAUSE = "QueuePause"
ORIGINATE = "Originate"
REDIRECT = "Redirect"
HANGUP = "Hangup"
GETVAR = "Getvar"
SETVAR = "Setvar"
STATUS = "Status"
CORE_SETTINGS = "CoreSettings"
CORE_STATUS = "CoreStatus"
MIX_MONITOR = "MixMonitor"
STOP_MIX_MONITOR = "StopMixMonitor"
MIX_MONITOR_MUTE = "MixMonitorMute"

# Header values never shown by repr() (tracebacks and logs must not carry the AMI secret).
_SECRET_HEADERS = frozenset({"secret", "key"})
# A variable (or a dialplan function with arguments): CC_ACTION, __INHERITED, CHANNEL(linkedid).
_VARIABLE = re.compile(r"^_{0,2}[A-Za-z0-9_]{1,80}(\([^(),=\x00-\x1f]{0,200}\))?$")
# manager.c splits each Originate "Variable:" header on ',' (honouring quotes, parentheses and backslashes),
# so "A=1,CC_ACTION=hangup" would set two variables: such values are refused, not escaped.
_VARIABLE_VALUE_FORBIDDEN = (",", '"', "\\")


@dataclass(frozen=True, slots=True, repr=False)
class AmiAction:
    """One action to send: its name, its headers in order (duplicates allowed) and how it may be retried.

    ``timeout`` overrides the connection's action timeout (a synchronous Originate waits for the call).
    """

    name: str
    headers: tuple[tuple[str, str], ...] = ()
    idempotent: bool = True
    event_list: bool = False
    timeout: float | None = None

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={'***' if k.lower() in _SECRET_HEADERS else v!r}" for k, v in self.headers)
        return f"AmiAction({self.name}: {shown})"

    def get(self, name: str, default: str = "") -> str:
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), default)


def _action(
    name: str,
    headers: Iterable[tuple[str, str | int | bool | None]] = (),
    *,
    idempotent: bool,
    event_list: bool = False,
    timeout: float | None = None,
) -> AmiAction:
    pairs: list[tuple[str, str]] = []
    for key, raw in headers:
        if raw is None:
            continue
        value = ("true" if raw else "false") if isinstance(raw, bool) else str(raw)
        check_header(key, value)
        pairs.append((key, value))
    return AmiAction(name, tuple(pairs), idempotent=idempotent, event_list=event_list, timeout=timeout)


def _required(what: str, value: str) -> str:
    if not value or value != value.strip():
        raise AmiInjectionError(f"{what} must be a non-empty value without surrounding spaces: {value[:40]!r}")
    return value


def _variable_name(name: str) -> str:
    if not _VARIABLE.match(name):
        raise AmiInjectionError(f"not a variable name: {name[:40]!r}")
    return name


def _channel(name: str) -> str:
    # Hangup (and friends) read "/regex/" as a pattern over every channel: a name is never a pattern.
    if _required("channel", name).startswith("/"):
        raise AmiInjectionError(f"a channel name cannot start with '/': {name[:40]!r}")
    return name


# -- session --------------------------------------------------------------------------------------------------


def login(username: str, secret: str, *, events: bool = True) -> AmiAction:
    """``Events: on`` sends every event the user's read classes allow (filtered by manager.conf)."""
    return _action(
        LOGIN,
        [("Username", _required("username", username)), ("Secret", secret), ("Events", "on" if events else "off")],
        idempotent=True,
    )


def logoff() -> AmiAction:
    return _action(LOGOFF, idempotent=True)


def ping() -> AmiAction:
    """Answered with ``Response: Success`` and ``Ping: Pong``."""
    return _action(PING, idempotent=True)


# -- listings and reads ---------------------------------------------------------------------------------------


def core_show_channels() -> AmiAction:
    """A ``CoreShowChannel`` event per channel, closed by ``CoreShowChannelsComplete``."""
    return _action(CORE_SHOW_CHANNELS, idempotent=True, event_list=True)


def queue_status(queue: str | None = None, member: str | None = None) -> AmiAction:
    """``QueueParams``, ``QueueMember`` and ``QueueEntry`` events, closed by ``QueueStatusComplete``."""
    return _action(QUEUE_STATUS, [("Queue", queue), ("Member", member)], idempotent=True, event_list=True)


def queue_summary(queue: str | None = None) -> AmiAction:
    """A ``QueueSummary`` event per queue, closed by ``QueueSummaryComplete``."""
    return _action(QUEUE_SUMMARY, [("Queue", queue)], idempotent=True, event_list=True)


def status(channel: str | None = None, *, variables: Iterable[str] = (), all_variables: bool = False) -> AmiAction:
    """A ``Status`` event per channel (or for one), closed by ``StatusComplete``."""
    names = ",".join(_variable_name(name) for name in variables) or None
    return _action(
        STATUS,
        [
            ("Channel", None if channel is None else _channel(channel)),
            ("Variables", names),
            ("AllVariables", True if all_variables else None),
        ],
        idempotent=True,
        event_list=True,
    )


def getvar(variable: str, channel: str | None = None) -> AmiAction:
    """Answered with ``Variable`` and ``Value``; without a channel, a global variable."""
    return _action(
        GETVAR,
        [("Channel", None if channel is None else _channel(channel)), ("Variable", _variable_name(variable))],
        idempotent=True,
    )


def core_settings() -> AmiAction:
    """Asterisk's version and settings (``AsteriskVersion``, ``AMIversion``...)."""
    return _action(CORE_SETTINGS, idempotent=True)


def core_status() -> AmiAction:
    """``CoreStartupDate``/``CoreStartupTime`` (a changed value means Asterisk restarted) and ``CoreCurrentCalls``."""
    return _action(CORE_STATUS, idempotent=True)


# -- effects (never safe to send twice) -----------------------------------------------------------------------


def setvar(variable: str, value: str, channel: str | None = None) -> AmiAction:
    return _action(
        SETVAR,
        [
            ("Channel", None if channel is None else _channel(channel)),
            ("Variable", _variable_name(variable)),
            ("Value", value),
        ],
        idempotent=False,
    )


def queue_add(
    queue: str,
    interface: str,
    *,
    penalty: int = 0,
    paused: bool = False,
    member_name: str | None = None,
    state_interface: str | None = None,
) -> AmiAction:
    if penalty < 0:
        raise ValueError("penalty must be 0 or more")
    return _action(
        QUEUE_ADD,
        [
            ("Queue", _required("queue", queue)),
            ("Interface", _required("interface", interface)),
            ("Penalty", penalty),
            ("Paused", paused),
            ("MemberName", member_name),
            ("StateInterface", state_interface),
        ],
        idempotent=False,
    )


def queue_remove(queue: str, interface: str) -> AmiAction:
    return _action(
        QUEUE_REMOVE,
        [("Queue", _required("queue", queue)), ("Interface", _required("interface", interface))],
        idempotent=False,
    )


def queue_pause(interface: str, paused: bool, *, queue: str | None = None, reason: str | None = None) -> AmiAction:
    """Pauses (or unpauses) a member in one queue, or in all of its queues when ``queue`` is None.

    ``reason`` comes back in QueueMemberPause events (``PausedReason``) and in queue_log.
    """
    return _action(
        QUEUE_PAUSE,
        [
            ("Interface", _required("interface", interface)),
            ("Paused", paused),
            ("Queue", queue),
            ("Reason", reason),
        ],
        idempotent=False,
    )


def originate(
    channel: str,
    *,
    context: str | None = None,
    exten: str | None = None,
    priority: int = 1,
    application: str | None = None,
    data: str | None = None,
    timeout_ms: int = 30000,
    caller_id: str | None = None,
    variables: Mapping[str, str] | None = None,
    account: str | None = None,
    channel_id: str | None = None,
    other_channel_id: str | None = None,
    early_media: bool | None = None,
    run_async: bool = True,
) -> AmiAction:
    """Calls ``channel`` and, once it answers, sends it to ``context``/``exten``/``priority`` or runs ``application``.

    With ``run_async`` (the default) Asterisk answers at once ("Originate successfully queued") and reports the
    outcome later in an ``OriginateResponse`` event carrying the same ActionID (delivered like any event);
    without it the reply waits for the call, so the action's own timeout is stretched past ``timeout_ms``.
    """
    if (application is None) == (exten is None):
        raise ValueError("originate to a context/exten or to an application, not both and not neither")
    if exten is not None and context is None:
        raise ValueError("an extension needs a context")
    if timeout_ms <= 0:
        raise ValueError("timeout_ms must be positive")
    headers: list[tuple[str, str | int | bool | None]] = [
        ("Channel", _channel(channel)),
        ("Context", context),
        ("Exten", exten),
        ("Priority", None if exten is None else priority),
        ("Application", application),
        ("Data", data),
        ("Timeout", timeout_ms),
        ("CallerID", caller_id),
        ("Account", account),
        ("ChannelId", channel_id),
        ("OtherChannelId", other_channel_id),
        ("EarlyMedia", early_media),
        ("Async", run_async),
    ]
    for name, value in (variables or {}).items():
        _variable_name(name)
        if any(ch in value for ch in _VARIABLE_VALUE_FORBIDDEN):
            raise AmiInjectionError(f"value of variable {name} contains ',', '\"' or '\\\\': {value[:40]!r}")
        headers.append(("Variable", f"{name}={value}"))
    timeout = None if run_async else timeout_ms / 1000 + 10
    return _action(ORIGINATE, headers, idempotent=False, timeout=timeout)


def redirect(
    channel: str,
    *,
    context: str,
    exten: str,
    priority: int = 1,
    extra_channel: str | None = None,
    extra_context: str | None = None,
    extra_exten: str | None = None,
    extra_priority: int | None = None,
) -> AmiAction:
    """Moves a channel (and optionally the channel bridged to it) to a place in the dialplan."""
    return _action(
        REDIRECT,
        [
            ("Channel", _channel(channel)),
            ("Context", _required("context", context)),
            ("Exten", _required("exten", exten)),
            ("Priority", priority),
            ("ExtraChannel", None if extra_channel is None else _channel(extra_channel)),
            ("ExtraContext", extra_context),
            ("ExtraExten", extra_exten),
            ("ExtraPriority", extra_priority),
        ],
        idempotent=False,
    )


def hangup(channel: str, cause: int | None = None) -> AmiAction:
    """Hangs up one channel by its exact name (never a ``/regex/``: that would match every channel)."""
    return _action(HANGUP, [("Channel", _channel(channel)), ("Cause", cause)], idempotent=False)


_RECORDING_FILE = re.compile(r"^/[A-Za-z0-9_./-]{1,400}\.wav$")


def mix_monitor(channel: str, file: str, *, options: str = "") -> AmiAction:
    """Starts recording ``channel`` (both directions, mixed) into ``file``, an absolute .wav path.

    The answer carries ``MixMonitorID``, which StopMixMonitor takes. The path comes from the recordings store
    (generated ids, never caller text) and is checked here too: a ',' or '|' would add MixMonitor options or a
    post-recording command.
    """
    if not _RECORDING_FILE.match(file) or "/../" in file or file.endswith("/.."):
        raise AmiInjectionError(f"not a safe recording path: {file[:80]!r}")
    if options and not re.fullmatch(r"[a-zA-Z]{1,8}", options):
        raise AmiInjectionError(f"MixMonitor options must be plain flags: {options[:20]!r}")
    return _action(
        MIX_MONITOR,
        [("Channel", _channel(channel)), ("File", file), ("Options", options or None)],
        idempotent=False,
    )


def stop_mix_monitor(channel: str, mix_monitor_id: str | None = None) -> AmiAction:
    return _action(
        STOP_MIX_MONITOR, [("Channel", _channel(channel)), ("MixMonitorID", mix_monitor_id)], idempotent=False
    )


def mix_monitor_mute(channel: str, muted: bool, *, direction: str = "both") -> AmiAction:
    """Silences (or unsilences) the recordings of ``channel``: the timeline keeps going with zeroed audio."""
    if direction not in ("read", "write", "both"):
        raise ValueError("direction is read, write or both")
    return _action(
        MIX_MONITOR_MUTE,
        [("Channel", _channel(channel)), ("Direction", direction), ("State", "1" if muted else "0")],
        idempotent=True,
    )
