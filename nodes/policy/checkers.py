"""Which providers may check an answer: another vendor, available, within the request's budget."""

from __future__ import annotations

from graphs.state import AnalysisState, Candidate, ChainStep
from nodes.policy.costing import estimate_call_cost
from providers.registry import ProviderRegistry

_TIER_ORDER = ("premium", "realtime", "local")


def checker_chain(
    answer: Candidate, state: AnalysisState, registry: ProviderRegistry
) -> tuple[list[ChainStep], list[str]]:
    """Order the usable providers of another vendor: premium, then realtime, then local, within the budget.

    Returns the chain and the reasons providers were left out. The budget is the request's max_cost_usd less
    what its attempts have cost so far.
    """
    max_cost = state.get("constraints", {}).get("max_cost_usd")
    spent = sum(a["cost_usd"] for a in state.get("attempts", []))
    steps: list[ChainStep] = []
    notes: list[str] = []
    for tier in _TIER_ORDER:
        for name in registry.names():
            if registry.tier_of(name) != tier or name == answer["provider"]:
                continue
            if registry.vendor_of(name) == answer["vendor"] or not registry.availability(name).available:
                continue
            if max_cost is not None:
                estimate = estimate_call_cost(registry, name, state["classification"], state["query"])
                if spent + estimate > max_cost:
                    notes.append(
                        f"{name} not asked: est. ${estimate:.4f} on top of ${spent:.4f} spent exceeds "
                        f"max_cost_usd ${max_cost:.4f}"
                    )
                    continue
            steps.append({"provider": name, "tier": tier, "model": registry.model_of(name), "reason": "checker"})
    return steps, notes
