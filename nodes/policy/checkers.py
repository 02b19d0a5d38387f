"""Which providers may check an answer: another vendor, available, answering (not gone silent), within the
request's budget and time, not one that failed earlier in this analysis, healthiest and fastest first."""

from __future__ import annotations

from graphs.state import AnalysisState, Candidate, ChainStep
from nodes.policy.costing import estimate_call_cost
from nodes.policy.deadlines import cold_floor_of, cross_check_deadline_s, expected_s
from nodes.policy.exclusion import failed_providers
from providers.registry import ProviderRegistry

_TIER_ORDER = ("premium", "realtime", "local")


def checker_chain(
    answer: Candidate,
    state: AnalysisState,
    registry: ProviderRegistry,
    remaining_s: float | None = None,
    answer_s: float | None = None,
) -> tuple[list[ChainStep], list[str]]:
    """Order the usable providers of another vendor, within the budget, by health and latency.

    Returns the chain and the reasons providers were left out. The budget is the request's max_cost_usd less
    what its attempts have cost so far. A provider that failed or hung earlier in this analysis is left out.
    A provider with a queue that is busy (the local model) is left out, and so is one that usually takes
    longer (its median latency) than the cross-check's bound
    (nodes/policy/deadlines.py, from ``remaining_s`` and ``answer_s``, how long the answer took) is left out:
    it would hold the answer back and be cut off.
    The order: providers whose last call succeeded before suspect ones (a failure since, or a half-open
    circuit), then premium, realtime, local, then the faster median.
    """
    max_cost = state.get("constraints", {}).get("max_cost_usd")
    spent = sum(a["cost_usd"] for a in state.get("attempts", []))
    failed = failed_providers(state.get("attempts", []))
    silent_when_routed = {s["provider"] for s in state.get("chain", []) if s.get("silent")}
    resilience = registry.settings.resilience
    ranked: list[tuple[tuple[bool, bool, int, float], ChainStep]] = []
    notes: list[str] = []
    for name in registry.names():
        tier = registry.tier_of(name)
        if name == answer["provider"] or registry.vendor_of(name) == answer["vendor"]:
            continue
        if not registry.availability(name).available:
            continue
        if max_cost is not None:
            estimate = estimate_call_cost(registry, name, state["classification"], state["query"])
            if spent + estimate > max_cost:
                notes.append(
                    f"{name} not asked: est. ${estimate:.4f} on top of ${spent:.4f} spent exceeds "
                    f"max_cost_usd ${max_cost:.4f}"
                )
                continue
        if registry.health.stalls.stalled(name):
            # Calls to it are overdue and none made since was answered: a check would wait out its bound.
            notes.append(f"{name} not asked: it has stopped answering (calls overdue, none answered since)")
            continue
        if name in silent_when_routed:
            # The route found it silent and answered elsewhere, so it never failed in this analysis; once its
            # overdue calls were aborted, the watch above no longer shows it, and each check waited out its bound
            # on a provider still hung (bench/chaos.py, warm hang).
            notes.append(f"{name} not asked: it had stopped answering when this analysis was routed")
            continue
        wait_s = registry.expected_wait_s(name)
        if wait_s > 0:
            # A serialised model (the local one) that is busy: a second opinion does not queue ahead of answers.
            # Under load the checks filled the local queue, held answers back by its wait, and a last-resort
            # answer found the queue full.
            notes.append(f"{name} not asked: it is busy (expected wait {wait_s:.1f} s), and answers come first")
            continue
        latency = registry.health.breaker(name).latency_view(resilience.hedge.mad_k)
        default_s = registry.provider_settings(name).hedge_after_s or resilience.hedge.default_after_s
        typical_s = expected_s(latency, default_s)
        if remaining_s is not None:
            bound_s = cross_check_deadline_s(
                remaining_s, latency, resilience, cold_floor_s=cold_floor_of(registry, name), answer_s=answer_s
            )
            if typical_s > bound_s:
                # It would be cut off at the bound (or hold the answer back past it): not asked at all.
                notes.append(
                    f"{name} not asked: it usually takes {typical_s:.1f} s, more than the check's {bound_s:.1f} s"
                )
                continue
        unhealthy = latency.suspect or latency.state != "closed"
        key = (name in failed, unhealthy, _TIER_ORDER.index(tier), typical_s)
        ranked.append((key, {"provider": name, "tier": tier, "model": registry.model_of(name), "reason": "checker"}))
    ranked.sort(key=lambda item: item[0])
    # A check is a second opinion on an answer we already have: a provider that just failed or hung is never
    # asked for one, even when it is the only checker (the answer is served unchecked, and says so).
    for _, step in ranked:
        if step["provider"] in failed:
            notes.append(f"{step['provider']} not asked: it failed earlier in this analysis")
    ranked = [(key, step) for key, step in ranked if step["provider"] not in failed]
    return [step for _, step in ranked], notes
