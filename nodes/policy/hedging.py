"""Hedged calls: one attempt on a chain step, and the next step started in parallel when the first is slow.

The first usable answer wins; the other call is abandoned and recorded as ``cancelled`` with its estimated
cost. Hedges are started within the hedge budget (providers/resilience/hedge_budget.py), and a provider's
"slow" is its observed latency quantile (providers/resilience/breaker.py).
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphs.state import AnalysisState, Attempt, ChainStep
from nodes.policy.answers import candidate_from, problem_with
from nodes.policy.attempts import attempt_timeout_s, call_provider, make_attempt
from nodes.policy.costing import estimate_call_cost
from nodes.policy.events import AttemptStarted, HedgeRefused
from providers.base import ModelReply, Prompt
from providers.errors import ProviderError
from providers.registry import ProviderRegistry

Emit = Callable[[dict[str, Any]], None]

# How long past the deadline call_model still waits for a call that should have timed out by itself.
_GRACE_S = 1.0
# How often a slow attempt whose hedge was refused asks the budget again.
_HEDGE_RECHECK_S = 0.25


@dataclass(eq=False)  # calls are compared by identity: an abandoned call's fields change under its thread
class Call:
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
class Group:
    calls: list[Call]
    finished: list[Call]
    chosen: Call | None  # the reply handed to validate: the first usable one, else the first reply at all


def _estimated_cost(registry: ProviderRegistry, step: ChainStep, state: AnalysisState) -> float:
    classification = state.get("classification")
    if classification is None:
        return 0.0
    return estimate_call_cost(registry, step["provider"], classification, state["query"])


def race(
    registry: ProviderRegistry,
    clock: Callable[[], float],
    state: AnalysisState,
    cursor: int,
    prompt: Prompt,
    deadline_at: float,
    emit: Emit,
) -> tuple[Group, list[float] | None]:
    """Call the chain's step at ``cursor``; hedge with the next step if it is slow. Return the calls and the
    hedge's budget reservation (None when no hedge started)."""
    resilience = registry.settings.resilience
    chain = state["chain"]
    results: queue.Queue[Call] = queue.Queue()
    calls: list[Call] = []

    def launch(step: ChainStep, fallbacks_left: bool, hedge: bool) -> None:
        now = clock()
        timeout_s = attempt_timeout_s(deadline_at - now, fallbacks_left, resilience.retry)
        call = Call(step=step, started_at=now, started=time.monotonic(), hedge=hedge)
        calls.append(call)
        emit(AttemptStarted(provider=step["provider"], model=step["model"], hedge=hedge).wire())

        def run() -> None:
            call.reply, call.error = call_provider(registry, step, prompt, timeout_s)
            call.latency_ms = (time.monotonic() - call.started) * 1000
            results.put(call)

        # A thread of our own per call: the loser of a hedge is abandoned, not joined, and must not hold up
        # the node (the adapter's own timeout ends it).
        # In the node's context, so the run's callbacks (tracing spans, LangSmith) see the provider call.
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(run,), name=f"attempt-{step['provider']}", daemon=True).start()

    timing = registry.health.breaker(chain[cursor]["provider"]).hedge_timing(registry.settings)
    launch(chain[cursor], cursor + 1 < len(chain), hedge=False)
    calls[0].slow_after_s, calls[0].probing = timing.slow_after_s, timing.probing
    hedge_step = chain[cursor + 1] if resilience.hedge.enabled and cursor + 1 < len(chain) else None
    hedge_at = time.monotonic() + timing.hedge_after_s if hedge_step is not None else None
    limit = time.monotonic() + max(0.0, deadline_at - clock()) + _GRACE_S
    reservation: list[float] | None = None
    refused = False
    finished: list[Call] = []
    winner: Call | None = None
    while len(finished) < len(calls):
        waiting_to_hedge = hedge_at is not None and hedge_step is not None and len(calls) == 1
        until = min(hedge_at, limit) if waiting_to_hedge and hedge_at is not None else limit
        try:
            call = results.get(timeout=max(0.0, until - time.monotonic()))
        except queue.Empty:
            if waiting_to_hedge and hedge_step is not None and time.monotonic() < limit:
                reservation = _reserve_hedge(registry, clock, state, hedge_step, deadline_at)
                if reservation is not None:
                    hedge_at = None
                    launch(hedge_step, cursor + 2 < len(chain), hedge=True)
                else:
                    # Refused (budget, or the hedge's provider is unavailable): ask again a little later, since
                    # the budget refills as other answers are paid for. Without this a hung primary that missed
                    # its hedge would wait for its full timeout.
                    if not refused:
                        emit(HedgeRefused(provider=hedge_step["provider"]).wire())
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
    return Group(calls, finished, chosen), reservation


def _reserve_hedge(
    registry: ProviderRegistry, clock: Callable[[], float], state: AnalysisState, step: ChainStep, deadline_at: float
) -> list[float] | None:
    if deadline_at - clock() < registry.settings.resilience.retry.min_attempt_s:
        return None
    if not registry.availability(step["provider"]).available:
        return None
    return registry.hedge_budget.try_reserve(_estimated_cost(registry, step, state))


def record_group(
    registry: ProviderRegistry, state: AnalysisState, group: Group, reservation: list[float] | None
) -> list[Attempt]:
    """Turn the calls into attempts (the chosen reply last, where validate and score look for it), and count
    them in health, spend and the hedge budget.

    What hedging added is the hedge call's cost, whichever call won: had the primary answered without it, the
    hedge is all we paid on top (when the primary was hung, this overstates the extra, which errs on the side of
    the budget). Counting the loser instead would let a slow free primary (the local model) hedge to a paid
    provider without limit.
    """
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
