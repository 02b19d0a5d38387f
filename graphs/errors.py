"""Errors the service raises to its callers (CLI, HTTP, Python API); each message is safe to show them."""

from __future__ import annotations


class RequestError(ValueError):
    """The caller's request is invalid; the message says what is wrong."""


class UnknownThread(LookupError):
    """No analysis with this thread id exists in the checkpoint store."""


class FeedbackError(ValueError):
    """The analysis exists but cannot be judged (not finished, or no answer); the message says why."""


class CheckpointStoreError(RuntimeError):
    """The checkpoint store cannot be opened or used; the message names it.

    ``thread_id`` is set when an analysis was running: it can be resumed from its last checkpoint.
    """

    def __init__(self, message: str, *, thread_id: str | None = None) -> None:
        super().__init__(message)
        self.thread_id = thread_id


class ThreadBusy(RuntimeError):
    """Another runner holds the thread's lease (it is running elsewhere): CLI exit 2, HTTP 409."""

    def __init__(self, message: str, *, thread_id: str) -> None:
        super().__init__(message)
        self.thread_id = thread_id
