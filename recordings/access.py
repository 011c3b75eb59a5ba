"""Who may use a recording: one rule for the HTTP API and the CLI, decided from the row, never from the route.

Holders of ``recordings.play_all`` (QA, supervisors) may use every recording; holders of ``recordings.play_own``
(agents, experts) the recordings where they were the agent, by the user id the row was written with (the person
on the phone then: :meth:`seats.ports.SeatDirectory.person_at`). A row that knows no user is for ``play_all``
only: the extension in its interface may be someone else's by now (issue 16). A pure function, so the rule is
tested without a database.
"""

from __future__ import annotations

from callcenter.auth.permissions import Permission
from callcenter.auth.services import Principal
from recordings.infos import RecordingInfo
from recordings.models import Recording


def may_access(who: Principal, row: RecordingInfo | Recording) -> bool:
    if who.has(Permission.RECORDINGS_PLAY_ALL):
        return True
    if not who.has(Permission.RECORDINGS_PLAY_OWN):
        return False
    return row.agent_user_id is not None and row.agent_user_id == who.user_id
