"""Who may use a recording: one rule for the HTTP API and the CLI, decided from the row, never from the route.

Holders of ``recordings.play_all`` (QA, supervisors) may use every recording; holders of ``recordings.play_own``
(agents, experts) the recordings where they were the agent: by user id when the row knows it, else by the
extension in the agent's interface. Pure functions, so the rule is tested without a database.
"""

from __future__ import annotations

from callcenter.auth.permissions import Permission
from callcenter.auth.services import Principal
from recordings.infos import RecordingInfo
from recordings.models import Recording


def interface_extension(interface: str | None) -> str | None:
    """The extension in a queue member interface: PJSIP/1001 -> 1001, Local/1001@agents/n -> 1001."""
    if not interface or "/" not in interface:
        return None
    rest = interface.split("/", 1)[1]
    for stop in ("@", "/", ";"):
        rest = rest.split(stop, 1)[0]
    return rest or None


def may_access(who: Principal, row: RecordingInfo | Recording) -> bool:
    if who.has(Permission.RECORDINGS_PLAY_ALL):
        return True
    if not who.has(Permission.RECORDINGS_PLAY_OWN):
        return False
    if row.agent_user_id is not None:
        # The index knows whose call it was: the extension must not override that (extensions get reassigned).
        return row.agent_user_id == who.user_id
    return who.extension is not None and interface_extension(row.agent_interface) == who.extension
