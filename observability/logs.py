"""Structured logs: one JSON object per record, carrying the analysis's thread id and the trace id.

``STRATEGIST_LOG_FORMAT=json`` turns it on for any command (`strategist worker` and `strategist serve` use it by
default: their logs go to collectors, not people). The thread id is whatever ``bind_thread`` set for the current
context (a job, a request), so every record made while an analysis runs names it without each call passing it.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_thread_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("strategist_thread_id", default=None)
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def current_thread_id() -> str | None:
    """Return the thread id bound to the current context, if any."""
    return _thread_id.get()


@contextmanager
def bind_thread(thread_id: str | None) -> Iterator[None]:
    """Bind ``thread_id`` to every log record made in the block (and in tasks it starts in this context)."""
    token = _thread_id.set(thread_id)
    try:
        yield
    finally:
        _thread_id.reset(token)


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line: time, level, logger, message, thread id, trace id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        from observability.tracing import current_trace_id

        body: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        thread_id = getattr(record, "thread_id", None) or current_thread_id()
        if thread_id:
            body["thread_id"] = thread_id
        trace_id = current_trace_id()
        if trace_id:
            body["trace_id"] = trace_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in body:
                body[key] = value if isinstance(value, str | int | float | bool | None) else repr(value)
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False)
