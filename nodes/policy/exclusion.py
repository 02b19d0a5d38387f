"""Which providers have just failed within this analysis, so the same analysis does not ask them again.

Cause 1 of a hung primary costing 30 s: the answer was cross-checked, and the checker list put premium first,
so the analysis asked the provider that had just timed out again and waited for it. A provider whose call in
this analysis errored, timed out, or was overtaken by a hedge while it had not answered is left out of later
steps (fallbacks and checkers) unless nothing else can do the job, and so is a hedge given up on once the call
it hedged had failed (it ran past its provider's usual latency). A request-side refusal (bad request, too long,
blocked) says nothing about the provider now and does not exclude it; neither does a hedge aborted because the
other call answered.
"""

from __future__ import annotations

from collections.abc import Iterable

from graphs.state import Attempt

# Error classes that are about this request, not about the provider's state.
_NOT_THE_PROVIDER = frozenset({"bad_request", "context_too_long", "content_blocked"})


def failed_providers(attempts: Iterable[Attempt]) -> set[str]:
    """Return the providers that failed, timed out, or hung (overtaken while unanswered) in these attempts."""
    attempts = list(attempts)
    # A call overtaken by a second request to its own provider (a duplicate hedge) that answered: not a failure.
    answered = {a["provider"] for a in attempts if a["outcome"] == "ok"}
    failed: set[str] = set()
    for attempt in attempts:
        errored = attempt["outcome"] == "error" and attempt["error_class"] not in _NOT_THE_PROVIDER
        overtaken = (
            attempt["outcome"] == "cancelled" and not attempt.get("hedge") and attempt["provider"] not in answered
        )
        # A hedge given up on (it ran past its provider's usual latency once the call it hedged had failed).
        gave_up = attempt["outcome"] == "cancelled" and attempt["error_class"] == "timeout"
        if errored or overtaken or gave_up:
            failed.add(attempt["provider"])
    return failed
