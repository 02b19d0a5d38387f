"""route: turn the query's needs, provider availability and request constraints into an ordered chain.

Adequacy model. A query falls in exactly one need class, and each tier serves some of them:

    need class  what it is                                                  served by
    fresh       needs fresh facts (news, polls, schedules, who leads now)   realtime (web search, citations)
    complex     no fresh facts; multi-step strategic analysis               premium
    moderate    no fresh facts; moderate job of a task the local model      premium, realtime
                cannot do (policy: [routing].local_moderate_tasks)
    light       no fresh facts; a simple job, or a moderate job of a        premium, realtime, local
                local task (summary, translation, extraction, tagging)

One softening, for the router only: realtime is credited with serving ``[routing].realtime_complex_adequacy``
(a quarter) of complex jobs, because a capable general model with search is a far better stand-in for premium
than the local model; the benchmark's adequacy (bench/routing.py) keeps the strict table.

The classifier gives P(fresh), P(complexity) and P(task); taking its three heads as independent,
P(fresh) = f, P(complex) = (1-f) p_complex, P(moderate) = (1-f) p_moderate (1-q), P(light) = (1-f) (p_simple +
p_moderate q), with q = P(task is a local task). P(tier adequate) = sum over the classes of P(class) x the share
of that class the tier serves.

Decision rule. Among the usable providers (available, citing when citations are required, within max_cost_usd,
not observed to be slower than the time left), the primary minimises the expected cost

    E[provider] = expected price + sum over classes of P(class) x (1 - share served) x wrong_answer_cost[class]

(the price is itself an expectation over the complexity, see nodes/policy/costing.py). With a confident
classification this picks the cheapest tier that serves the likely need (fresh -> realtime, complex ->
premium, light -> local); when it is uncertain, the same rule weighs the price against the expected cost of
being wrong, and the reasons say so. Fallbacks follow by adequacy, then health (recent error rate), then price.
Every choice carries its reason.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, get_args

from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.state import AnalysisState, ChainStep, Classification, Constraints, RouteUpdate
from nodes.policy.costing import baseline_cost, estimate_call_cost
from providers.config import RoutingMode, RoutingSettings, Tier
from providers.registry import ProviderRegistry
from providers.resilience.breaker import HealthSnapshot

Need = Literal["fresh", "complex", "moderate", "light"]
NEEDS: tuple[Need, ...] = get_args(Need)
SERVES: dict[Tier, frozenset[Need]] = {
    "realtime": frozenset({"fresh", "moderate", "light"}),
    "premium": frozenset({"complex", "moderate", "light"}),
    "local": frozenset({"light"}),
}
_NEED_WORDS: dict[Need, str] = {
    "fresh": "fresh facts",
    "complex": "complex analysis",
    "moderate": "a moderate job beyond the local model",
    "light": "a light text job",
}
# Successful calls a provider needs in its health window before its median latency is trusted.
MIN_LATENCY_SAMPLES = 3


def need_of(fresh: bool, complexity: str, task: str, routing: RoutingSettings) -> Need:
    """Return the need class of a query whose labels are known (the benchmark's ground truth)."""
    if fresh:
        return "fresh"
    if complexity == "complex":
        return "complex"
    if complexity == "moderate" and task not in routing.local_moderate_tasks:
        return "moderate"
    return "light"


def need_probabilities(c: Classification, routing: RoutingSettings) -> dict[Need, float]:
    """Spread the classifier's probabilities over the need classes (heads taken as independent)."""
    f = min(1.0, max(0.0, c["fresh_p"]))
    total = sum(c["complexity_p"].values()) or 1.0
    simple, moderate, complex_ = (c["complexity_p"].get(k, 0.0) / total for k in ("simple", "moderate", "complex"))
    local_task = min(1.0, sum(c["task_p"].get(t, 0.0) for t in routing.local_moderate_tasks))
    return {
        "fresh": f,
        "complex": (1 - f) * complex_,
        "moderate": (1 - f) * moderate * (1 - local_task),
        "light": (1 - f) * (simple + moderate * local_task),
    }


@dataclass(frozen=True)
class Option:
    """One usable provider, priced and judged for this query."""

    provider: str
    tier: Tier
    price_usd: float
    p_adequate: float
    expected_loss_usd: float
    error_rate: float

    @property
    def expected_cost_usd(self) -> float:
        return self.price_usd + self.expected_loss_usd


@dataclass(frozen=True)
class Usable:
    """A provider this request may use: its expected price and recent health."""

    provider: str
    tier: Tier
    price_usd: float
    error_rate: float


def serves(tier: Tier, need: Need, routing: RoutingSettings) -> float:
    """Return the share of queries of this need class that the tier serves adequately."""
    if tier == "realtime" and need == "complex":
        return routing.realtime_complex_adequacy
    return 1.0 if need in SERVES[tier] else 0.0


def evaluate(
    candidate: Usable, needs: dict[Need, float], loss_usd: dict[str, float], routing: RoutingSettings
) -> Option:
    """Price and judge one usable provider for this query: adequacy and expected cost of being wrong."""
    share = {k: serves(candidate.tier, k, routing) for k in needs}
    return Option(
        provider=candidate.provider,
        tier=candidate.tier,
        price_usd=candidate.price_usd,
        p_adequate=sum(p * share[k] for k, p in needs.items()),
        expected_loss_usd=sum(p * (1 - share[k]) * loss_usd.get(k, 0.0) for k, p in needs.items()),
        error_rate=candidate.error_rate,
    )


def observed_latency_s(snap: HealthSnapshot) -> float | None:
    """Median latency of the provider's recent successful calls, once there are enough of them."""
    successes = round(snap.calls * (1 - snap.error_rate))
    if snap.p50_ms is None or successes < MIN_LATENCY_SAMPLES:
        return None
    return snap.p50_ms / 1000


def usable_providers(
    registry: ProviderRegistry,
    c: Classification,
    query: str,
    constraints: Constraints,
    budget_s: float | None,
) -> tuple[list[Usable], list[str]]:
    """Return the providers this request may use, priced, and why the others may not."""
    reasons: list[str] = []
    usable: list[Usable] = []
    max_cost = constraints.get("max_cost_usd")
    for name, avail in registry.all_availability().items():
        tier = avail.tier
        if not avail.available:
            reasons.append(f"{name} ({tier}) skipped: {avail.reason}")
            continue
        if constraints.get("require_citations") and not registry.provider_settings(name).cites:
            reasons.append(f"{name} ({tier}) skipped: citations required and it cannot cite sources")
            continue
        # One snapshot per provider and decision: with a shared (Redis) health store each one is a round trip.
        snap = registry.health.breaker(name).snapshot()
        latency = observed_latency_s(snap)
        if budget_s is not None and latency is not None and latency > budget_s:
            # Only observed latency skips: the configured timeout is a cap, and each attempt is cut at the
            # deadline anyway, so a provider that usually answers in time keeps its place.
            reasons.append(
                f"{name} ({tier}) skipped: its median latency {latency:.1f} s exceeds the {budget_s:.1f} s left"
            )
            continue
        price = estimate_call_cost(registry, name, c, query)
        if max_cost is not None and price > max_cost:
            reasons.append(f"{name} ({tier}) skipped: estimated ${price:.4f} exceeds max_cost_usd ${max_cost:.4f}")
            continue
        usable.append(Usable(name, tier, price, snap.error_rate))
    return usable, reasons


def _primary_reason(best: Option, options: list[Option], needs: dict[Need, float], band: float) -> str:
    likely = max(needs, key=needs.__getitem__)
    spread = ", ".join(f"{k} {p:.2f}" for k, p in needs.items())
    # The label rule: the cheapest usable provider that serves the most likely need.
    rule = min((o for o in options if likely in SERVES[o.tier]), key=lambda o: o.price_usd, default=None)
    uncertain = needs[likely] < 1 - band
    if rule is not None and rule.provider == best.provider and not uncertain:
        return (
            f"primary {best.provider} ({best.tier}): the query needs {_NEED_WORDS[likely]} "
            f"(p={needs[likely]:.2f}; {spread}); cheapest tier that serves it, P(adequate)={best.p_adequate:.2f}, "
            f"est. ${best.price_usd:.4f}"
        )
    if uncertain:
        why = f"uncertain classification (most likely {likely}, p={needs[likely]:.2f}; {spread})"
    elif rule is None:
        why = f"no usable provider serves {_NEED_WORDS[likely]} (p={needs[likely]:.2f}; {spread})"
    else:
        why = f"expected cost overrides the label rule ({likely}, p={needs[likely]:.2f}; {spread})"
    others = ", ".join(
        f"{o.provider} ${o.expected_cost_usd:.4f}"
        for o in sorted(options, key=lambda o: o.expected_cost_usd)
        if o.provider != best.provider
    )
    return (
        f"{why}: chose {best.provider} ({best.tier}) by expected cost ${best.expected_cost_usd:.4f} = price "
        f"${best.price_usd:.4f} + expected cost of being wrong ${best.expected_loss_usd:.4f} "
        f"(P(inadequate)={1 - best.p_adequate:.2f})" + (f"; others: {others}" if others else "")
    )


def intelligent_chain(
    registry: ProviderRegistry,
    c: Classification,
    query: str,
    constraints: Constraints,
    budget_s: float | None = None,
) -> tuple[list[ChainStep], list[str], list[Option]]:
    """Order the usable providers: least expected cost first, then by adequacy, health and price."""
    routing = registry.settings.routing
    usable, reasons = usable_providers(registry, c, query, constraints, budget_s)
    factor = 1.0
    if constraints.get("cost_sensitive"):
        factor = routing.cost_sensitive_loss_factor
        reasons.append(f"cost-sensitive request: the cost of a wrong answer is weighted at {factor:.0%}")
    loss = {str(k): v * factor for k, v in routing.wrong_answer_cost_usd.items()}
    needs = need_probabilities(c, routing)
    options = [evaluate(candidate, needs, loss, routing) for candidate in usable]
    if not options:
        reasons.append("no provider can serve this request")
        return [], reasons, []

    best = min(options, key=lambda o: (o.expected_cost_usd, o.price_usd))
    reasons.append(_primary_reason(best, options, needs, routing.uncertainty_band))
    # Adequacy to the nearest 5 points and error rate to the nearest 10, so that a negligible difference in
    # one does not outrank a real difference in the next.
    rest = sorted(
        (o for o in options if o is not best),
        key=lambda o: (-round(o.p_adequate * 20), round(o.error_rate * 10), o.price_usd),
    )
    ordered = [best, *rest]
    chain: list[ChainStep] = [
        {
            "provider": o.provider,
            "tier": o.tier,
            "model": registry.model_of(o.provider),
            "reason": f"{'primary' if i == 0 else f'fallback {i}'} {o.provider}: P(adequate)={o.p_adequate:.2f}, "
            f"est. ${o.price_usd:.4f}, expected cost ${o.expected_cost_usd:.4f}, recent error rate {o.error_rate:.0%}",
        }
        for i, o in enumerate(ordered)
    ]
    return chain, reasons, ordered


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


def caller_bucket(caller_key: str) -> float:
    """Map a caller key to [0, 100) stably across processes (Python's hash() is salted per process)."""
    digest = hashlib.sha256(caller_key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


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
    remaining_s: float | None = None,
) -> RouteUpdate:
    """Build the routing update (also used by the `route` dry run, which makes no model call).

    ``remaining_s`` is the time left before the analysis's deadline; without it, the request's ``deadline_s``.
    """
    mode = effective_mode(registry, caller_key)
    budget_s = remaining_s if remaining_s is not None else constraints.get("deadline_s")
    baseline = baseline_cost(registry, c, query)
    shadow: dict[str, object] | None = None
    if mode == "intelligent":
        chain, reasons, _ = intelligent_chain(registry, c, query, constraints, budget_s)
    else:
        chain, reasons = legacy_chain(registry)
        if mode == "legacy" and registry.settings.routing.mode == "intelligent":
            reasons.append(f"caller outside the {registry.settings.routing.rollout_percent:g}% intelligent rollout")
        if mode == "shadow":
            smart, smart_reasons, options = intelligent_chain(registry, c, query, constraints, budget_s)
            would = options[0] if options else None
            served = estimate_call_cost(registry, chain[0]["provider"], c, query) if chain else 0.0
            shadow = {
                "provider": would.provider if would else None,
                "tier": would.tier if would else None,
                "chain": smart,
                "reasons": smart_reasons,
                "estimated_cost_usd": round(would.price_usd, 6) if would else 0.0,
                "served_estimate_usd": round(served, 6),
            }
            reasons.append(
                f"shadow: intelligent routing would have chosen {would.provider if would else 'nothing'} "
                f"(est. ${would.price_usd if would else 0.0:.4f} vs ${served:.4f} served)"
            )
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


def route(state: AnalysisState, runtime: Runtime[Context]) -> RouteUpdate:
    """Build the ordered chain of providers for this query, with a reason for every choice."""
    ctx = context_of(runtime)
    deadline_at = ctx.deadline_at or state.get("deadline_at")
    remaining = deadline_at - ctx.clock() if deadline_at is not None else None
    constraints = state.get("constraints", {})
    return plan(ctx.registry, state["classification"], state["query"], constraints, ctx.caller_key, remaining)
