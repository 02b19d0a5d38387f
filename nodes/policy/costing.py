"""The token model: what a call will cost before it is made.

Shared by route (prices before any call), score (the all-premium baseline when no answer came back) and
bench/routing.py, so the benchmark prices queries exactly as the router does. The model is stated, not
measured; once the ledger holds real traffic its mean tokens per tier and complexity should replace it:

- input tokens = ``PROMPT_OVERHEAD_TOKENS`` (the rendered system prompt and chat framing) + ``len(query) /
  CHARS_PER_TOKEN`` (+1 for the partial token);
- visible output tokens by complexity: ``[routing].expected_output_tokens`` (policy);
- a thinking model (provider ``thinks = true``) also spends ``[routing].expected_thinking_tokens``, billed as
  output;
- the price table of the configuration turns tokens into dollars and adds the model's per-request fee.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from graphs.state import AnalysisState, Attempt, Classification
from nodes.policy.prompt import build_prompt
from providers.base import Prompt
from providers.config import Settings
from providers.registry import ProviderRegistry

# About four characters per token for English prose in the tokenizers of all three vendors; Hinglish and
# Telugu run higher, which makes this estimate err on the cheap side for them.
CHARS_PER_TOKEN = 4.0
# Chat framing (role markers, message separators) each call adds around its two messages.
FRAMING_TOKENS = 8


def _prompt_overhead_tokens() -> int:
    """Return what every call carries on top of the query: the production system prompt, rendered, and framing.

    Measured from the prompt the adapters send (nodes/policy/prompt.py, depth standard, the longest task name),
    so the estimate follows the prompt when it changes instead of a number written beside it.
    """
    state = cast(AnalysisState, {"query": "", "depth": "standard", "classification": {"task": "opposition_research"}})
    prompt = build_prompt(state)
    return int(len(prompt.system) / CHARS_PER_TOKEN) + 1 + FRAMING_TOKENS


PROMPT_OVERHEAD_TOKENS = _prompt_overhead_tokens()
# Used when a complexity label is missing from the policy tables (a configuration written for fewer labels).
FALLBACK_OUTPUT_TOKENS = 500


def estimate_input_tokens(query: str) -> int:
    """Estimate the input tokens of a call for this query, prompt included."""
    return PROMPT_OVERHEAD_TOKENS + int(len(query) / CHARS_PER_TOKEN) + 1


def expected_output_tokens(registry: ProviderRegistry, provider: str, complexity: str) -> int:
    """Return the output tokens billed for an answer of this complexity, thinking included."""
    routing = registry.settings.routing
    output = routing.expected_output_tokens.get(complexity, FALLBACK_OUTPUT_TOKENS)
    if registry.provider_settings(provider).thinks:
        output += routing.expected_thinking_tokens.get(complexity, 0)
    return output


def call_cost(registry: ProviderRegistry, provider: str, query: str, complexity: str) -> float:
    """Price one call of ``provider`` for a query of known complexity."""
    tokens_out = expected_output_tokens(registry, provider, complexity)
    return registry.price_of(provider).cost_usd(estimate_input_tokens(query), tokens_out)


def prompt_call_cost(
    registry: ProviderRegistry, provider: str, prompt: Prompt, complexity: str, extra_input_tokens: int = 0
) -> float:
    """Price a call whose whole prompt is known: a briefing's calls carry their own system prompts (longer than
    the analysis's, which ``PROMPT_OVERHEAD_TOKENS`` measures), and the writer's carries the research.
    ``extra_input_tokens``: input not written yet (the research a writer will be given, priced before it is done).
    """
    tokens_in = int((len(prompt.system) + len(prompt.user)) / CHARS_PER_TOKEN) + 1 + FRAMING_TOKENS
    tokens_out = expected_output_tokens(registry, provider, complexity)
    return registry.price_of(provider).cost_usd(tokens_in + extra_input_tokens, tokens_out)


def expected_call_cost(
    registry: ProviderRegistry, provider: str, query: str, complexity_p: Mapping[str, float]
) -> float:
    """Return the expected price of one call when the complexity is only known as probabilities."""
    total = sum(complexity_p.values())
    if total <= 0:
        return call_cost(registry, provider, query, "moderate")
    # call_cost per complexity, with the price and the input tokens (the same for every complexity) looked up once:
    # routing prices every usable provider this way, and the price table's look-up is most of a call's cost.
    price = registry.price_of(provider)
    tokens_in = estimate_input_tokens(query)
    return sum(
        p / total * price.cost_usd(tokens_in, expected_output_tokens(registry, provider, c))
        for c, p in complexity_p.items()
    )


def estimate_call_cost(registry: ProviderRegistry, provider: str, classification: Classification, query: str) -> float:
    """Price one call of ``provider`` for this query before it is made, over the classifier's complexity belief."""
    return expected_call_cost(registry, provider, query, classification["complexity_p"])


def grounding_fee(registry: ProviderRegistry, premium: str, fresh: bool) -> float:
    """Return what the premium model pays to search for a fresh-facts question (zero otherwise).

    The all-premium baseline must serve the same need: without Google Search grounding the premium model
    answers fresh-fact questions from stale training data, so its grounded price is the fair comparison.
    Google's free daily allowance of grounded prompts is ignored, which overstates the baseline for small volumes.
    """
    return registry.price_of(premium).grounding_fee_usd if fresh else 0.0


def baseline_cost(registry: ProviderRegistry, classification: Classification, query: str) -> float:
    """Estimate what the all-premium path would pay for this query, before any call."""
    premium = premium_provider(registry)
    if premium is None:
        return 0.0
    call = estimate_call_cost(registry, premium, classification, query)
    return call + grounding_fee(registry, premium, classification["needs_fresh"])


def answered_baseline(registry: ProviderRegistry, state: AnalysisState, answering: Attempt | None) -> float:
    """Cost of the same answer from the premium model: the all-premium path the strategist used to take."""
    premium = premium_provider(registry)
    if premium is None:
        return 0.0
    if answering is None:
        return state.get("baseline_estimate_usd", 0.0)
    # The premium model needs search grounding to serve a fresh-facts question at all (see nodes/policy/costing.py).
    grounding = grounding_fee(registry, premium, state["classification"]["needs_fresh"])
    if answering["tier"] == "premium":
        return answering["cost_usd"] + grounding
    complexity = state["classification"]["complexity"]
    tokens_in = answering["input_tokens"] or estimate_input_tokens(state["query"])
    tokens_out = answering["output_tokens"] or registry.settings.routing.expected_output_tokens.get(complexity, 500)
    if registry.provider_settings(premium).thinks:
        tokens_out += registry.settings.routing.expected_thinking_tokens.get(complexity, 0)
    return registry.price_of(premium).cost_usd(tokens_in, tokens_out) + grounding


def premium_provider(registry: ProviderRegistry) -> str | None:
    """Return the first provider of the premium tier, if one is configured."""
    return next((n for n in registry.names() if registry.tier_of(n) == "premium"), None)


def describe_token_model(settings: Settings) -> str:
    """Return the token model in one line, for benchmarks and reports."""
    routing = settings.routing
    out = " / ".join(f"{k} {v}" for k, v in routing.expected_output_tokens.items())
    think = " / ".join(f"{k} {v}" for k, v in routing.expected_thinking_tokens.items())
    return (
        f"input = {PROMPT_OVERHEAD_TOKENS} + len(query)/{CHARS_PER_TOKEN:g} tokens; output by complexity: {out}; "
        f"thinking models add {think} (billed as output); plus per-request fees; the all-premium baseline adds "
        "the premium model's search-grounding fee to fresh-fact queries"
    )


def research_input_tokens(registry: ProviderRegistry, realtime: str, complexity_p: Mapping[str, float]) -> float:
    """Return the tokens the research step adds to the reasoning call's input: the realtime answer, expected."""
    total = sum(complexity_p.values()) or 1.0
    return sum(p / total * expected_output_tokens(registry, realtime, c) for c, p in complexity_p.items())


def research_chain_cost(
    registry: ProviderRegistry, realtime: str, premium: str, query: str, complexity_p: Mapping[str, float]
) -> float:
    """Price research-then-reason: the realtime call, then the premium call reading the query and the research."""
    extra = research_input_tokens(registry, realtime, complexity_p)
    price = registry.price_of(premium)
    total = sum(complexity_p.values()) or 1.0
    reason = sum(
        p
        / total
        * price.cost_usd(estimate_input_tokens(query) + int(extra), expected_output_tokens(registry, premium, c))
        for c, p in complexity_p.items()
    )
    return expected_call_cost(registry, realtime, query, complexity_p) + reason
