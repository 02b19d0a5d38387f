"""Over budget over HTTP: 402 when the day's spend cap refused the analysis, 429 when the caller's did.

Route plans an empty chain when no plan fits what is left of a cap (nodes/route.py), and a planned call that no
longer fits is not made (nodes/policy/budget.py: Cover); the result then has no answer and an error naming the cap.
A ward briefing the caps left with nothing to say (graphs/ward_reports.py: BriefingOverBudget) is answered the
same way, not as the 500 of a failed briefing. A 200 without an answer would look like a provider failure: the
caller must learn that money, not an outage, stopped it, and when it resets.
"""

from __future__ import annotations

import datetime as dt

from api.common import ApiError
from graphs.result import AnalysisResult
from nodes.policy.budget import OVER_CALLER, OVER_DAILY


def over_budget_of(result: AnalysisResult, now: float) -> ApiError | None:
    """Return the HTTP error for an analysis the spend caps refused, or None."""
    if result.answer is not None or not result.error:
        return None
    refusal = next((r for r in result.routing.reasons if r.startswith((OVER_DAILY, OVER_CALLER))), None)
    if refusal is None and result.error.startswith((OVER_DAILY, OVER_CALLER)):
        # Planned, but a call it needed did not fit the cap (nodes/policy/budget.py: Cover): the error says so.
        refusal = result.error
    if refusal is None:
        return None
    return refused(refusal, now)


def refused(refusal: str, now: float, **extra: object) -> ApiError:
    """Return the HTTP error for a refusal's text (it starts with the cap): 429 for a caller's cap, else 402."""
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    midnight = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()
    retry_after = {"Retry-After": str(max(1, int(midnight - now)))}
    message = refusal.split(": only plans within")[0].split(" (before it:")[0]
    if refusal.startswith(OVER_CALLER):
        return ApiError(429, message, headers=retry_after, reason="over_budget", **extra)
    return ApiError(402, message, headers=retry_after, reason="over_budget", **extra)
