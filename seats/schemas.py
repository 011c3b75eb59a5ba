"""Payloads of the seats API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueueLoginIn(_Payload):
    queue: str = Field(min_length=1, max_length=64)
    penalty: int = Field(0, ge=0, le=100)


class SeatLoginIn(_Payload):
    queues: list[QueueLoginIn] = Field(min_length=1, max_length=10)


class PauseIn(_Payload):
    reason: str = Field(min_length=1, max_length=64)
