"""When every step of the chain has failed and time is left: which step to ask once more.

Within one analysis a provider that failed is not asked again (nodes/policy/exclusion.py) unless nothing else can
do the job (issue 11). Once the whole chain has failed, nothing else can: before, such an analysis ended with no
answer however much of its deadline was left. In bench/chaos.py's 20% random errors that was 4 analyses in 3,000,
each with most of its deadline unused: a fresh-fact question whose Perplexity answered 503 and then a garbled
body, whose Gemini dropped the connection and whose local model answered 500, all within 0.75 s; simple jobs
whose local model and Perplexity both ran past their sub-deadlines. Each provider there fails one call in five,
so one more call is very likely to answer.

Asked again: the first step, adequate steps before last resorts (a last resort's answer is degraded), whose
provider failed here only in ways that pass (timeouts, dropped connections, 429s, 5xx, garbled or empty bodies),
that is available now (its circuit not open, not gone silent, any rate-limit cooldown over before the deadline) and
that has been called fewer than ``max_calls`` times in this analysis (the retry policy's bound, its retries
included), a last resort fewer than twice. A fresh-fact question whose Perplexity failed twice is asked of
Perplexity a third time before Gemini answers it from memory. What a full outage costs an analysis: the adequate
steps' calls up to the policy's bound and one more call to each last resort, and only until the circuits open
(``failure_threshold`` failures in a row).

An adequate step that has made the policy's bound of calls may make up to ``SPENT_MAX_CALLS`` while its provider's
retry budget allows (retries within ``budget_ratio`` of its successes in the breaker window): in the chaos run's
20% random errors with Gemini hung, 3 of 300 analyses in one seed ended unanswered after at most 2.6 s of a 90 s
deadline, their Perplexity having failed three times in a row (a 1-in-125 chance per question) while Gemini was
silent and the local model's circuit open. A budget, not only a count, bounds the load (Finagle's and Envoy's
retry budgets): a provider that is down has no successes to retry against, so an outage costs what it cost before.

When no step can answer now but one only looks silent (its calls overdue: a hang, or a slow tail taken for one), that
one is asked rather than none: in the same run an analysis whose Perplexity had timed out once ended with a 503
after 2.3 s, Perplexity flagged silent by its random hangs, Gemini hung and the local circuit open. Its call is a
retry, so it gets its provider's own limit, not all the time left (nodes/policy/hedging.py).

A step whose last attempt was not made (skipped: the spend caps, the local queue) is not picked again, so the
choice always ends: every pick either makes a call or is skipped. An analysis whose answer was rejected (an
adequate provider answered without the sources its question needs) is not asked again: that was an answer, not an
outage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from graphs.state import Attempt, ChainStep

# Failures that say nothing lasting about the provider: another call may well answer. Not "overloaded" (the local
# model's queue is full): it drains at seconds a call, not within a backoff, and the request's 503 says when to
# come back (graphs/overload.py).
_PASSING = frozenset(
    {"timeout", "connection_error", "rate_limited", "server_error", "malformed_response", "empty_response", "cancelled"}
)
# Calls to a last resort in one analysis, after which it is not asked again: its answer is degraded anyway.
_LAST_RESORT_CALLS = 2
# Calls to an adequate step in one analysis while its provider's retry budget allows more than the policy's bound;
# gRPC caps a retry policy's attempts at 5 as well.
SPENT_MAX_CALLS = 5


def step_to_ask_again(
    chain: Sequence[ChainStep],
    attempts: Sequence[Attempt],
    *,
    can_answer_now: Callable[[str], bool],
    max_calls: int,
    budget_allows: Callable[[str], bool] = lambda _name: False,
    may_answer: Callable[[str], bool] = lambda _name: False,
) -> int | None:
    """Return the index of the chain step to ask once more after every step failed, or None (none is worth it).

    ``budget_allows(provider)`` says whether the provider's retry budget has room: then an adequate step may go
    past ``max_calls``, up to ``SPENT_MAX_CALLS``. ``may_answer(provider)``: when no step can answer now, the first
    that may (its provider looks silent, which may be a false alarm) is asked rather than none."""
    eligible = _eligible(chain, attempts, max_calls, budget_allows)
    for accepts in (can_answer_now, may_answer):
        index = next((i for i in eligible if accepts(chain[i]["provider"])), None)
        if index is not None:
            return index
    return None


def _eligible(
    chain: Sequence[ChainStep], attempts: Sequence[Attempt], max_calls: int, budget_allows: Callable[[str], bool]
) -> list[int]:
    """Return the steps that may be asked again, in the order they would be: adequate ones first, then chain order."""
    answers = [a for a in attempts if a["role"] == "answer"]
    if any(a["outcome"] in ("ok", "invalid") for a in answers):
        return []  # an answer came (and was rejected): not an outage
    order = sorted(range(len(chain)), key=lambda i: (bool(chain[i].get("last_resort")), i))
    eligible = []
    for index in order:
        name = chain[index]["provider"]
        own = [a for a in answers if a["provider"] == name]
        made = [a for a in own if a["outcome"] != "skipped"]
        last_resort = bool(chain[index].get("last_resort"))
        limit = min(max_calls, _LAST_RESORT_CALLS) if last_resort else max_calls
        if not made or own[-1]["outcome"] == "skipped" or len(made) >= max(limit, SPENT_MAX_CALLS):
            continue
        if any(a["outcome"] == "error" and a["error_class"] not in _PASSING for a in made):
            continue
        if len(made) >= limit and (last_resort or not budget_allows(name)):
            continue
        eligible.append(index)
    return eligible
