"""The chaos tier's Asterisk: the session's sandbox, run with eight agent phones and no wrap-up time for the tier.

With the default 10 s of wrap-up each agent takes a call every 20 s at best, and eight agents would not keep up
with a caller a second. The session's sandbox is stopped for the tier and started again, as the other tests know
it, afterwards. The rig each test builds on it is in tests/chaos/rig.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from callcenter.config import Config, Phone
from callcenter_devtools.chaos import stop_asterisk
from callcenter_devtools.sandbox import Sandbox

# CALLER_PORTS and open_rig are imported from here too, by tests written before tests/chaos/rig.py held them.
from tests.chaos.rig import AGENT_CONTACT_PORTS, AGENTS, CALLER_PORTS, open_rig  # noqa: F401
from tests.integration.conftest import PHONE_IP


def _astdb(box: Sandbox) -> Path:
    return box.root / "var/lib/asterisk/astdb.sqlite3"


@pytest.fixture(scope="package")
def chaos_config(config: Config) -> Config:
    kept = [phone for phone in config.sip.phones if phone.extension not in AGENTS]
    agents = [
        Phone(
            extension=ext,
            kind="agent",
            password=f"phone-pw-{ext}",
            contact=f"sip:{ext}@{PHONE_IP}:{AGENT_CONTACT_PORTS[ext]}",
        )
        for ext in AGENTS
    ]
    return config.model_copy(
        update={
            "sip": config.sip.model_copy(update={"phones": [*agents, *kept]}),
            "queues": config.queues.model_copy(update={"wrapup_time": 0}),
        }
    )


@pytest.fixture(scope="package")
def chaos_sandbox(sandbox: Sandbox, chaos_config: Config) -> Iterator[Sandbox]:
    """The session's sandbox, restarted with the chaos configuration for the tier and restored afterwards."""
    stop_asterisk(sandbox)
    _astdb(sandbox).unlink(missing_ok=True)
    box = Sandbox(chaos_config, progress=lambda line: print(line, flush=True))
    try:
        box.start()
        yield box
    finally:
        stop_asterisk(box)
        # Queue members the tier's engines added persist in astdb; the other tests start from none.
        _astdb(sandbox).unlink(missing_ok=True)
        sandbox.start()
