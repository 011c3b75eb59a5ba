"""Payloads and query strings of the supervisor API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from supervisor.spy import SpyMode


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpyIn(_Payload):
    # An interface (PJSIP/1001) or a username.
    agent: str = Field(min_length=1, max_length=150)
    mode: SpyMode = SpyMode.LISTEN


class SpyModeIn(_Payload):
    mode: SpyMode


class StatsQuery(_Payload):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # ISO 8601; a time without an offset is the center's local time ([flows] timezone). Default: today so far.
    start: datetime | None = Field(None, alias="from")
    end: datetime | None = Field(None, alias="to")
    format: Literal["json", "csv"] = "json"


class VolumeQuery(StatsQuery):
    interval: Literal["15m", "hour", "day"] = "hour"
