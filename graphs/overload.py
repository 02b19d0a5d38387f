"""Overload: an analysis that found no provider able to answer in time is a 503 with Retry-After, not a 200
with ``answer: null`` (issue 10 item 8: 11 of 20 concurrent local-only requests came back 200 and empty).

"In time" failures are the ones that go away by waiting: the local model's queue was full or too long, a call
ran past its (sub-)deadline, or was stopped because the deadline passed. A request the providers refused, or a
deployment with no provider at all, is not an overload and keeps its result.
"""

from __future__ import annotations

import math

from graphs.result import AnalysisResult
from providers.registry import ProviderRegistry

_WAIT_CLASSES = frozenset({"overloaded", "timeout", "cancelled"})


class Overloaded(RuntimeError):
    """No provider could answer within the deadline; ask again after ``retry_after_s``."""

    def __init__(self, message: str, *, retry_after_s: int, thread_id: str | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.thread_id = thread_id


def overload_of(result: AnalysisResult, registry: ProviderRegistry) -> Overloaded | None:
    """Return the overload an unanswered result stands for, or None when it has an answer or failed otherwise."""
    if result.answer:
        return None
    waited = [
        a
        for a in result.attempts
        if a.error_class in _WAIT_CLASSES or (a.outcome == "skipped" and "queue" in (a.error or ""))
    ]
    if not waited or any(a.error_class == "bad_request" for a in result.attempts):
        return None
    # When to ask again: the longest queue's expected wait, at least a second.
    wait_s = max([registry.expected_wait_s(name) for name in registry.names()] + [1.0])
    reason = "; ".join(sorted({a.error or a.error_class or a.outcome for a in waited}))
    return Overloaded(
        f"no provider could answer within the deadline ({reason})",
        retry_after_s=math.ceil(wait_s),
        thread_id=result.thread_id,
    )
