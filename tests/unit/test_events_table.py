"""docs/events.md is what the code says: every event, its publishers and its subscribers (scripts/events_table.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("events_table", ROOT / "scripts" / "events_table.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["events_table"] = module
    spec.loader.exec_module(module)
    return module


def test_the_events_table_is_current() -> None:
    script = _script()
    assert (ROOT / "docs" / "events.md").read_text(encoding="utf-8") == script.build(), (
        "docs/events.md is stale: run .venv/bin/python scripts/events_table.py"
    )


def test_the_table_finds_publishers_and_subscribers_by_class() -> None:
    script = _script()
    trees = script._sources()
    events = script._events(trees)
    script._scan(trees, events)
    assert events["IvrEnded"].publishers == {"ivr_flows.engine"}
    assert events["IvrEnded"].subscribers == {"calls.service", "crm_bridge.screenpop"}
    # Subscribed to in a loop over a tuple of event classes (supervisor.notifier's CHANGES).
    assert "supervisor.notifier" in events["QueueChanged"].subscribers
    assert events["CallRecorded"].publishers == {"calls.service"}
    # Every event class of every events module is listed, with its fields.
    assert {"CallOffered", "LiveResynced", "ExpertOutcome", "RecordingStarted", "FlowsReloaded"} <= set(events)
    assert events["CallOffered"].fields == ["linkedid", "queue", "agent", "channel", "at"]
