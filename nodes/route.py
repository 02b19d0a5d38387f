"""route: turn the query's needs, provider availability and request constraints into an ordered chain.

Adequacy model. A query falls in exactly one need class, and each tier serves some of them:

    need class  what it is                                                  served by
    research    fresh facts and complex reasoning ("campaign focus for      research-then-reason (realtime, then
                next week in Jubilee Hills")                                premium reasoning over its citations)
    fresh       needs fresh facts (news, polls, schedules, who leads now)   realtime (web search, citations)
    complex     no fresh facts; multi-step strategic analysis               premium
    moderate    no fresh facts; moderate job of a task the local model      premium, realtime
                cannot do (policy: [routing].local_moderate_tasks)
    light       no fresh facts; a simple job, or a moderate job of a        premium, realtime, local
                local task (summary, translation, extraction, tagging)

One softening, for the router only: realtime is credited with serving ``[routing].realtime_complex_adequacy``
(a quarter) of complex jobs (and of research jobs), because a capable general model with search is a far better
stand-in for premium than the local model; the benchmark's adequacy (bench/routing.py) keeps the strict table.
The research-then-reason chain serves every class (its premium step answers light and moderate jobs too).

The local tier is not taken to serve every light job: its share of a light job of task t is the accuracy
measured on labelled light jobs through the real model (bench/local.py -> nodes/policy/local_adequacy.json),
in the query's script (Telugu or Latin); a wrong light answer costs ``wrong_answer_cost_usd.light``.

The classifier gives P(fresh), P(complexity) and P(task); taking its three heads as independent,
P(research) = f p_complex, P(fresh) = f (1-p_complex), P(complex) = (1-f) p_complex,
P(moderate) = (1-f) p_moderate (1-q), P(light) = (1-f) (p_simple + p_moderate q), with q = P(task is a local
task). P(tier adequate) = sum over the classes of P(class) x the share of that class the tier serves.

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

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.state import AnalysisState, ChainStep, Classification, Constraints, RouteUpdate
from nodes.policy.budget import ANONYMOUS, BudgetStore, Reservation
from nodes.policy.costing import baseline_cost, estimate_call_cost, research_chain_cost
from nodes.policy.learned_adequacy import Learned, learned_from
from nodes.policy.local_adequacy import (
    LocalAdequacy,
    configured_local_adequacy,
    default_local_adequacy,
    language_of,
)
from providers.config import RoutingMode, RoutingSettings, Tier
from providers.registry import ProviderRegistry
from providers.resilience.breaker import HealthSnapshot

Need = Literal["research", "fresh", "complex", "moderate", "light"]
NEEDS: tuple[Need, ...] = get_args(Need)
# "research" is the research-then-reason plan (realtime facts, then premium reasoning); not a provider tier.
Plan = Literal["realtime", "premium", "local", "research"]
SERVES: dict[Plan, frozenset[Need]] = {
    "realtime": frozenset({"fresh", "moderate", "light"}),
    "premium": frozenset({"complex", "moderate", "light"}),
    "local": frozenset({"light"}),
    "research": frozenset(NEEDS),
}
_NEED_WORDS: dict[Need, str] = {
    "research": "fresh facts and complex reasoning",
    "fresh": "fresh facts",
    "complex": "complex analysis",
    "moderate": "a moderate job beyond the local model",
    "light": "a light text job",
}
# A provider (or plan) serving less than this share of the query's likely needs is not planned as a fallback
# while one that serves at least this much is usable: its answer would be degraded (nodes/policy/degraded.py).
# A fifth: realtime's credited share of complex analyses stays a fallback for premium, local for fresh facts does not.
ADEQUATE_FROM = 0.2
# A rate-limited provider stays routable while its cooldown is under this share of the time left: waiting it out
# must leave the call most of the request's time.
COOLDOWN_SHARE = 0.5
# Successful calls a provider needs in its health window before its median latency is trusted.
MIN_LATENCY_SAMPLES = 3


def need_of(fresh: bool, complexity: str, task: str, routing: RoutingSettings) -> Need:
    """Return the need class of a query whose labels are known (the benchmark's ground truth)."""
    if fresh:
        return "research" if complexity == "complex" else "fresh"
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
        "research": f * complex_,
        "fresh": f * (1 - complex_),
        "complex": (1 - f) * complex_,
        "moderate": (1 - f) * moderate * (1 - local_task),
        "light": (1 - f) * (simple + moderate * local_task),
    }


def local_light_share(c: Classification, query: str, routing: RoutingSettings, measured: LocalAdequacy) -> float:
    """Return the share of this query's light-job mass the local model does right, by its measured accuracy.

    P(light and task t) is proportional to P(t) (P(simple) + P(moderate) [t is a local moderate task]); each task's
    share is its measured accuracy in the query's script.
    """
    total = sum(c["complexity_p"].values()) or 1.0
    simple = c["complexity_p"].get("simple", 0.0) / total
    moderate = c["complexity_p"].get("moderate", 0.0) / total
    language = language_of(query)
    mass = 0.0
    served = 0.0
    for task, p in c["task_p"].items():
        light = p * (simple + (moderate if task in routing.local_moderate_tasks else 0.0))
        mass += light
        served += light * measured.adequacy(task, language)
    return served / mass if mass > 0 else 0.0


@dataclass(frozen=True)
class Option:
    """One usable provider (or the research-then-reason pair), priced and judged for this query."""

    provider: str
    tier: Tier
    price_usd: float
    p_adequate: float
    expected_loss_usd: float
    error_rate: float
    # Research-then-reason: the realtime provider that researches before ``provider`` (premium) reasons.
    research: str | None = None
    cooling_s: float = 0.0

    @property
    def plan(self) -> Plan:
        return "research" if self.research is not None else self.tier

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
    research: str | None = None
    cooling_s: float = 0.0  # rate limited: asked again once this has passed (call_model waits it out)


def serves(plan: Plan, need: Need, routing: RoutingSettings, local_light: float = 1.0) -> float:
    """Return the share of queries of this need class that the tier (or plan) serves adequately."""
    if plan == "realtime" and need in ("complex", "research"):
        return routing.realtime_complex_adequacy
    if plan == "local" and need == "light":
        return local_light
    return 1.0 if need in SERVES[plan] else 0.0


def evaluate(
    candidate: Usable,
    needs: dict[Need, float],
    loss_usd: dict[str, float],
    routing: RoutingSettings,
    local_light: float = 1.0,
) -> Option:
    """Price and judge one usable provider for this query: adequacy and expected cost of being wrong."""
    plan: Plan = "research" if candidate.research is not None else candidate.tier
    share = {k: serves(plan, k, routing, local_light) for k in needs}
    return Option(
        provider=candidate.provider,
        tier=candidate.tier,
        price_usd=candidate.price_usd,
        p_adequate=sum(p * share[k] for k, p in needs.items()),
        expected_loss_usd=sum(p * (1 - share[k]) * loss_usd.get(k, 0.0) for k, p in needs.items()),
        error_rate=candidate.error_rate,
        research=candidate.research,
        cooling_s=candidate.cooling_s,
    )


def learn(
    options: list[Option], learned: Learned, task: str, needs: dict[Need, float], loss_usd: dict[str, float]
) -> tuple[list[Option], list[str]]:
    """Replace a provider's adequacy on this task by what outcomes taught, once there is enough evidence.

    The expected cost of being wrong becomes (1 - learned adequacy) x this query's mean cost of a wrong answer.
    The counts in the reasons are weighted: a cross-check verdict counts as a fraction of an outcome.
    """
    wrong_cost = sum(p * loss_usd.get(k, 0.0) for k, p in needs.items())
    out: list[Option] = []
    notes: list[str] = []
    for o in options:
        found = learned.adequacy(o.provider, task, o.p_adequate) if o.research is None else None
        if found is None:
            out.append(o)
            continue
        value, record = found
        notes.append(
            f"{o.provider} on {task}: {record.right:g}/{record.n:g} outcomes right, adequacy {o.p_adequate:.2f} -> "
            f"{value:.2f}"
        )
        out.append(dataclasses.replace(o, p_adequate=value, expected_loss_usd=(1 - value) * wrong_cost))
    return out, notes


def research_pairs(
    registry: ProviderRegistry, usable: list[Usable], c: Classification, query: str, constraints: Constraints
) -> tuple[list[Usable], list[str]]:
    """Return the research-then-reason plans this request may use: a usable realtime then a usable premium."""
    realtime = next((u for u in usable if u.tier == "realtime"), None)
    premium = next((u for u in usable if u.tier == "premium"), None)
    if realtime is None or premium is None:
        return [], []
    price = research_chain_cost(registry, realtime.provider, premium.provider, query, c["complexity_p"])
    max_cost = constraints.get("max_cost_usd")
    if max_cost is not None and price > max_cost:
        return [], [f"research-then-reason skipped: estimated ${price:.4f} exceeds max_cost_usd ${max_cost:.4f}"]
    error_rate = 1 - (1 - realtime.error_rate) * (1 - premium.error_rate)
    cooling_s = max(realtime.cooling_s, premium.cooling_s)
    return [Usable(premium.provider, "premium", price, error_rate, research=realtime.provider, cooling_s=cooling_s)], []


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
        cooling_s = registry.health.cooldowns.left_s(name) if avail.cooling else 0.0
        if not avail.available and not (avail.cooling and (budget_s is None or cooling_s < budget_s * COOLDOWN_SHARE)):
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
        usable.append(Usable(name, tier, price, snap.error_rate, cooling_s=cooling_s))
    return usable, reasons


def _label(o: Option) -> str:
    if o.research is not None:
        return f"research-then-reason ({o.research} researches with citations, then {o.provider} reasons)"
    return f"{o.provider} ({o.tier})"


def _primary_reason(best: Option, options: list[Option], needs: dict[Need, float], band: float) -> str:
    likely = max(needs, key=needs.__getitem__)
    spread = ", ".join(f"{k} {p:.2f}" for k, p in needs.items())
    # The label rule: the cheapest usable provider that serves the most likely need.
    rule = min((o for o in options if likely in SERVES[o.plan]), key=lambda o: o.price_usd, default=None)
    uncertain = needs[likely] < 1 - band
    if rule is not None and rule == best and not uncertain:
        return (
            f"primary {_label(best)}: the query needs {_NEED_WORDS[likely]} "
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
        f"{_label(o)} ${o.expected_cost_usd:.4f}"
        for o in sorted(options, key=lambda o: o.expected_cost_usd)
        if o != best
    )
    return (
        f"{why}: chose {_label(best)} by expected cost ${best.expected_cost_usd:.4f} = price "
        f"${best.price_usd:.4f} + expected cost of being wrong ${best.expected_loss_usd:.4f} "
        f"(P(inadequate)={1 - best.p_adequate:.2f})" + (f"; others: {others}" if others else "")
    )


def local_measurement(registry: ProviderRegistry, usable: list[Usable]) -> tuple[LocalAdequacy, list[str]]:
    """Return the local tier's measured accuracy on light jobs, and why it may not be its model's own.

    The measurement is the local tier's ``adequacy_path`` (bench/local.py --write PATH run against that model), or
    the one shipped for the embedded SmolLM2. A model served by LOCAL_BASE_URL or LOCAL_MODEL_PATH that nobody
    measured is judged by the embedded model's figures (the cautious choice: outcomes may raise it), and the
    reasons say so, with how to measure it.
    """
    local = next((c for c in usable if c.tier == "local"), None)
    if local is None:
        return default_local_adequacy(), []
    configured = registry.provider_settings(local.provider)
    if configured.adequacy_path:
        try:
            return configured_local_adequacy(configured.adequacy_path), []
        except (OSError, ValueError, KeyError) as exc:
            note = f"{local.provider}: its measurement {configured.adequacy_path!r} is unreadable ({exc})"
            return default_local_adequacy(), [f"{note}; judged by the embedded model's instead"]
    measured = default_local_adequacy()
    if measured.model == configured.model:
        return measured, []
    return measured, [
        f"{local.provider} ({configured.model}) is judged on light jobs by {measured.model}'s measured accuracy: "
        f"measure it with bench/local.py --write PATH and set LOCAL_ADEQUACY_PATH"
    ]


def intelligent_chain(
    registry: ProviderRegistry,
    c: Classification,
    query: str,
    constraints: Constraints,
    budget_s: float | None = None,
    local_adequacy: LocalAdequacy | None = None,
    learned: Learned | None = None,
) -> tuple[list[ChainStep], list[str], list[Option]]:
    """Order the usable providers: least expected cost first, then by adequacy, health and price.

    The first option may be research-then-reason (``Option.research`` set): the chain then starts with its
    premium step, and its realtime step is ``research_step_of(options[0])``. Fallbacks are single providers.
    """
    routing = registry.settings.routing
    usable, reasons = usable_providers(registry, c, query, constraints, budget_s)
    pairs, pair_reasons = research_pairs(registry, usable, c, query, constraints)
    reasons += pair_reasons
    if local_adequacy is not None:
        measured = local_adequacy
    else:
        measured, notes = local_measurement(registry, usable)
        reasons += notes
    local_light = local_light_share(c, query, routing, measured)
    factor = 1.0
    if constraints.get("cost_sensitive"):
        factor = routing.cost_sensitive_loss_factor
        reasons.append(f"cost-sensitive request: the cost of a wrong answer is weighted at {factor:.0%}")
    loss = {str(k): v * factor for k, v in routing.wrong_answer_cost_usd.items()}
    needs = need_probabilities(c, routing)
    options = [evaluate(candidate, needs, loss, routing, local_light) for candidate in [*usable, *pairs]]
    if learned is not None:
        options, notes = learn(options, learned, c["task"], needs, loss)
        reasons += notes
    if not options:
        reasons.append("no provider can serve this request")
        return [], reasons, []

    best = min(options, key=lambda o: (o.expected_cost_usd, o.price_usd))
    # Adequacy and error rate to the nearest 10 points, so that a negligible difference in one does not outrank
    # a real difference in the next.
    rest = sorted(
        (o for o in options if o is not best and o.research is None),
        key=lambda o: (-round(o.p_adequate * 10), round(o.error_rate * 10), o.price_usd),
    )
    rest, last = adequate_fallbacks(best, rest)
    reasons += [
        f"{_label(o)} not planned as a fallback: P(adequate)={o.p_adequate:.2f} while an adequate provider is "
        "usable; only a last resort once every adequate one has failed (its answer is then marked degraded)"
        for o in last
    ]
    reasons.append(_primary_reason(best, options, needs, routing.uncertainty_band))
    names = {o.provider for o in [best, *rest]} | ({best.research} if best.research is not None else set())
    silent = {name for name in names if registry.health.stalls.stalled(name)}
    held = {o.provider: o.cooling_s for o in options if o.research is None and o.cooling_s > 0}
    chosen, rest = around_unready(best, rest, frozenset(silent | set(held)))
    if chosen is not best:
        why = [
            f"{n} stopped answering (calls to it are overdue and none made since was answered)" for n in sorted(silent)
        ]
        why += [f"{n} is rate limited for {held[n]:.1f} s more" for n in sorted(held)]
        reasons.append(f"{_label(best)} demoted behind {_label(chosen)}, which can answer now: {'; '.join(why)}")
        best = chosen
    reasons += [
        f"{n} planned although rate limited: it is asked once its {held[n]:.1f} s are over (call_model waits)"
        for n in sorted(held)
    ]
    ordered = [best, *rest, *last]
    chain: list[ChainStep] = []
    for i, o in enumerate(ordered):
        role = "primary" if i == 0 else f"last resort {i - len(rest)}" if o in last else f"fallback {i}"
        step: ChainStep = {
            "provider": o.provider,
            "tier": o.tier,
            "model": registry.model_of(o.provider),
            "reason": f"{role} {_label(o)}: P(adequate)={o.p_adequate:.2f}, est. ${o.price_usd:.4f}, expected cost "
            f"${o.expected_cost_usd:.4f}, recent error rate {o.error_rate:.0%}",
        }
        if o in last:
            step["last_resort"] = True
        if o.provider in silent:
            step["silent"] = True
        chain.append(step)
    if best.research is not None:
        # The premium step's fallbacks must not repeat it: a failed reasoning call falls back to the others.
        chain = [chain[0], *(step for step in chain[1:] if step["provider"] != best.provider)]
    return chain, reasons, ordered


def adequate_fallbacks(best: Option, rest: list[Option]) -> tuple[list[Option], list[Option]]:
    """Split the fallbacks into those to plan and the last resorts: inadequate ones, while an adequate one is usable.

    A last resort is asked only once every adequate step has failed in this analysis (it is never a hedge for
    one, nodes/policy/hedging.py): then a degraded answer that says so beats none. Without them, 20% random
    errors on both cloud tiers left 3 in 100 complex analyses unanswered. When nothing usable is adequate
    (premium down for a complex analysis), every fallback is an ordinary one.
    """
    if not any(o.p_adequate >= ADEQUATE_FROM for o in [best, *rest]):
        return rest, []
    return [o for o in rest if o.p_adequate >= ADEQUATE_FROM], [o for o in rest if o.p_adequate < ADEQUATE_FROM]


def around_unready(best: Option, rest: list[Option], unready: frozenset[str]) -> tuple[Option, list[Option]]:
    """Put the providers that cannot answer now behind the adequate fallbacks that can.

    ``unready``: the providers gone silent (calls overdue and none answered since, providers/resilience/stall.py)
    and those rate limited for a moment (a 429 streak's Retry-After, providers/resilience/cooldown.py). Until a
    silent provider's circuit opens (a hang is recorded only once its calls are given up), every request routed to
    it waited for its hedge before the fallback was asked: on a cold server meeting a hung Gemini, that was every
    request of the run (bench/chaos.py). A rate-limited provider used to be left out of the route altogether, so
    in a 429 storm a fresh-fact question (only web search serves it) had only the local model left, and 1 to 53
    of 100 analyses were refused when its queue filled; it now stays in the chain and is asked once it may be.
    Demoted, not dropped: an unready provider leads again once it is ready. Nothing changes when no adequate
    fallback is ready. A research-then-reason plan is unready when either of its providers is; it is then left out
    (its premium provider is a single fallback already).
    """

    def quiet(o: Option) -> bool:
        return o.provider in unready or (o.research is not None and o.research in unready)

    if not quiet(best):
        return best, rest
    stand_in = next((o for o in rest if not quiet(o)), None)
    if stand_in is None:
        return best, rest
    answering = [o for o in rest if not quiet(o) and o is not stand_in]
    demoted = ([best] if best.research is None else []) + [o for o in rest if quiet(o)]
    return stand_in, [*answering, *demoted]


def research_step_of(registry: ProviderRegistry, best: Option) -> ChainStep | None:
    """Return the realtime step a research-then-reason plan runs before its chain (None for a single provider)."""
    if best.research is None:
        return None
    return {
        "provider": best.research,
        "tier": registry.tier_of(best.research),
        "model": registry.model_of(best.research),
        "reason": f"research for {best.provider}: fresh facts with citations, which the reasoning step cites",
    }


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
    learned: Learned | None = None,
    checking: bool = True,
) -> RouteUpdate:
    """Build the routing update (also used by the `route` dry run, which makes no model call).

    ``remaining_s`` is the time left before the analysis's deadline; without it, the request's ``deadline_s``.
    ``checking``: a second opinion may be asked for (depth deep, cross_check, or a confidence-gated escalation),
    so the spend ceiling holds one more call.
    """
    mode = effective_mode(registry, caller_key)
    budget_s = remaining_s if remaining_s is not None else constraints.get("deadline_s")
    baseline = baseline_cost(registry, c, query)
    shadow: dict[str, object] | None = None
    research: ChainStep | None = None
    estimated: float | None = None
    if mode == "intelligent":
        chain, reasons, options = intelligent_chain(registry, c, query, constraints, budget_s, learned=learned)
        if options and options[0].research is not None:
            research = research_step_of(registry, options[0])
            estimated = options[0].price_usd
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
    if estimated is None:
        estimated = estimate_call_cost(registry, chain[0]["provider"], c, query) if chain else 0.0
    prices = {o.provider: o.price_usd for o in options if o.research is None} if mode == "intelligent" else {}
    steps = [
        estimated if i == 0 else prices.get(s["provider"], estimate_call_cost(registry, s["provider"], c, query))
        for i, s in enumerate(chain)
    ]
    ceiling = spend_ceiling(steps, checker_allowance(registry, chain, prices, c, query) if checking else 0.0)
    return {
        "chain": chain,
        "reasons": reasons,
        "routing_mode": mode,
        "shadow": shadow,
        "estimated_cost_usd": round(estimated, 6),
        "spend_ceiling_usd": round(ceiling, 6),
        "step_costs_usd": [round(x, 6) for x in steps],
        "baseline_estimate_usd": round(baseline, 6),
        "cursor": 0,
        "research_step": research,
    }


def checker_allowance(
    registry: ProviderRegistry, chain: list[ChainStep], prices: dict[str, float], c: Classification, query: str
) -> float:
    """Return the most a second opinion can cost: the dearest planned provider other than the primary.

    The checker is of another vendor than the answer's, which may be any step of the chain.
    """
    names = {s["provider"] for s in chain} | set(prices)
    return max(
        (
            prices.get(n, estimate_call_cost(registry, n, c, query))
            for n in names
            if chain and n != chain[0]["provider"]
        ),
        default=0.0,
    )


def spend_ceiling(step_costs: list[float], allowance: float) -> float:
    """Return what a plan can spend: every step (a paid answer may be rejected, and a hedge pays two), plus a check."""
    return sum(step_costs) + allowance


def trimmed(update: RouteUpdate, left_usd: float) -> RouteUpdate | None:
    """Cut the plan's fallbacks from the end until its ceiling fits ``left_usd`` (None: not even the primary does)."""
    steps = update.get("step_costs_usd", [])
    allowance = update["spend_ceiling_usd"] - sum(steps)
    for keep in range(len(update["chain"]), 0, -1):
        ceiling = spend_ceiling(steps[:keep], allowance)
        if ceiling <= left_usd:
            return update | {
                "chain": update["chain"][:keep],
                "step_costs_usd": steps[:keep],
                "spend_ceiling_usd": round(ceiling, 6),
            }
    return None


def within_budget(
    plan_once: Callable[[Constraints], RouteUpdate], constraints: Constraints, reserve: Reserve
) -> RouteUpdate:
    """Plan, then reserve what the plan can spend against the spend caps; over a cap, plan within what is left.

    The reservation is the plan's ceiling, not its primary's estimate: fallbacks after a paid but rejected answer,
    a hedge, the research step and a second opinion all spend, and score settles the actual cost. Pure apart from
    ``reserve`` (the budget store's atomic reserve, injected): over budget the router plans again among the
    providers whose price fits what is left (the local model costs nothing), keeps only the fallbacks that fit,
    and, when nothing fits, plans an empty chain whose reasons say which cap refused it.
    """
    update = plan_once(constraints)
    if not update["chain"]:
        return update
    granted, refusal = reserve(update["spend_ceiling_usd"])
    if granted is not None:
        return update | {"budget_reservation": granted}
    cap = constraints.get("max_cost_usd")
    cheaper: Constraints = {**constraints, "max_cost_usd": min(refusal, cap) if cap is not None else refusal}
    retry = plan_once(cheaper)
    note = [f"{reserve.why}: only plans within ${refusal:.4f} considered"]
    fitting = trimmed(retry, refusal) if retry["chain"] else None
    if fitting is not None:
        dropped = len(retry["chain"]) - len(fitting["chain"])
        if dropped:
            note.append(f"{dropped} fallback(s) left out: the plan's ceiling must fit the ${refusal:.4f} left")
        granted, _ = reserve(fitting["spend_ceiling_usd"])
        if granted is not None:
            return fitting | {"reasons": note + fitting["reasons"], "budget_reservation": granted}
    return retry | {"chain": [], "research_step": None, "reasons": [*note, *retry["reasons"], reserve.why]}


class Reserve:
    """Reserve an amount against the context's budget store; remembers why the last refusal happened."""

    def __init__(self, budget: BudgetStore, caller: str, at: float) -> None:
        self._budget, self._caller, self._at = budget, caller, at
        self.why = ""

    def __call__(self, amount_usd: float) -> tuple[dict[str, object] | None, float]:
        outcome = self._budget.reserve(self._caller, amount_usd, self._at)
        if isinstance(outcome, Reservation):
            return dataclasses.asdict(outcome), 0.0
        self.why = outcome.message
        return None, outcome.left_usd


def route(state: AnalysisState, runtime: Runtime[Context]) -> RouteUpdate:
    """Build the ordered chain of providers for this query, with a reason for every choice."""
    ctx = context_of(runtime)
    deadline_at = ctx.deadline_at or state.get("deadline_at")
    remaining = deadline_at - ctx.clock() if deadline_at is not None else None
    constraints = state.get("constraints", {})
    # Feedback and cross-check verdicts recorded so far correct the stated adequacy per (provider, task).
    learned = learned_from(ctx.feedback)
    depth = state.get("depth", "standard")
    escalates = depth != "quick" and ctx.registry.settings.confidence.escalate_below > 0
    checking = depth == "deep" or bool(constraints.get("cross_check")) or escalates

    def plan_once(with_constraints: Constraints) -> RouteUpdate:
        return plan(
            ctx.registry,
            state["classification"],
            state["query"],
            with_constraints,
            ctx.caller_key,
            remaining,
            learned=learned,
            checking=checking,
        )

    if ctx.budget is None:
        return plan_once(constraints)
    return within_budget(plan_once, constraints, Reserve(ctx.budget, ctx.caller_key or ANONYMOUS, ctx.clock()))
