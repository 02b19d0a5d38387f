"""Which providers a ward briefing asks, in which order, for each of its stages.

- gather (fresh facts with sources): the realtime tier first; premium as the fallback, whose answers come from
  the model's knowledge without sources (kept, but they weigh nothing in source credibility). The local model is
  never asked for facts: it has no search and small models invent them.
- write (the structured briefing): premium first (complex multi-step analysis), then realtime, then local; then
  the same providers again in plain-text mode, the degraded path when no provider produced a valid structure.
- cross-check (deep): a provider of another vendor than the writer's, premium before realtime before local.

Providers without a key, without a model file or with an open circuit are left out, with the reason.
"""

from __future__ import annotations

from graphs.briefing_state import WriteStep
from graphs.state import ChainStep
from providers.config import Tier
from providers.registry import ProviderRegistry

GATHER_TIERS: tuple[Tier, ...] = ("realtime", "premium")
WRITE_TIERS: tuple[Tier, ...] = ("premium", "realtime", "local")
CHECK_TIERS: tuple[Tier, ...] = ("premium", "realtime", "local")


def _chain(registry: ProviderRegistry, tiers: tuple[Tier, ...], reason: str) -> tuple[list[ChainStep], list[str]]:
    steps: list[ChainStep] = []
    notes: list[str] = []
    for tier in tiers:
        for name in registry.names():
            if registry.tier_of(name) != tier:
                continue
            availability = registry.availability(name)
            if not availability.available:
                notes.append(f"{name} ({tier}) left out: {availability.reason}")
                continue
            steps.append({"provider": name, "tier": tier, "model": registry.model_of(name), "reason": reason})
    return steps, notes


def gather_chain(registry: ProviderRegistry) -> tuple[list[ChainStep], list[str]]:
    """Order the providers for the research questions: realtime (with sources), then premium."""
    return _chain(registry, GATHER_TIERS, "research")


def write_chain(registry: ProviderRegistry) -> tuple[list[WriteStep], list[str]]:
    """Order the writers: each usable provider in structured mode, then each in plain-text mode."""
    steps, notes = _chain(registry, WRITE_TIERS, "writer")
    structured: list[WriteStep] = [{**s, "mode": "structured"} for s in steps]
    plain: list[WriteStep] = [{**s, "reason": "plain-text fallback", "mode": "plain"} for s in steps]
    return structured + plain, notes


def check_chain(registry: ProviderRegistry, writer_vendor: str) -> list[ChainStep]:
    """Order the checkers: usable providers of another vendor than the writer's."""
    steps, _ = _chain(registry, CHECK_TIERS, "checker")
    return [s for s in steps if registry.vendor_of(s["provider"]) != writer_vendor]
