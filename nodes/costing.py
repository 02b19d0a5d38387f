"""The token model shared by route (estimates before any call) and score (the all-premium baseline)."""

from __future__ import annotations

from graphs.state import Classification
from providers.registry import ProviderRegistry

# About four characters per token for English prose in the tokenizers of all three vendors; Hinglish and
# Telugu run higher, which makes this estimate err on the cheap side for them.
CHARS_PER_TOKEN = 4.0
# The system prompt and formatting every call carries on top of the query.
PROMPT_OVERHEAD_TOKENS = 250


def estimate_input_tokens(query: str) -> int:
    return PROMPT_OVERHEAD_TOKENS + int(len(query) / CHARS_PER_TOKEN) + 1


def estimate_call_cost(registry: ProviderRegistry, provider: str, classification: Classification, query: str) -> float:
    """Price one call of ``provider`` for this query before it is made (thinking tokens billed as output)."""
    settings = registry.settings
    complexity = classification["complexity"]
    output = settings.routing.expected_output_tokens.get(complexity, 500)
    if registry.provider_settings(provider).thinks:
        output += settings.routing.expected_thinking_tokens.get(complexity, 0)
    return registry.price_of(provider).cost_usd(estimate_input_tokens(query), output)


def premium_provider(registry: ProviderRegistry) -> str | None:
    return next((n for n in registry.names() if registry.tier_of(n) == "premium"), None)
