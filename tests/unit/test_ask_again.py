"""Which step is asked once more when the whole chain has failed with time left (nodes/policy/ask_again.py)."""

from __future__ import annotations

from typing import Any

from graphs.state import Attempt, ChainStep, Outcome
from nodes.policy.ask_again import SPENT_MAX_CALLS, step_to_ask_again

CHAIN: list[ChainStep] = [
    {"provider": "perplexity", "tier": "realtime", "model": "sonar", "reason": "fresh facts"},
    {"provider": "gemini", "tier": "premium", "model": "gemini", "reason": "fallback", "last_resort": True},
    {"provider": "local", "tier": "local", "model": "smollm2", "reason": "fallback", "last_resort": True},
]


def attempt(
    provider: str, outcome: Outcome = "error", error_class: str | None = "server_error", **extra: Any
) -> Attempt:
    return {
        "provider": provider,
        "model": provider,
        "tier": "realtime",
        "role": "answer",
        "outcome": outcome,
        "error_class": error_class,
        "error": None,
        "latency_ms": 10.0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
        **extra,  # type: ignore[typeddict-item]
    }


def pick(
    attempts: list[Attempt],
    down: frozenset[str] = frozenset(),
    max_calls: int = 3,
    budget: frozenset[str] = frozenset(),
    silent: frozenset[str] = frozenset(),
) -> int | None:
    return step_to_ask_again(
        CHAIN,
        attempts,
        can_answer_now=lambda name: name not in down | silent,
        max_calls=max_calls,
        budget_allows=lambda name: name in budget,
        may_answer=lambda name: name not in down,
    )


def test_the_adequate_step_comes_first_then_the_last_resorts_in_chain_order() -> None:
    spent = [attempt("perplexity"), attempt("perplexity", error_class="malformed_response")]
    spent += [attempt("gemini", error_class="connection_error"), attempt("local")]
    assert pick(spent) == 0  # Perplexity a third time before an answer from memory
    assert pick([*spent, attempt("perplexity", error_class="timeout")]) == 1  # its three calls are made
    assert pick([*spent, attempt("perplexity"), attempt("gemini")]) == 2  # a last resort is asked twice at most
    assert pick([*spent, attempt("perplexity"), attempt("gemini"), attempt("local")]) is None
    assert pick(spent, max_calls=2) == 1  # the retry policy's bound holds for the adequate step


def test_a_lasting_failure_a_provider_that_cannot_answer_now_or_a_skipped_step_is_not_asked_again() -> None:
    spent = [
        attempt("perplexity", error_class="auth_error"),
        attempt("gemini"),
        attempt("local", error_class="timeout"),
    ]
    assert pick(spent) == 1  # a bad key does not recover
    assert pick(spent, down=frozenset({"gemini"})) == 2  # circuit open, gone silent or cooling past the deadline
    full = [attempt("perplexity", error_class="auth_error"), attempt("local", error_class="overloaded")]
    assert pick(full, down=frozenset({"gemini"})) is None  # a full local queue does not drain within a backoff
    skipped = [*spent, attempt("gemini", outcome="skipped", error_class=None)]
    assert pick(skipped, down=frozenset({"local"})) is None  # the spend caps refused it: not picked in a loop
    overtaken = [attempt("perplexity", outcome="cancelled", error_class=None), attempt("gemini"), attempt("local")]
    assert pick(overtaken) == 0  # a call given up on (a hang) may be answered the next time


def test_an_answer_that_came_and_was_rejected_is_not_an_outage() -> None:
    spent = [attempt("perplexity", outcome="invalid", error_class=None), attempt("gemini"), attempt("local")]
    assert pick(spent) is None
    assert pick([attempt("perplexity", outcome="ok", error_class=None)]) is None
    never_called = [attempt("perplexity", outcome="skipped", error_class=None)]
    assert pick(never_called) is None  # asked again means called once already


def test_past_the_bound_an_adequate_step_is_asked_while_its_retry_budget_allows() -> None:
    """Chaos run, seed 27: Perplexity failed three times in a row with Gemini silent and the local circuit open, and
    the fresh-fact question ended unanswered within half a second of a 90 s deadline."""
    three = [attempt("perplexity"), attempt("perplexity", error_class="rate_limited"), attempt("perplexity")]
    assert pick(three, down=frozenset({"gemini", "local"})) is None  # no budget: the policy's bound holds
    assert pick(three, down=frozenset({"gemini", "local"}), budget=frozenset({"perplexity"})) == 0
    most = three + [attempt("perplexity")] * (SPENT_MAX_CALLS - 3)
    assert pick(most, down=frozenset({"gemini", "local"}), budget=frozenset({"perplexity"})) is None  # at most five
    # The last resorts keep their two calls, budget or not; the adequate step still comes first.
    spent = [*three, attempt("gemini"), attempt("gemini"), attempt("local")]
    everyone = frozenset({"perplexity", "gemini", "local"})
    assert pick(spent, budget=everyone) == 0
    assert pick([*spent, *[attempt("perplexity")] * (SPENT_MAX_CALLS - 3)], budget=everyone) == 2
    assert pick([*spent, attempt("local"), *[attempt("perplexity")] * (SPENT_MAX_CALLS - 3)], budget=everyone) is None
    # A lasting failure is not retried on a budget either.
    assert pick([*three[:2], attempt("perplexity", error_class="auth_error")], budget=everyone) is None


def test_a_provider_gone_silent_is_asked_only_when_no_other_can_answer() -> None:
    """Chaos run, seed 27: Perplexity's one call timed out and its random hangs had it flagged silent, Gemini hung
    and the local model's circuit was open; the analysis ended with a 503 after 2.3 s of a 90 s deadline."""
    spent = [attempt("perplexity", error_class="timeout"), attempt("gemini", outcome="cancelled", error_class=None)]
    assert pick(spent, down=frozenset({"local"}), silent=frozenset({"perplexity"})) == 1  # one that can answer now
    both = frozenset({"perplexity", "gemini"})
    assert pick(spent, down=frozenset({"local"}), silent=both) == 0  # none can: the first that may
    assert pick(spent, down=frozenset({"local", "perplexity"}), silent=both) == 1
    assert pick(spent, down=frozenset({"local", "perplexity", "gemini"})) is None  # circuits open: none may
