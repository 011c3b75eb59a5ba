"""What the service desk accepts (evaluation items, visits, results, the due list), validated with pydantic.

A bad value is a 400 naming the field. Text is kept as given (markup, quotes and all); only what no database can
store is refused (:data:`callcenter.web.text.Text`).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from callcenter.web.text import Key, Text
from crm_bridge.schemas import LONG_TEXT_MAX, PAGE_MAX
from crm_bridge.visit_models import ITEM_NAME_MAX, SCORE_MAX, SCORE_MIN, AppliesTo, VisitOutcome

ID_MAX = 2**31 - 1
ID = Annotated[int, Field(ge=1, le=ID_MAX)]
Score = Annotated[int, Field(ge=SCORE_MIN, le=SCORE_MAX)]


def _user_id_fits(value: str) -> str:
    # User ids are 32-bit: a larger one is refused here (PostgreSQL would refuse the query, a 500).
    if value.isdigit() and int(value) > ID_MAX:
        raise ValueError(f"a user id is at most {ID_MAX}")
    return value


# Whose records a list is about: a user id, or a word (each list takes its own).
VisitOwner = Annotated[str, Field(pattern=r"^(none|[1-9][0-9]{0,9})$"), AfterValidator(_user_id_fits)]
DueOwner = Annotated[str, Field(pattern=r"^(me|all|none|[1-9][0-9]{0,9})$"), AfterValidator(_user_id_fits)]
OverdueOwner = Annotated[str, Field(pattern=r"^(all|none|[1-9][0-9]{0,9})$"), AfterValidator(_user_id_fits)]


ItemName = Annotated[Key, Field(min_length=1, max_length=ITEM_NAME_MAX)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EvaluationItemIn(_Payload):
    name: ItemName
    applies_to: AppliesTo
    active: bool = True
    # Where among its kind's items; none: after the last.
    position: Annotated[int, Field(ge=0, le=1_000_000)] | None = None


class EvaluationItemPatch(_Payload):
    """Changes to an item: only what is sent. What it applies to never changes (scores were given on it)."""

    name: ItemName | None = None
    active: bool | None = None
    position: Annotated[int, Field(ge=0, le=1_000_000)] | None = None

    @field_validator("name", "active", "position")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null")
        return value


class EvaluationItemQuery(_Payload):
    applies_to: AppliesTo | None = None
    active: bool | None = None


class ScoreIn(_Payload):
    item_id: ID
    score: Score


class VisitResultIn(_Payload):
    """A visit's result: ``satisfaction`` (1-5) and ``scores`` only when the customer was reached, and then the
    satisfaction is required."""

    outcome: VisitOutcome
    satisfaction: Score | None = None
    scores: list[ScoreIn] = Field(default_factory=list, max_length=50)
    comment: Annotated[Text, Field(max_length=LONG_TEXT_MAX)] | None = None

    @field_validator("scores")
    @classmethod
    def _distinct(cls, value: list[ScoreIn]) -> list[ScoreIn]:
        seen: set[int] = set()
        for score in value:
            if score.item_id in seen:
                raise ValueError(f"item {score.item_id} is scored twice")
            seen.add(score.item_id)
        return value


VisitCause = Literal["abandoned_call", "expert_callback", "complaint", "repair", "other"]


class VisitQuery(_Payload):
    cause: VisitCause | None = None
    # Visits waiting (the default), done (a result recorded or the record closed), or both.
    state: Literal["due", "done", "all"] = "due"
    customer_id: ID | None = None
    # The owner: a user id, or "none" for visits nobody has taken.
    owner: VisitOwner | None = None
    since: date | None = None  # created on or after (the center's date)
    until: date | None = None  # created before
    format: Literal["json", "csv"] = "json"
    limit: int = Field(50, ge=1, le=PAGE_MAX)
    offset: int = Field(0, ge=0, le=10**9)


class DueQuery(_Payload):
    # Whose records: the caller's own (default); with desk.work a user id, "all" or "none" (nobody's).
    owner: DueOwner = "me"
    limit: int = Field(100, ge=1, le=PAGE_MAX)


class OverdueQuery(_Payload):
    owner: OverdueOwner = "all"
    limit: int = Field(100, ge=1, le=PAGE_MAX)
