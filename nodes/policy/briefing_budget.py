"""Spend caps for ward briefings: what plan holds for the writer before the research starts, and how the
briefing's calls are priced before they are made (the same token model as the analysis's, on their own prompts).

A briefing's paid calls go through the analysis's machinery (nodes/policy/budget.py: ``Cover``): each must fit
what the briefing holds against the caps, else the shortfall is reserved on top, else it is not made. What is
particular to a briefing is the order of need: without a writer nothing can be said, while a research question
left out still leaves a briefing written from the others. So plan holds the writer's estimate before the gather
branches (which reserve their own calls, in parallel) can spend what is left; and when not even the cheapest
paid writer fits and no free one is usable, the briefing is refused before it spends anything.
"""

from __future__ import annotations

import dataclasses

from graphs.briefing_state import Question, WriteStep
from nodes.policy.budget import BudgetStore, Refusal, not_made, to_micros
from nodes.policy.costing import FALLBACK_OUTPUT_TOKENS, prompt_call_cost
from providers.base import Prompt
from providers.registry import ProviderRegistry

# The writer's answer is a whole briefing, multi-step analysis: priced as a complex answer (a thinking model's
# thinking included); a checker's verdicts as a moderate one.
WRITE_COMPLEXITY = "complex"
CHECK_COMPLEXITY = "moderate"
RESEARCH_COMPLEXITY = "moderate"


def research_tokens(registry: ProviderRegistry, questions: list[Question]) -> int:
    """Return the input the research will add to the writer's prompt, before it is done: one moderate answer a
    question, as the token model prices the research calls themselves."""
    per_answer = registry.settings.routing.expected_output_tokens.get(RESEARCH_COMPLEXITY, FALLBACK_OUTPUT_TOKENS)
    return per_answer * len(questions)


def write_estimate(registry: ProviderRegistry, step: WriteStep, prompt: Prompt, pending_tokens: int = 0) -> float:
    """Price one writer call on its prompt (``pending_tokens``: research not done yet, priced in advance)."""
    return prompt_call_cost(registry, step["provider"], prompt, WRITE_COMPLEXITY, pending_tokens)


def hold_writer(
    budget: BudgetStore,
    caller: str,
    at: float,
    priced: list[tuple[WriteStep, float]],
) -> tuple[dict[str, object] | None, str | None]:
    """Reserve the first writer whose estimate fits the caps, in the chain's order (premium before cheaper tiers).

    Return ``(reservation, None)``; ``(None, None)`` when a free writer (the local model) is usable, so nothing
    needs holding; ``(None, why)`` when no writer fits: ``why`` starts as the refusal does (a 402 or 429).
    """
    refusal: tuple[Refusal, float] | None = None
    for _step, estimate in priced:
        if to_micros(estimate) == 0:
            return None, None
        outcome = budget.reserve(caller, estimate, at)
        if not isinstance(outcome, Refusal):
            return dataclasses.asdict(outcome), None
        refusal = (outcome, estimate)  # the last is the cheapest writer's: the one the message should name
    if refusal is None:
        return None, None  # no writer at all: the briefing fails the usual way, not for money
    return None, not_made(refusal[0], "the briefing (no writer fits)", refusal[1])
