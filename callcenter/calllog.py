"""Logging that carries the call: every record made while serving a call names its uniqueid and linkedid.

The FastAGI server sets :data:`call_context` for the task that serves a call; the filter copies it into each
record, so flow code logs plainly and the call ids still appear.
"""

from __future__ import annotations

import contextvars
import logging

call_context: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("call_context", default=None)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s%(call)s: %(message)s"


class CallContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ids = call_context.get()
        record.call = f" [uniqueid={ids[0]} linkedid={ids[1]}]" if ids else ""
        return True


def configure_logging(level: int | str = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(CallContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
