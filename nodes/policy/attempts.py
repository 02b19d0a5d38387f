"""One provider call, bounded and recorded: what it cost, how long it took, and whether to try it again.

An attempt never raises: a failure comes back as a :class:`~providers.errors.ProviderError` beside a ``None``
reply, and the node that made it decides what comes next.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from graphs.state import Attempt, ChainStep, Outcome, Role
from providers.base import ModelReply, Prompt
from providers.config import RetrySettings
from providers.errors import ProviderError, ProviderUnavailable, map_common_error
from providers.registry import ProviderRegistry
from providers.resilience.stall import overdue_after_s


def make_attempt(
    registry: ProviderRegistry,
    step: ChainStep,
    role: Role,
    *,
    reply: ModelReply | None,
    error: ProviderError | None,
    latency_ms: float,
    started_at: float | None = None,
    outcome: Outcome | None = None,
    note: str | None = None,
) -> Attempt:
    """Record one call: provider, model, outcome, error, latency, tokens and cost."""
    price = registry.price_of(step["provider"], reply.model if reply else None)
    tokens_in = reply.input_tokens if reply else 0
    tokens_out = reply.output_tokens if reply else 0
    # A failed call that got no usage back is recorded at zero cost: the vendors do not bill errors, and a
    # timed-out call's usage is unknowable from our side.
    cost = price.cost_usd(tokens_in, tokens_out) if reply else 0.0
    attempt: Attempt = {
        "provider": step["provider"],
        "model": reply.model if reply else step["model"],
        "configured_model": step["model"],
        "tier": step["tier"],
        "role": role,
        "outcome": outcome or ("ok" if reply else "error"),
        "error_class": error.error_class if error else None,
        "error": str(error) if error else note,
        "latency_ms": round(latency_ms, 1),
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "cost_usd": round(cost, 8),
    }
    if started_at is not None:
        attempt["started_at"] = round(started_at, 4)
    return attempt


def call_provider(
    registry: ProviderRegistry,
    step: ChainStep,
    prompt: Prompt,
    timeout_s: float,
    abort: threading.Event | None = None,
) -> tuple[ModelReply | None, ProviderError | None]:
    """Make one bounded call behind the provider's circuit breaker; return the reply or the error, never raise."""
    name = step["provider"]
    try:
        availability = registry.availability(name)
        if not availability.available and not availability.cooling:
            # Availability changed since routing (a circuit opened): do not send the call. A rate limit's cooldown
            # is for new work: this call was planned (a retry after waiting out the Retry-After, a fallback).
            raise ProviderUnavailable(availability.reason, provider=name)
        if not registry.health.breaker(name).allow():
            raise ProviderUnavailable("circuit half-open: another call is the probe", provider=name)
        return registry.adapter(name).invoke(prompt, timeout_s=timeout_s, abort=abort), None
    except ProviderError as exc:
        return None, exc
    except Exception as exc:  # an adapter bug must not escape: attempts return outcomes, they never raise
        return None, map_common_error(exc, name)


def watched_call(
    registry: ProviderRegistry,
    step: ChainStep,
    prompt: Prompt,
    timeout_s: float,
    overdue_s: float,
    abort: threading.Event | None = None,
) -> tuple[ModelReply | None, ProviderError | None]:
    """:func:`call_provider`, noted in the provider's stall watch while in flight (providers/resilience/stall.py):
    every call is evidence of a provider gone silent, a check or a research call as much as an answer. Before,
    only answer calls were: once the router put a silent provider behind the ones that answer, its checks were
    the only calls left to hang, and each waited out its sub-deadline unnoticed (bench/chaos.py, warm hang)."""
    name = step["provider"]
    ticket = registry.health.stalls.start(name, overdue_s)
    reply: ModelReply | None = None
    try:
        reply, error = call_provider(registry, step, prompt, timeout_s, abort=abort)
    finally:
        registry.health.stalls.end(name, ticket, answered=reply is not None)
    return reply, error


def skipped_attempt(registry: ProviderRegistry, step: ChainStep, role: Role, why: str) -> Attempt:
    """Record a call that was not made (the spend caps refused it, a last resort not asked), saying why."""
    attempt = make_attempt(registry, step, role, reply=None, error=None, latency_ms=0.0, outcome="skipped")
    attempt["error"] = why
    return attempt


def account(registry: ProviderRegistry, step: ChainStep, attempt: Attempt, error: ProviderError | None) -> None:
    """Count a finished call in its provider's health and in the hedge budget's spend."""
    registry.health.record(
        step["provider"],
        ok=error is None,
        latency_ms=attempt["latency_ms"],
        error_class=error.error_class if error else None,
        retry_after_s=error.retry_after_s if error else None,
    )
    registry.hedge_budget.record_spend(attempt["cost_usd"])


def attempt_call(
    registry: ProviderRegistry,
    clock: Callable[[], float],
    step: ChainStep,
    prompt: Prompt,
    timeout_s: float,
    role: Role,
) -> tuple[Attempt, ModelReply | None, ProviderError | None]:
    """Make one bounded call and record it (health, spend); used by cross_check."""
    latency, timing = registry.health.breaker(step["provider"]).latency_and_timing(registry.settings)
    started_at = clock()
    started = time.monotonic()
    reply, error = watched_call(registry, step, prompt, timeout_s, overdue_after_s(latency, timing))
    latency_ms = (time.monotonic() - started) * 1000
    attempt = make_attempt(registry, step, role, reply=reply, error=error, latency_ms=latency_ms, started_at=started_at)
    account(registry, step, attempt, error)
    return attempt, reply, error


def attempt_timeout_s(remaining_s: float, fallbacks_left: bool, policy: RetrySettings) -> float:
    """Return an attempt's share of the time left: all of it for the last step, ``attempt_share`` otherwise.

    Without the share, a hung first provider would spend the whole deadline and leave nothing to fail over to
    when hedging is off or out of budget.
    """
    return remaining_s * policy.attempt_share if fallbacks_left else remaining_s


def retry_wait_s(
    error: ProviderError,
    *,
    made: int,
    remaining_s: float,
    policy: RetrySettings,
    rng: random.Random,
    fallback_left: bool = False,
) -> float | None:
    """Return how long to wait before retrying the same provider, or None when the retry is not worth it.

    ``made`` counts the attempts on this provider for this request, the failed one included. The server's
    Retry-After is honoured as given (plus up to 10% jitter so waiting callers do not return in lockstep) and
    never shortened: when it is longer than ``max_wait_s`` or does not leave ``min_attempt_s`` before the
    deadline, the next provider is the better use of the time. Without it: full-jitter exponential backoff.

    A Retry-After is waited out once per provider and request while another adequate step of the chain is left
    (``fallback_left``; a last resort does not count): a provider that fails again and asks to wait again is
    rate limiting or overloaded for longer than one wait, and a second wait (a second of Retry-After each in the
    chaos run's random 429s) made the slowest analyses of bench/chaos.py (two waits and three calls: 3.5 s).
    The next provider serves it.
    """
    if error.disposition != "retry" or made > policy.max_retries:
        return None
    if error.retry_after_s is not None:
        if made > 1 and fallback_left:
            return None
        wait = error.retry_after_s * (1 + 0.1 * rng.random())
    else:
        wait = rng.uniform(0, min(policy.max_backoff_s, policy.base_backoff_s * 2 ** (made - 1)))
    if wait > policy.max_wait_s or wait + policy.min_attempt_s > remaining_s:
        return None
    return wait
