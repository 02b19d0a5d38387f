"""call_model: one attempt on the chain's current step, or one hedged pair. It never raises: it records outcomes.

One attempt (or one hedged pair) per node execution, so each completed provider call is checkpointed before the
next step: a killed process that resumes never pays for a completed call again.

Resilience, all bounded by the request's one deadline:

- each attempt's timeout is derived from the time left (a share of it while fallbacks remain);
- an error whose disposition is ``retry`` (providers/errors.py) keeps the cursor on the same step and sets
  ``retry_at``: the next execution waits until then. The retry must fit the policy (``max_retries``), the
  provider's retry budget, the wait cap and the deadline (Retry-After is honoured only when it fits);
  otherwise the cursor moves on. Waits are full-jitter exponential backoff without a Retry-After;
- hedging: when the attempt has not answered by its provider's observed latency quantile (p95), the next step
  of the chain starts in parallel, within the hedge budget; the first usable answer wins, the other call is
  abandoned and recorded as ``cancelled`` with its estimated cost, and the cursor moves past both steps.
"""

from __future__ import annotations

import queue
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.state import AnalysisState, Attempt, Candidate, ChainStep, Outcome, Role
from providers.base import ModelReply, Prompt, map_common_error
from providers.config import RetrySettings
from providers.errors import ProviderError, ProviderUnavailable
from providers.registry import ProviderRegistry

# How long past the deadline call_model still waits for a call that should have timed out by itself.
_GRACE_S = 1.0
# How often a slow attempt whose hedge was refused asks the budget again.
_HEDGE_RECHECK_S = 0.25

_DEPTH_BRIEF = {
    "quick": "in two or three sentences",
    "standard": "in a few bullet points",
    "deep": "step by step, with risks and a recommendation",
}
_DEPTH_GUIDANCE = {
    "quick": "Answer briefly: the essentials in a few sentences or bullets.",
    "standard": "Give a focused analysis with concrete, actionable points.",
    "deep": "Give a thorough multi-step analysis: assumptions, evidence, options, risks and a recommendation.",
}
_CONTEXT_GUIDANCE = {
    "defensive": "The campaign is on the defensive: weigh risks, threats and rebuttals first.",
    "neutral": "Take a balanced view of opportunities and risks.",
    "offensive": "The campaign is on the offensive: weigh opportunities and openings first.",
}
_CONFIDENCE_LINE = re.compile(r"^\s*confidence\s*[:=]\s*([01](?:\.\d+)?)\s*$", re.IGNORECASE | re.MULTILINE)


def build_prompt(state: AnalysisState) -> Prompt:
    """Render the query with its depth, strategic context, ward and task into a provider-neutral prompt."""
    depth = state.get("depth", "standard")
    context = state.get("context", "neutral")
    task = state.get("classification", {}).get("task", "")
    # One short paragraph: small local models echo long multi-line instructions instead of following them.
    parts = [
        "Answer as a campaign strategist's analyst: factual, specific, non-partisan; never invent facts, polls"
        " or quotes.",
        _DEPTH_GUIDANCE[depth],
        _CONTEXT_GUIDANCE.get(context, _CONTEXT_GUIDANCE["neutral"]),
    ]
    if task:
        parts.append(f"Task: {task.replace('_', ' ')}.")
    if state.get("ward"):
        parts.append(f"Ward: {state['ward']}.")
    parts.append("Finish with a line 'Confidence: <0 to 1>'.")
    brief = f"Answer as a campaign strategy analyst, {_DEPTH_BRIEF[depth]}."
    return Prompt(system=" ".join(parts), user=state["query"], brief=brief)


def split_stated_confidence(text: str) -> tuple[str, float | None]:
    """Remove the model's trailing confidence line and return it as a number (None when absent)."""
    matches = list(_CONFIDENCE_LINE.finditer(text))
    if not matches:
        return text.strip(), None
    last = matches[-1]
    value = float(last.group(1))
    cleaned = (text[: last.start()] + text[last.end() :]).strip()
    return cleaned, value if 0.0 <= value <= 1.0 else None


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
    price = registry.price_of(step["provider"])
    tokens_in = reply.input_tokens if reply else 0
    tokens_out = reply.output_tokens if reply else 0
    # A failed call that got no usage back is recorded at zero cost: the vendors do not bill errors, and a
    # timed-out call's usage is unknowable from our side.
    cost = price.cost_usd(tokens_in, tokens_out) if reply else 0.0
    attempt: Attempt = {
        "provider": step["provider"],
        "model": reply.model if reply else step["model"],
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
    registry: ProviderRegistry, step: ChainStep, prompt: Prompt, timeout_s: float
) -> tuple[ModelReply | None, ProviderError | None]:
    """Make one bounded call behind the provider's circuit breaker; return the reply or the error, never raise."""
    name = step["provider"]
    try:
        availability = registry.availability(name)
        if not availability.available:
            # Availability changed since routing (a circuit opened): do not send the call.
            raise ProviderUnavailable(availability.reason, provider=name)
        if not registry.health.breaker(name).allow():
            raise ProviderUnavailable("circuit half-open: another call is the probe", provider=name)
        return registry.adapter(name).invoke(prompt, timeout_s=timeout_s), None
    except ProviderError as exc:
        return None, exc
    except Exception as exc:  # an adapter bug must not escape: attempts return outcomes, they never raise
        return None, map_common_error(exc, name)


def _account(registry: ProviderRegistry, step: ChainStep, attempt: Attempt, error: ProviderError | None) -> None:
    registry.health.record(
        step["provider"],
        ok=error is None,
        latency_ms=attempt["latency_ms"],
        error_class=error.error_class if error else None,
    )
    registry.hedge_budget.record_spend(attempt["cost_usd"])


def attempt_call(
    ctx: Context, step: ChainStep, prompt: Prompt, deadline_at: float, role: Role
) -> tuple[Attempt, ModelReply | None, ProviderError | None]:
    """Make one bounded call and record it (health, spend); used by cross_check."""
    started_at = ctx.clock()
    started = time.monotonic()
    reply, error = call_provider(ctx.registry, step, prompt, deadline_at - started_at)
    latency_ms = (time.monotonic() - started) * 1000
    attempt = make_attempt(
        ctx.registry, step, role, reply=reply, error=error, latency_ms=latency_ms, started_at=started_at
    )
    _account(ctx.registry, step, attempt, error)
    return attempt, reply, error


def attempt_timeout_s(remaining_s: float, fallbacks_left: bool, policy: RetrySettings) -> float:
    """Return an attempt's share of the time left: all of it for the last step, ``attempt_share`` otherwise.

    Without the share, a hung first provider would spend the whole deadline and leave nothing to fail over to
    when hedging is off or out of budget.
    """
    return remaining_s * policy.attempt_share if fallbacks_left else remaining_s


def retry_wait_s(
    error: ProviderError, *, made: int, remaining_s: float, policy: RetrySettings, rng: random.Random
) -> float | None:
    """Return how long to wait before retrying the same provider, or None when the retry is not worth it.

    ``made`` counts the attempts on this provider for this request, the failed one included. The server's
    Retry-After is honoured as given (plus up to 10% jitter so waiting callers do not return in lockstep) and
    never shortened: when it is longer than ``max_wait_s`` or does not leave ``min_attempt_s`` before the
    deadline, the next provider is the better use of the time. Without it: full-jitter exponential backoff.
    """
    if error.disposition != "retry" or made > policy.max_retries:
        return None
    if error.retry_after_s is not None:
        wait = error.retry_after_s * (1 + 0.1 * rng.random())
    else:
        wait = rng.uniform(0, min(policy.max_backoff_s, policy.base_backoff_s * 2 ** (made - 1)))
    if wait > policy.max_wait_s or wait + policy.min_attempt_s > remaining_s:
        return None
    return wait


def candidate_from(reply: ModelReply, step: ChainStep, vendor: str) -> Candidate:
    text, stated = split_stated_confidence(reply.text)
    return {
        "text": text,
        "provider": step["provider"],
        "model": reply.model,
        "tier": step["tier"],
        "vendor": vendor,
        "finish_reason": reply.finish_reason,
        "citations": [{"url": c.url, "title": c.title, "date": c.date} for c in reply.citations],
        "mean_logprob": reply.mean_logprob,
        "stated_confidence": stated,
    }


@dataclass(eq=False)  # calls are compared by identity: an abandoned call's fields change under its thread
class _Call:
    """One provider call of a node execution; its result fields are written by its thread before it is queued."""

    step: ChainStep
    started_at: float  # the context's clock
    started: float  # monotonic
    hedge: bool
    slow_after_s: float = float("inf")  # past this the provider is slower than it usually is
    probing: bool = False  # its provider's circuit was half-open at the start
    reply: ModelReply | None = None
    error: ProviderError | None = None
    latency_ms: float = 0.0
    problem: str | None = None  # why a successful reply is unusable (validate's rule)


@dataclass
class _Group:
    calls: list[_Call]
    finished: list[_Call]
    chosen: _Call | None  # the reply handed to validate: the first usable one, else the first reply at all


def _estimated_cost(registry: ProviderRegistry, step: ChainStep, state: AnalysisState) -> float:
    from nodes.costing import estimate_call_cost

    classification = state.get("classification")
    if classification is None:
        return 0.0
    return estimate_call_cost(registry, step["provider"], classification, state["query"])


def _run_group(
    ctx: Context, state: AnalysisState, cursor: int, prompt: Prompt, deadline_at: float, runtime: Runtime[Context]
) -> tuple[_Group, list[float] | None]:
    """Call the chain's step at ``cursor``; hedge with the next step if it is slow. Return the calls and the
    hedge's budget reservation (None when no hedge started)."""
    # Imported here: validate imports cross_check, which imports this module.
    from nodes.validate import problem_with

    registry = ctx.registry
    resilience = registry.settings.resilience
    chain = state["chain"]
    results: queue.Queue[_Call] = queue.Queue()
    calls: list[_Call] = []

    def launch(step: ChainStep, fallbacks_left: bool, hedge: bool) -> None:
        now = ctx.clock()
        timeout_s = attempt_timeout_s(deadline_at - now, fallbacks_left, resilience.retry)
        call = _Call(step=step, started_at=now, started=time.monotonic(), hedge=hedge)
        calls.append(call)
        runtime.stream_writer(
            {"event": "attempt_start", "provider": step["provider"], "model": step["model"], "hedge": hedge}
        )

        def run() -> None:
            call.reply, call.error = call_provider(registry, step, prompt, timeout_s)
            call.latency_ms = (time.monotonic() - call.started) * 1000
            results.put(call)

        # A thread of our own per call: the loser of a hedge is abandoned, not joined, and must not hold up
        # the node (the adapter's own timeout ends it).
        threading.Thread(target=run, name=f"attempt-{step['provider']}", daemon=True).start()

    timing = registry.health.breaker(chain[cursor]["provider"]).hedge_timing(registry.settings)
    launch(chain[cursor], cursor + 1 < len(chain), hedge=False)
    calls[0].slow_after_s, calls[0].probing = timing.slow_after_s, timing.probing
    hedge_step = chain[cursor + 1] if resilience.hedge.enabled and cursor + 1 < len(chain) else None
    hedge_at = time.monotonic() + timing.hedge_after_s if hedge_step is not None else None
    limit = time.monotonic() + max(0.0, deadline_at - ctx.clock()) + _GRACE_S
    reservation: list[float] | None = None
    refused = False
    finished: list[_Call] = []
    winner: _Call | None = None
    while len(finished) < len(calls):
        waiting_to_hedge = hedge_at is not None and hedge_step is not None and len(calls) == 1
        until = min(hedge_at, limit) if waiting_to_hedge and hedge_at is not None else limit
        try:
            call = results.get(timeout=max(0.0, until - time.monotonic()))
        except queue.Empty:
            if waiting_to_hedge and hedge_step is not None and time.monotonic() < limit:
                reservation = _reserve_hedge(ctx, state, hedge_step, deadline_at)
                if reservation is not None:
                    hedge_at = None
                    launch(hedge_step, cursor + 2 < len(chain), hedge=True)
                else:
                    # Refused (budget, or the hedge's provider is unavailable): ask again a little later, since
                    # the budget refills as other answers are paid for. Without this a hung primary that missed
                    # its hedge would wait for its full timeout.
                    if not refused:
                        runtime.stream_writer({"event": "hedge_refused", "provider": hedge_step["provider"]})
                    refused = True
                    hedge_at = time.monotonic() + max(timing.hedge_after_s, _HEDGE_RECHECK_S)
                continue
            break  # past the deadline and the grace: whatever still runs is abandoned
        finished.append(call)
        if call.reply is not None:
            vendor = registry.vendor_of(call.step["provider"])
            cites = registry.provider_settings(call.step["provider"]).cites
            call.problem = problem_with(candidate_from(call.reply, call.step, vendor), state, cites)
            if call.problem is None:
                winner = call
                break
        if len(calls) == 1:
            break  # the attempt ended before any hedge started: the router decides what comes next
    chosen = winner or next((c for c in finished if c.reply is not None), None)
    return _Group(calls, finished, chosen), reservation


def _reserve_hedge(ctx: Context, state: AnalysisState, step: ChainStep, deadline_at: float) -> list[float] | None:
    registry = ctx.registry
    if deadline_at - ctx.clock() < registry.settings.resilience.retry.min_attempt_s:
        return None
    if not registry.availability(step["provider"]).available:
        return None
    return registry.hedge_budget.try_reserve(_estimated_cost(registry, step, state))


def _record_group(ctx: Context, state: AnalysisState, group: _Group, reservation: list[float] | None) -> list[Attempt]:
    """Turn the calls into attempts (the chosen reply last, where validate and score look for it), and count
    them in health, spend and the hedge budget.

    What hedging added is the hedge call's cost, whichever call won: had the primary answered without it, the
    hedge is all we paid on top (when the primary was hung, this overstates the extra, which errs on the side of
    the budget). Counting the loser instead would let a slow free primary (the local model) hedge to a paid
    provider without limit.
    """
    registry = ctx.registry
    attempts: list[Attempt] = []
    hedge_usd = 0.0
    for call in [c for c in group.calls if c is not group.chosen] + ([group.chosen] if group.chosen else []):
        step = call.step
        if call in group.finished:
            invalid = call.reply is not None and call is not group.chosen
            attempt = make_attempt(
                registry,
                step,
                "answer",
                reply=call.reply,
                error=call.error,
                latency_ms=call.latency_ms,
                started_at=call.started_at,
                outcome="invalid" if invalid else None,
                note=call.problem if invalid else None,
            )
            if invalid:
                attempt["error_class"] = "invalid_answer"
            registry.health.record(
                step["provider"],
                ok=call.error is None,
                latency_ms=attempt["latency_ms"],
                error_class=call.error.error_class if call.error else None,
            )
        else:
            latency_ms = (time.monotonic() - call.started) * 1000
            other = group.chosen.step["provider"] if group.chosen else None
            cost = _estimated_cost(registry, step, state)
            attempt = make_attempt(
                registry,
                step,
                "answer",
                reply=None,
                error=None,
                latency_ms=latency_ms,
                started_at=call.started_at,
                outcome="cancelled",
                note=(f"abandoned after {latency_ms:.0f} ms: {other} answered first" if other else "past the deadline")
                + "; the call may still be billed, so its cost is the estimate",
            )
            attempt["error_class"] = "cancelled"
            attempt["cost_usd"] = round(cost, 8)
            # A primary overtaken after running past its provider's usual p95 was too slow, and that is the
            # provider's doing: it counts as a failure, so a hung provider's circuit opens after a few hedges; so
            # does an overtaken half-open probe, which had one chance to show the provider is back. A primary
            # overtaken sooner (hedged early because its provider is suspect) or a hedge overtaken by the primary
            # says nothing about its provider.
            slow = other is None or call.probing or latency_ms / 1000 >= call.slow_after_s
            if not call.hedge and slow:
                why = "overtaken" if other else "timeout"
                registry.health.record(step["provider"], ok=False, latency_ms=latency_ms, error_class=why)
        if call.hedge:
            attempt["hedge"] = True
            hedge_usd += attempt["cost_usd"]
        else:
            registry.hedge_budget.record_spend(attempt["cost_usd"])
        attempts.append(attempt)
    if reservation is not None:
        registry.hedge_budget.settle(reservation, hedge_usd)
    return attempts


def call_model(state: AnalysisState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = context_of(runtime)
    registry = ctx.registry
    cursor = state.get("cursor", 0)
    deadline_at = ctx.deadline_at or state["deadline_at"]
    retry_at = state.get("retry_at")
    if retry_at is not None and retry_at > ctx.clock():
        # The failed attempt is already checkpointed; the wait happens here, after it.
        ctx.sleep(retry_at - ctx.clock())
    group, reservation = _run_group(ctx, state, cursor, build_prompt(state), deadline_at, runtime)
    attempts = _record_group(ctx, state, group, reservation)
    for attempt in attempts:
        runtime.stream_writer({"event": "attempt_end", **attempt})
    update: dict[str, Any] = {"attempts": attempts, "retry_at": None, "stop_reason": None}
    chosen = group.chosen
    if chosen is not None and chosen.reply is not None:
        update["candidate"] = candidate_from(chosen.reply, chosen.step, registry.vendor_of(chosen.step["provider"]))
    else:
        update["candidate"] = None
        stop = next((c.error for c in group.finished if c.error is not None and c.error.disposition == "stop"), None)
        update["stop_reason"] = str(stop) if stop is not None else None
    # A hedged pair used two steps of the chain: a later fallback must not call the hedge's provider again. The
    # last call's failure is handled by its disposition like any other: it may be retried (a recorded retry of
    # that step, not a fallback to it).
    next_cursor = cursor + len(group.calls)
    last = group.calls[-1]
    if update["candidate"] is None and update["stop_reason"] is None and last in group.finished and last.error:
        provider = last.step["provider"]
        made = sum(1 for a in state.get("attempts", []) if a["provider"] == provider and a["role"] == "answer") + 1
        policy = registry.settings.resilience.retry
        wait = retry_wait_s(last.error, made=made, remaining_s=deadline_at - ctx.clock(), policy=policy, rng=ctx.rng)
        if wait is not None and registry.health.breaker(provider).retry_allowed(policy.budget_ratio):
            registry.health.breaker(provider).note_retry()
            update["retry_at"] = ctx.clock() + wait
            next_cursor = cursor + len(group.calls) - 1
            runtime.stream_writer({"event": "retry_scheduled", "provider": provider, "wait_s": round(wait, 3)})
    update["cursor"] = next_cursor
    update["deadline_passed"] = ctx.clock() >= deadline_at
    return update


def route_after_call(state: AnalysisState) -> Literal["validate", "call_model", "score"]:
    """Validate a successful answer; on failure retry or try the next provider while the chain and deadline allow."""
    if state.get("candidate") is not None:
        return "validate"
    if state.get("stop_reason") or state.get("deadline_passed"):
        return "score"
    return "call_model" if state.get("cursor", 0) < len(state.get("chain", [])) else "score"


def route_after_route(state: AnalysisState) -> Literal["call_model", "score"]:
    return "call_model" if state.get("chain") else "score"
