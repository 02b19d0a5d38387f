"""route: turn the query's needs, provider availability and request constraints into an ordered chain.

The primary is the cheapest *adequate* tier: fresh facts need web search (realtime), complex multi-step analysis
needs the premium model, simple text jobs are within the local model's reach. Where the classifier is unsure
(a probability within ``uncertainty_band`` of its threshold), the choice goes to the option with the lower
expected cost: its price plus the probability that it is inadequate times what a wrong answer costs. Fallbacks
follow, ordered by adequacy, then health, then price. Every choice carries its reason.
"""

from __future__ import annotations

import hashlib
from typing import Any

from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.state import AnalysisState, ChainStep, Classification, Constraints
from nodes.costing import estimate_call_cost, premium_provider
from providers.config import RoutingMode, Tier
from providers.registry import ProviderRegistry


def inadequacy(tier: Tier, c: Classification) -> float:
    """Probability that ``tier`` cannot serve the query, from the classifier's probabilities.

    local serves only simple jobs without fresh facts; premium has no web search; realtime is a search-first
    model and serves everything but deep multi-step strategy without fresh facts, where it falls short about
    half the time (a stated prior, to be replaced by measured outcomes).
    """
    fresh = c["fresh_p"]
    simple = c["complexity_p"].get("simple", 0.0)
    complex_ = c["complexity_p"].get("complex", 0.0)
    if tier == "local":
        return 1.0 - (1.0 - fresh) * simple
    if tier == "premium":
        return fresh
    return (1.0 - fresh) * complex_ * 0.5


def _rule_tier(c: Classification, registry: ProviderRegistry) -> tuple[Tier, str]:
    routing = registry.settings.routing
    if c["needs_fresh"]:
        return "realtime", f"needs fresh facts (p={c['fresh_p']:.2f}): web search with citations"
    if c["complexity"] == "complex":
        return "premium", f"complex analysis (p={c['complexity_p'].get('complex', 0):.2f})"
    if c["complexity"] == "simple":
        return "local", f"simple {c['task']} job (p={c['complexity_p'].get('simple', 0):.2f}): local model suffices"
    tier = routing.moderate_by_task.get(c["task"], routing.moderate_default)
    return tier, f"moderate {c['task']} job: policy sends it to {tier}"


def _uncertain(c: Classification, registry: ProviderRegistry) -> bool:
    routing = registry.settings.routing
    top_complexity = max(c["complexity_p"].values(), default=1.0)
    return abs(c["fresh_p"] - routing.fresh_threshold) < routing.uncertainty_band or top_complexity < 0.5 + (
        routing.uncertainty_band
    )


def caller_bucket(caller_key: str) -> float:
    """Map a caller key to [0, 100) stably across processes (Python's hash() is salted per process)."""
    digest = hashlib.sha256(caller_key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def intelligent_chain(
    registry: ProviderRegistry, c: Classification, query: str, constraints: Constraints
) -> tuple[list[ChainStep], list[str]]:
    """Order the usable providers: adequate primary first, then by adequacy, health and price."""
    reasons: list[str] = []
    usable: list[str] = []
    for name, avail in registry.all_availability().items():
        if avail.available:
            usable.append(name)
        else:
            reasons.append(f"{name} ({avail.tier}) skipped: {avail.reason}")
    if constraints.get("require_citations"):
        citing = [n for n in usable if registry.provider_settings(n).cites]
        for n in sorted(set(usable) - set(citing)):
            reasons.append(f"{n} skipped: citations required and it cannot cite sources")
        usable = citing
    cost = {n: estimate_call_cost(registry, n, c, query) for n in usable}
    max_cost = constraints.get("max_cost_usd")
    if max_cost is not None:
        for n in [n for n in usable if cost[n] > max_cost]:
            reasons.append(f"{n} skipped: estimated ${cost[n]:.4f} exceeds max_cost_usd ${max_cost:.4f}")
            usable.remove(n)

    penalty = registry.settings.routing.wrong_answer_cost_usd
    if constraints.get("cost_sensitive"):
        # The caller accepts a weaker answer to save money: a wrong answer weighs a quarter as much.
        penalty *= 0.25
        reasons.append("cost-sensitive request: wrong-answer cost weighted at 25%")
    expected = {n: cost[n] + inadequacy(registry.tier_of(n), c) * penalty for n in usable}

    wanted, why = _rule_tier(c, registry)
    primary: str | None = None
    if _uncertain(c, registry) and usable:
        best = min(usable, key=lambda n: (expected[n], cost[n]))
        rule_choice = next((n for n in usable if registry.tier_of(n) == wanted), None)
        primary = best
        reasons.append(
            f"uncertain classification: chose {best} by expected cost ${expected[best]:.4f} "
            f"(price ${cost[best]:.4f} + P(inadequate)={inadequacy(registry.tier_of(best), c):.2f} x ${penalty:.3f})"
            + (f"; rule choice {rule_choice} would be ${expected[rule_choice]:.4f}" if rule_choice else "")
        )
    else:
        primary = next((n for n in usable if registry.tier_of(n) == wanted), None)
        if primary is None and usable:
            primary = min(usable, key=lambda n: (inadequacy(registry.tier_of(n), c), cost[n]))
            reasons.append(f"wanted {wanted} ({why}) but no {wanted} provider is usable; primary {primary}")
        elif primary is not None:
            reasons.append(f"primary {primary}: {why}")

    health = {n: registry.health.breaker(n).snapshot().error_rate for n in usable}
    rest = sorted(
        (n for n in usable if n != primary),
        key=lambda n: (round(inadequacy(registry.tier_of(n), c), 1), health[n], cost[n]),
    )
    chain: list[ChainStep] = []
    for position, n in enumerate(([primary] if primary else []) + rest):
        role = "primary" if position == 0 else f"fallback {position}"
        chain.append(
            {
                "provider": n,
                "tier": registry.tier_of(n),
                "model": registry.model_of(n),
                "reason": f"{role}: P(inadequate)={inadequacy(registry.tier_of(n), c):.2f}, "
                f"est. ${cost[n]:.4f}, recent error rate {health[n]:.0%}",
            }
        )
    if not chain:
        reasons.append("no provider can serve this request")
    return chain, reasons


def legacy_chain(registry: ProviderRegistry) -> tuple[list[ChainStep], list[str]]:
    """Reproduce the strategist's original behaviour: premium first, then realtime, never local."""
    chain: list[ChainStep] = []
    reasons = ["legacy routing: premium first, then realtime"]
    for tier in ("premium", "realtime"):
        for name in registry.names():
            if registry.tier_of(name) != tier:
                continue
            avail = registry.availability(name)
            if not avail.available:
                reasons.append(f"{name} ({tier}) skipped: {avail.reason}")
                continue
            chain.append({"provider": name, "tier": tier, "model": registry.model_of(name), "reason": "legacy"})
    return chain, reasons


def effective_mode(registry: ProviderRegistry, caller_key: str | None) -> RoutingMode:
    """Apply the percentage rollout: callers outside it (and anonymous callers) keep legacy routing."""
    routing = registry.settings.routing
    partial = routing.mode == "intelligent" and routing.rollout_percent < 100
    if partial and (caller_key is None or caller_bucket(caller_key) >= routing.rollout_percent):
        return "legacy"
    return routing.mode


def plan(
    registry: ProviderRegistry,
    c: Classification,
    query: str,
    constraints: Constraints,
    caller_key: str | None = None,
) -> dict[str, Any]:
    """Build the routing update (also used by the `route` dry run, which makes no model call)."""
    mode = effective_mode(registry, caller_key)
    smart, smart_reasons = intelligent_chain(registry, c, query, constraints)
    premium = premium_provider(registry)
    baseline = estimate_call_cost(registry, premium, c, query) if premium else 0.0
    if mode == "intelligent":
        chain, reasons = smart, smart_reasons
        shadow = None
    else:
        chain, reasons = legacy_chain(registry)
        shadow = None
        if mode == "shadow":
            would = smart[0]["provider"] if smart else None
            shadow = {
                "chain": smart,
                "estimated_cost_usd": estimate_call_cost(registry, would, c, query) if would else 0.0,
            }
            reasons.append(f"shadow: intelligent routing would have chosen {would}")
    estimated = estimate_call_cost(registry, chain[0]["provider"], c, query) if chain else 0.0
    return {
        "chain": chain,
        "reasons": reasons,
        "routing_mode": mode,
        "shadow": shadow,
        "estimated_cost_usd": round(estimated, 6),
        "baseline_estimate_usd": round(baseline, 6),
        "cursor": 0,
    }


def route(state: AnalysisState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = context_of(runtime)
    return plan(ctx.registry, state["classification"], state["query"], state.get("constraints", {}), ctx.caller_key)
