"""The CRM's pure rules: the service-record lifecycle, search words, name keys and payload validation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from crm_bridge.exceptions import InvalidTransition
from crm_bridge.models import RecordStatus
from crm_bridge.records import TRANSITIONS, next_status
from crm_bridge.schemas import CustomerIn, CustomerPatch, CustomerQuery, ServiceRecordIn, TransitionIn
from crm_bridge.text import like_escape, name_key, prefix_end, search_words

S = RecordStatus


def test_the_happy_path_walks_the_whole_lifecycle() -> None:
    status: str = S.NEW
    for action in ("assign", "start", "resolve", "feedback", "archive"):
        status = next_status(action, status)
    assert status == S.ARCHIVED


@pytest.mark.parametrize(
    ("action", "current"),
    [
        ("start", S.NEW),
        ("resolve", S.NEW),
        ("resolve", S.ASSIGNED),
        ("feedback", S.IN_PROGRESS),
        ("archive", S.NEW),
        ("archive", S.IN_PROGRESS),
        ("assign", S.RESOLVED),
        ("assign", S.ARCHIVED),
        ("start", S.ARCHIVED),
    ],
)
def test_skipping_or_going_back_is_refused(action: str, current: str) -> None:
    with pytest.raises(InvalidTransition) as caught:
        next_status(action, current)
    assert caught.value.status == 409
    assert caught.value.details["status"] == current


def test_archived_is_final() -> None:
    for action in TRANSITIONS:
        with pytest.raises(InvalidTransition):
            next_status(action, S.ARCHIVED)


def test_search_words_are_distinct_bounded_and_kept_as_typed() -> None:
    assert search_words("  Filter  filter PUMP ") == ["Filter", "PUMP"]
    assert search_words("a b c d e f g h i j") == list("abcdefgh")
    assert search_words("x" * 500) == ["x" * 64]
    assert search_words(" \t\r\n ") == []


def test_like_wildcards_are_escaped() -> None:
    assert like_escape(r"50%_off\now") == r"50\%\_off\\now"


def test_name_key_folds_case_and_width() -> None:
    assert name_key("\uff21\uff2c\uff29\uff23\uff25 Smith") == "alice smith"  # full-width ALICE
    assert name_key("Straße") == "strasse"
    assert len(name_key("x" * 1000)) == 64


@given(st.text(min_size=1, max_size=20), st.text(max_size=20))
def test_every_string_with_a_prefix_sorts_below_the_prefix_end(prefix: str, rest: str) -> None:
    end = prefix_end(prefix)
    value = prefix + rest
    if end is not None:
        assert prefix <= value < end


def _error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(part) for part in error["loc"]) for error in exc.errors()}


@pytest.mark.parametrize(
    ("model", "payload", "field"),
    [
        (CustomerIn, {"name": "  "}, "name"),
        (CustomerIn, {"name": "x" * 1025}, "name"),
        (CustomerIn, {"name": "nul\x00"}, "name"),
        (CustomerIn, {"name": "ok", "tier": "platinum"}, "tier"),
        (CustomerIn, {"name": "ok", "phones": [{"number": "1" * 65}]}, "phones.0.number"),
        (CustomerIn, {"name": "ok", "first_contact": "2030-01-01T10:00:00"}, "first_contact"),
        (CustomerIn, {"name": "ok", "surprise": 1}, "surprise"),
        (CustomerPatch, {"name": None}, "name"),
        (CustomerPatch, {"phones": None}, "phones"),
        (ServiceRecordIn, {"type": "gossip"}, "type"),
        (ServiceRecordIn, {"type": "complaint", "idempotency_key": "has space"}, "idempotency_key"),
        (ServiceRecordIn, {"type": "complaint", "customer_id": 0}, "customer_id"),
        (TransitionIn, {"action": "assign"}, "assigned_to"),
        (TransitionIn, {"action": "feedback"}, "feedback"),
        (TransitionIn, {"action": "reopen"}, "action"),
        (CustomerQuery, {}, "number"),
    ],
)
def test_bad_payloads_name_the_field(model: Any, payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(payload)
    assert field in _error_fields(caught.value)


def test_hostile_text_is_accepted_as_it_is() -> None:
    name = "<img src=x onerror=alert(1)>'; DROP TABLE customers; --\r\n" + "名" * 900
    assert CustomerIn.model_validate({"name": name}).name == name


def test_a_patch_knows_which_fields_were_sent() -> None:
    patch = CustomerPatch.model_validate({"notes": None, "tier": "vip"})
    assert patch.model_fields_set == {"notes", "tier"}
