"""Payloads and query strings of the call evaluations and the quality summaries; errors name the field."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from callcenter.web.text import AwareTime, Text
from recordings.evaluation_models import COMMENT_MAX, SCORE_MAX, SCORE_MIN
from recordings.exceptions import InvalidFilter

ITEMS_MAX = 100
ID_MAX = 2**31 - 1
# A summary covers at most a year: it reads every evaluation of the period.
PERIOD_DAYS_MAX = 366


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ScoreIn(_Payload):
    item_id: int = Field(ge=1, le=ID_MAX)
    score: int = Field(ge=SCORE_MIN, le=SCORE_MAX)


class EvaluationIn(_Payload):
    """``POST /api/v1/recordings/{id}/evaluation``: a score for every active call item, and an overall comment."""

    scores: list[ScoreIn] = Field(max_length=ITEMS_MAX)
    comment: Text = Field("", max_length=COMMENT_MAX)

    @field_validator("scores")
    @classmethod
    def _once_each(cls, value: list[ScoreIn]) -> list[ScoreIn]:
        seen: set[int] = set()
        for score in value:
            if score.item_id in seen:
                raise ValueError(f"item {score.item_id} is scored twice")
            seen.add(score.item_id)
        return value


class SummaryQuery(_Payload):
    """``GET /api/v1/quality/agents``: the evaluations made in [start, end)."""

    start: AwareTime
    end: AwareTime
    format: Literal["json", "csv"] = "json"

    @model_validator(mode="after")
    def _period(self) -> SummaryQuery:
        if self.end <= self.start:
            raise InvalidFilter("end", "must be after start")
        if (self.end - self.start).days > PERIOD_DAYS_MAX:
            raise InvalidFilter("end", f"a summary covers at most {PERIOD_DAYS_MAX} days")
        return self
