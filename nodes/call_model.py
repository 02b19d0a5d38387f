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

Every call, the hedge included, must first fit what the analysis holds against the spend caps
(nodes/policy/budget.py: Cover); one that does not is not made, and a ``skipped`` attempt says why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

from langgraph.config import get_config
from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.state import AnalysisState, Attempt, CallUpdate, ChainStep
from nodes.policy.answers import candidate_from
from nodes.policy.ask_again import step_to_ask_again
from nodes.policy.attempts import retry_wait_s, skipped_attempt
from nodes.policy.budget import correct_spend, not_made, reservations_of
from nodes.policy.costing import estimate_call_cost
from nodes.policy.events import RateLimitWait, RetryScheduled
from nodes.policy.exclusion import failed_providers
from nodes.policy.hedging import Group, hedge_not_made, in_record_order, race, record_group, steps_used
from nodes.policy.progress import emit
from nodes.policy.prompt import build_prompt
from providers.registry import ProviderRegistry


def call_model(state: AnalysisState, runtime: Runtime[Context]) -> CallUpdate:
    """Make one attempt (or one hedged pair) on the chain's current step and record what came back."""
    ctx = context_of(runtime)
    registry = ctx.registry
    cursor = state.get("cursor", 0)
    deadline_at = ctx.deadline_at or state["deadline_at"]
    retry_at = state.get("retry_at")
    if retry_at is not None and retry_at > ctx.clock():
        # The failed attempt is already checkpointed; the wait happens here, after it.
        ctx.sleep(retry_at - ctx.clock())
    skipped = _skips(state, registry, cursor, deadline_at - ctx.clock(), retrying=retry_at is not None)
    if skipped:
        # No provider was called: the next execution starts at the first step worth calling.
        update: CallUpdate = {
            "attempts": skipped,
            "cursor": cursor + len(skipped),
            "retry_at": None,
            "stop_reason": None,
            "candidate": None,
            "deadline_passed": ctx.clock() >= deadline_at,
        }
        return _or_ask_again(update, state, ctx, runtime, deadline_at)
    cover = ctx.cover(state)
    step = state["chain"][cursor]
    estimate = _estimate(registry, state, step)
    refusal = cover.admit(estimate)
    if refusal is not None:
        # Nothing this analysis holds, nor what is left of the cap, pays for this call: the next step (a cheaper
        # tier, the free local model) may still fit, so the chain goes on.
        what = "the retry of" if retry_at is not None else "the call to" if cursor == 0 else "the fallback to"
        attempt = skipped_attempt(registry, step, "answer", not_made(refusal, f"{what} {step['provider']}", estimate))
        refused: CallUpdate = {
            "attempts": [attempt],
            "cursor": cursor + 1,
            "retry_at": None,
            "stop_reason": None,
            "candidate": None,
            "deadline_passed": ctx.clock() >= deadline_at,
        }
        return _or_ask_again(refused, state, ctx, runtime, deadline_at)

    def admit_hedge(hedge: ChainStep) -> str | None:
        cost = _estimate(registry, state, hedge)
        refused = cover.admit(cost)
        return None if refused is None else not_made(refused, f"the hedge to {hedge['provider']}", cost)

    cooling_s = registry.health.cooldowns.left_s(step["provider"])
    if 0 < cooling_s < deadline_at - ctx.clock() - registry.settings.resilience.retry.min_attempt_s:
        # Planned while rate limited (nodes/route.py): it asked to be left alone that long, and a call now would
        # only be refused again. Waited here, before the call, so nothing of it is checkpointed.
        emit(runtime, RateLimitWait(provider=step["provider"], wait_s=round(cooling_s, 3)))
        ctx.sleep(cooling_s)
    group, reservation = race(
        registry, ctx.clock, state, cursor, build_prompt(state), deadline_at, runtime.stream_writer, admit=admit_hedge
    )
    # A refused hedge is recorded first: the chosen reply stays the last attempt, where validate looks for it.
    refused_hedge = hedge_not_made(registry, group)
    held = [*reservations_of(state), *cover.extra]
    on_settled = _cost_correction(state, ctx, group, held, first=len(state.get("attempts", [])) + len(refused_hedge))
    attempts = refused_hedge + record_group(registry, state, group, reservation, on_settled=on_settled)
    update = {"attempts": attempts, "retry_at": None, "stop_reason": None, "budget_extra": cover.extra}
    chosen = group.chosen
    if chosen is not None and chosen.reply is not None:
        update["candidate"] = candidate_from(chosen.reply, chosen.step, registry.vendor_of(chosen.step["provider"]))
    else:
        update["candidate"] = None
        stop = next((c.error for c in group.finished if c.error is not None and c.error.disposition == "stop"), None)
        update["stop_reason"] = str(stop) if stop is not None else None
    # A hedged pair used two steps of the chain (a duplicate of the same step, one): a later fallback must not call
    # the hedge's provider again. The last call's failure is handled by its disposition like any other: it may be
    # retried (a recorded retry of that step, not a fallback to it).
    used = steps_used(group)
    next_cursor = cursor + used
    last, last_index = group.calls[-1], cursor + used - 1
    if last not in group.finished and group.calls[0].error is not None:
        # The primary failed and its hedge was given up (it ran past its usual latency): the primary's failure
        # decides, so a 503 is retried on its own step before the chain falls to a last resort.
        last, last_index = group.calls[0], cursor
    if update["candidate"] is None and update["stop_reason"] is None and last in group.finished and last.error:
        provider = last.step["provider"]
        made = sum(1 for a in state.get("attempts", []) if a["provider"] == provider and a["role"] == "answer") + 1
        policy = registry.settings.resilience.retry
        # Only an adequate step counts: a last resort's answer is degraded, worse than waiting once more.
        fallback_left = any(not s.get("last_resort") for s in state["chain"][cursor + used :])
        wait = retry_wait_s(
            last.error,
            made=made,
            remaining_s=deadline_at - ctx.clock(),
            policy=policy,
            rng=ctx.rng,
            fallback_left=fallback_left,
        )
        # The retry budget (a share of the provider's recent successes) keeps retries from piling onto a provider
        # in trouble, and a provider that has not answered lately has earned none. An adequate step gets one retry
        # regardless when nothing adequate is left after it: the alternative is a degraded answer or none
        # (bench/chaos.py, 20% errors: a fresh-fact question's one 503 from a Perplexity without budget sent it to
        # the last resorts, which failed too, and the analysis went unanswered).
        budget = registry.health.breaker(provider).retry_allowed(policy.budget_ratio)
        adequate = not last.step.get("last_resort")
        if wait is not None and (budget or (made == 1 and adequate and not fallback_left)):
            registry.health.breaker(provider).note_retry()
            update["retry_at"] = ctx.clock() + wait
            next_cursor = last_index
            emit(runtime, RetryScheduled(provider=provider, wait_s=round(wait, 3)))
    update["cursor"] = next_cursor
    update["deadline_passed"] = ctx.clock() >= deadline_at
    return _or_ask_again(update, state, ctx, runtime, deadline_at)


def _or_ask_again(
    update: CallUpdate, state: AnalysisState, ctx: Context, runtime: Runtime[Context], deadline_at: float
) -> CallUpdate:
    """Return the update, or, when it leaves the whole chain failed with time left, one that asks a step once more
    (nodes/policy/ask_again.py): the cursor goes back to it, as for a retry."""
    chain = state["chain"]
    if update.get("candidate") is not None or update.get("stop_reason") or update.get("retry_at") is not None:
        return update
    attempts = [*state.get("attempts", []), *update.get("attempts", [])]
    failed = failed_providers(attempts)
    # Spent: past the last step, or (after a step asked once more failed) every step left has failed already.
    if any(s["provider"] not in failed for s in chain[update["cursor"] :]) or update["deadline_passed"]:
        return update
    registry = ctx.registry
    policy = registry.settings.resilience.retry
    left_s = deadline_at - ctx.clock()
    if left_s < policy.min_attempt_s:
        return {**update, "cursor": len(chain)}

    def may_answer(name: str) -> bool:
        return (
            registry.availability(name).available
            and registry.health.cooldowns.left_s(name) < left_s - policy.min_attempt_s
        )

    def can_answer_now(name: str) -> bool:
        return may_answer(name) and not registry.health.stalls.stalled(name)

    def budget_allows(name: str) -> bool:
        return registry.health.breaker(name).retry_allowed(policy.budget_ratio)

    # A provider gone silent is asked only when nothing else can be: the alternative is no answer with most of the
    # deadline unused (chaos seed 27: Perplexity's one call timed out and its random hangs had it flagged silent,
    # Gemini hung, the local circuit open: a 503 after 2.3 s). Its call is a retry, so it gets its provider's own
    # limit, not all the time left (nodes/policy/hedging.py), and a silent provider's call is hedged at the floor.
    index = step_to_ask_again(
        chain,
        attempts,
        can_answer_now=can_answer_now,
        max_calls=policy.max_retries + 1,
        budget_allows=budget_allows,
        may_answer=may_answer,
    )
    if index is None:
        return {**update, "cursor": len(chain)}  # spent: nothing is left to skip through
    provider = chain[index]["provider"]
    made = sum(1 for a in attempts if a["provider"] == provider and a["role"] == "answer" and a["outcome"] != "skipped")
    # Full-jitter backoff, as for a retry; a Retry-After still running is waited out before the call (cooling_s).
    wait = ctx.rng.uniform(0, min(policy.max_backoff_s, policy.base_backoff_s * 2 ** (made - 1)))
    wait = min(wait, max(0.0, left_s - policy.min_attempt_s))
    registry.health.breaker(provider).note_retry()  # a call more than the chain planned, like a retry
    emit(runtime, RetryScheduled(provider=provider, wait_s=round(wait, 3)))
    return {**update, "cursor": index, "retry_at": ctx.clock() + wait}


def _estimate(registry: ProviderRegistry, state: AnalysisState, step: ChainStep) -> float:
    """Price a call as route did (the same token model), so a planned call fits the plan's reservation."""
    classification = state.get("classification")
    if classification is None:
        return 0.0
    return estimate_call_cost(registry, step["provider"], classification, state["query"])


def _cost_correction(
    state: AnalysisState, ctx: Context, group: Group, held: list[Mapping[str, object]], first: int
) -> Callable[[int, float], None] | None:
    """Return how a hedge's loser that completes later corrects its estimated cost: in the ledger (its attempt's
    index is ``first``, where this execution's recorded calls start, plus its position among them) and, when it
    billed more than the estimate, in the spend caps (score settled the estimate)."""
    correct, budget = ctx.correct_cost, ctx.budget
    if correct is None and budget is None:
        return None
    thread_id = str(get_config().get("configurable", {}).get("thread_id", ""))
    # Computed now: the correction may come from the loser's thread after this node has returned.
    estimates = [_estimate(ctx.registry, state, call.step) for call in in_record_order(group)]

    def on_settled(position: int, usd: float) -> None:
        if correct is not None:
            correct(thread_id, first + position, usd)
        correct_spend(budget, held, estimates[position], usd)

    return on_settled


def _skips(
    state: AnalysisState, registry: ProviderRegistry, cursor: int, remaining_s: float, *, retrying: bool
) -> list[Attempt]:
    """Return "skipped" attempts for the steps from ``cursor`` not worth calling while a later step is:
    a provider that already failed in this analysis (not a scheduled retry of it), and the local model when its
    queue's expected wait would not fit the time left (then the next step, a cloud tier, serves the job)."""
    chain = state.get("chain", [])
    failed = failed_providers(state.get("attempts", []))
    skipped: list[Attempt] = []
    rejected = _rejected_adequate(state)
    if rejected is not None and cursor < len(chain) and chain[cursor].get("last_resort"):
        # The adequate provider answered and its answer was unusable (fresh facts without sources): that is an
        # answer to the question, not an outage, so nothing answers from memory in its place.
        why = f"last resort not asked: {rejected} answered and its answer was rejected"
        return [skipped_attempt(registry, step, "answer", why) for step in chain[cursor:]]
    for index in range(cursor, len(chain)):
        step = chain[index]
        name = step["provider"]
        if name in failed and not (retrying and index == cursor):
            # The last step too: once the chain is spent, nodes/policy/ask_again.py picks what is asked once more.
            reason = f"not asked again: {name} failed earlier in this analysis"
        elif index == len(chain) - 1:
            break  # the last step is tried however long the local queue: nothing comes after it
        else:
            wait_s = registry.expected_wait_s(name)
            if wait_s <= 0 or wait_s < remaining_s * registry.settings.resilience.retry.attempt_share:
                break
            reason = (
                f"local queue: expected wait {wait_s:.1f} s exceeds the {remaining_s:.1f} s left "
                f"for this call; the next tier serves it"
            )
        skipped.append(skipped_attempt(registry, step, "answer", reason))
    return skipped


def _rejected_adequate(state: AnalysisState) -> str | None:
    """Return an adequate (not last-resort) provider whose answer in this analysis was rejected, if any."""
    last_resorts = {s["provider"] for s in state.get("chain", []) if s.get("last_resort")}
    attempts = state.get("attempts", [])
    rejected = [attempts[r["attempt_index"]] for r in state.get("rejections", []) if r["attempt_index"] < len(attempts)]
    rejected += [a for a in attempts if a["outcome"] == "invalid"]
    return next((a["provider"] for a in rejected if a["role"] == "answer" and a["provider"] not in last_resorts), None)


def route_after_call(state: AnalysisState) -> Literal["validate", "call_model", "score"]:
    """Validate a successful answer; on failure retry or try the next provider while the chain and deadline allow."""
    if state.get("candidate") is not None:
        return "validate"
    if state.get("stop_reason") or state.get("deadline_passed"):
        return "score"
    return "call_model" if state.get("cursor", 0) < len(state.get("chain", [])) else "score"


def route_after_route(state: AnalysisState) -> Literal["call_model", "score"]:
    """Call the first provider of the chain; with an empty chain there is nothing to call."""
    return "call_model" if state.get("chain") else "score"
