"""Spend caps for ward briefings: what plan holds for the writer before the research starts, and how the
briefing's calls are priced before they are made (the same token model as the analysis's, on their own prompts).

A briefing's paid calls go through the analysis's machinery (nodes/policy/budget.py: ``Cover``): each must fit
what the briefing holds against the caps, else the shortfall is reserved on top, else it is not made. What is
particular to a briefing is the order of need: without a writer nothing can be said, while a research question
left out still leaves a briefing written from the others. So plan holds, in one atomic reservation, the writer's
estimate and as many questions' as fit with it, and gives each gather branch its part (the branches run in
parallel: each keeps within its own); when not even the cheapest paid writer fits and no free one is usable,
the briefing is refused before it spends anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from graphs.briefing_state import Question, WriteStep
from graphs.state import ChainStep, Classification, StrategicContext
from nodes.policy.briefing_prompts import gather_prompt
from nodes.policy.budget import MICRO, BudgetStore, Refusal, not_made, split, to_micros
from nodes.policy.costing import FALLBACK_OUTPUT_TOKENS, estimate_call_cost, prompt_call_cost
from providers.base import Prompt
from providers.registry import ProviderRegistry

# The writer's answer is a whole briefing, multi-step analysis: priced as a complex answer (a thinking model's
# thinking included); a checker's verdicts as a moderate one.
WRITE_COMPLEXITY = "complex"
CHECK_COMPLEXITY = "moderate"
RESEARCH_COMPLEXITY = "moderate"

# What a research question needs, in the analysis graph's terms: fresh facts, with sources where the provider
# can give them (validated by nodes/policy/answers.py, as every answer is).
RESEARCH_NEEDS: Classification = {
    "fresh_p": 1.0,
    "complexity_p": {RESEARCH_COMPLEXITY: 1.0},
    "task_p": {"fact_lookup": 1.0},
    "complexity": RESEARCH_COMPLEXITY,
    "task": "fact_lookup",
    "needs_fresh": True,
}


def research_estimate(
    registry: ProviderRegistry, chain: list[ChainStep], ward: str, context: StrategicContext, question: Question
) -> float:
    """Price a question's research at the chain's first step (0 without one), as the gather branch and hedging
    price its calls (the query is the gather prompt's user text, the needs ``RESEARCH_NEEDS``)."""
    if not chain:
        return 0.0
    prompt = gather_prompt(ward, context, question)
    return estimate_call_cost(registry, chain[0]["provider"], RESEARCH_NEEDS, prompt.user)


def research_tokens(registry: ProviderRegistry, questions: list[Question]) -> int:
    """Return the input the research will add to the writer's prompt, before it is done: one moderate answer a
    question, as the token model prices the research calls themselves."""
    per_answer = registry.settings.routing.expected_output_tokens.get(RESEARCH_COMPLEXITY, FALLBACK_OUTPUT_TOKENS)
    return per_answer * len(questions)


def write_estimate(registry: ProviderRegistry, step: WriteStep, prompt: Prompt, pending_tokens: int = 0) -> float:
    """Price one writer call on its prompt (``pending_tokens``: research not done yet, priced in advance)."""
    return prompt_call_cost(registry, step["provider"], prompt, WRITE_COMPLEXITY, pending_tokens)


@dataclass(frozen=True)
class Hold:
    """What plan holds for a briefing: the writer's part, each question's part (None: not held), and why the caps
    refused the briefing outright (no writer fits; then nothing is held)."""

    writer: dict[str, object] | None
    questions: list[dict[str, object] | None]
    refused: str | None = None


def hold_briefing(
    budget: BudgetStore, caller: str, at: float, writers: list[tuple[WriteStep, float]], research: list[float]
) -> Hold:
    """Reserve the writer and as many research questions as fit, as one amount, and split it into parts.

    Writers are tried in the chain's order (premium before cheaper tiers; a free one needs nothing held); for
    each, the questions are trimmed from the end (the plan lists the most telling first) until the whole fits.
    One atomic reservation per try, so briefings racing for the last dollars each get a writer with research, or
    less research, or are refused; held question by question, the racing branches left some briefings a writer
    and no research at all. A question not held is still asked if its call fits when its branch runs.
    """
    refusal: tuple[Refusal, float] | None = None
    for _step, estimate in writers:
        writer = to_micros(estimate)
        for keep in range(len(research), -1, -1):
            parts = [writer, *(to_micros(r) for r in research[:keep])]
            if sum(parts) == 0:
                return Hold(None, [None] * len(research))  # a free writer and nothing to research: nothing to hold
            outcome = budget.reserve(caller, sum(parts) / MICRO, at)
            if isinstance(outcome, Refusal):
                refusal = (outcome, estimate)
                continue
            held = [dataclasses.asdict(p) for p in split(outcome, parts)]
            questions: list[dict[str, object] | None] = [*held[1:], *([None] * (len(research) - keep))]
            return Hold(held[0] if writer else None, questions)
    if refusal is None:
        return Hold(None, [None] * len(research))  # no writer at all: the briefing fails the usual way, not for money
    # The last refusal is the cheapest writer's alone: the one the message should name.
    return Hold(None, [None] * len(research), not_made(refusal[0], "the briefing (no writer fits)", refusal[1]))
