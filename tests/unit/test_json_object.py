"""callcenter.db.json_object: a history or audit row's JSON column read back, whatever was written there."""

from __future__ import annotations

import pytest

from callcenter.db import json_object


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        (None, {}),
        ("", {}),
        ('{"fault_type": {"from": null, "to": "noise"}}', {"fault_type": {"from": None, "to": "noise"}}),
        ("[1, 2]", {"value": [1, 2]}),
        ('"=cmd|x"', {"value": "=cmd|x"}),
        ("{not json", {"raw": "{not json"}),
    ],
)
def test_a_json_column_reads_back_as_an_object_and_nothing_is_lost(stored: str | None, read: object) -> None:
    assert json_object(stored) == read
