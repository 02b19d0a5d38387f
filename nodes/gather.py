"""gather: one research question, answered with its sources by the research chain (one parallel branch).

The branch walks the chain with the analysis graph's hedged calls (nodes/policy/hedging.py): when the realtime
provider is slower than it usually is, the next provider starts in parallel and the first usable answer wins.
An answer from a search-backed provider without sources is unusable (fresh facts answered from memory) and the
next provider is asked; the premium fallback answers from its own knowledge, without sources.

The branch is one LangGraph task: its attempts and finding are checkpointed when it finishes, so a briefing
resumed after a crash does not ask a finished question again (only the branches that were still running).

Under spend caps every call of the branch, a hedge included, must first fit what the branch holds: its part of
what plan reserved (nodes/policy/briefing_budget.py), else the shortfall is reserved on top (nodes/policy/budget.py:
``Cover``, over what this branch alone has spent and holds, since the branches run in parallel). A call the caps
refuse is not made, a ``skipped`` attempt says why, and so does the question's finding: the briefing is written
from what the other branches found, and says which questions it did without.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import cast

from langgraph.runtime import Runtime

from graphs.briefing_state import Finding, GatherTask, GatherUpdate, SourceDict
from graphs.context import Context, context_of
from graphs.state import AnalysisState, Attempt, ChainStep
from nodes.policy.attempts import skipped_attempt
from nodes.policy.briefing_budget import RESEARCH_NEEDS, research_estimate
from nodes.policy.briefing_prompts import gather_prompt
from nodes.policy.budget import BudgetStore, Cover, correct_spend, not_made
from nodes.policy.events import GatherStarted
from nodes.policy.hedging import Group, hedge_not_made, in_record_order, race, record_group, steps_used
from nodes.policy.progress import emit


def gather(task: GatherTask, runtime: Runtime[Context]) -> GatherUpdate:
    """Answer one research question: walk the chain (hedged) until a usable answer with its sources."""
    ctx = context_of(runtime)
    registry = ctx.registry
    question = task["question"]
    deadline_at = task["deadline_at"]
    if ctx.deadline_at is not None:
        # A resumed briefing has a fresh deadline: the research gets its share of what is left.
        now = ctx.clock()
        deadline_at = now + (ctx.deadline_at - now) * registry.settings.briefing.gather_share
    prompt = gather_prompt(task["ward"], task["context"], question)
    chain = task["chain"]
    # The hedging machinery reads the chain, the query (for cost estimates) and the needs from an analysis state.
    view = cast(
        AnalysisState,
        {"query": prompt.user, "chain": chain, "classification": RESEARCH_NEEDS, "constraints": {}, "attempts": []},
    )
    emit(runtime, GatherStarted(question=question["id"], text=question["text"]))
    attempts: list[Attempt] = []
    finding: Finding = {
        "question_id": question["id"],
        "category": question["category"],
        "text": None,
        "provider": None,
        "model": None,
        "sources": [],
        "error": "no research provider is available" if not chain else None,
    }
    extra: list[dict[str, object]] = []  # what this branch reserved on top against the caps, settled by score
    # Its part of what plan reserved (already in state for score to settle): the branch's calls fit in it first.
    part = task.get("held")
    held: list[dict[str, object]] = [part] if part is not None else []

    def estimate(step: ChainStep) -> float:
        # As plan priced the question and as hedging prices an abandoned call: what is held is what is recorded.
        return research_estimate(registry, [step], task["ward"], task["context"], question)

    cursor = 0
    while cursor < len(chain) and ctx.clock() < deadline_at:
        # Fresh each call, over what the branch has actually spent so far: a call billed past its estimate
        # leaves less room for the next.
        cover = ctx.cover({"attempts": attempts, "budget_extra": held + extra})
        step = chain[cursor]
        refusal = cover.admit(estimate(step))
        if refusal is not None:
            # Not made; the next step (another tier) may still fit. The finding says why if none does.
            why = not_made(refusal, f"the research by {step['provider']} on {question['id']}", estimate(step))
            attempts.append(skipped_attempt(registry, step, "gather", why))
            finding["error"] = why
            cursor += 1
            continue

        def admit_hedge(hedge: ChainStep, cover: Cover = cover) -> str | None:
            refused = cover.admit(estimate(hedge))
            return None if refused is None else not_made(refused, f"the hedge to {hedge['provider']}", estimate(hedge))

        group, reservation = race(
            registry, ctx.clock, view, cursor, prompt, deadline_at, runtime.stream_writer, "gather", admit=admit_hedge
        )
        extra += cover.extra
        refused_hedge = hedge_not_made(registry, group, "gather")
        on_settled = _spend_correction(ctx.budget, held + extra, group, estimate)
        recorded: list[Attempt] = [
            a | {"role": "gather"} for a in record_group(registry, view, group, reservation, on_settled=on_settled)
        ]
        attempts += refused_hedge + recorded
        chosen = group.chosen
        if chosen is not None and chosen.reply is not None and chosen.problem is None:
            reply = chosen.reply
            sources: list[SourceDict] = [
                {"url": c.url, "title": c.title, "date": c.date, "snippet": "", "origin": "web"}
                for c in reply.citations
            ]
            finding |= {
                "text": reply.text.strip(),
                "provider": chosen.step["provider"],
                "model": reply.model,
                "sources": sources,
                "error": None,
            }
            break
        failures = [a for a in recorded if a["outcome"] != "ok"]
        finding["error"] = "; ".join(f"{a['provider']}: {a['error'] or a['error_class']}" for a in failures) or None
        cursor += steps_used(group)
    if finding["text"] is None and finding["error"] is None:
        finding["error"] = "the research deadline passed"
    return {"findings": [finding], "attempts": attempts, "budget_extra": extra}


def _spend_correction(
    budget: BudgetStore | None,
    held: list[dict[str, object]],
    group: Group,
    estimate: Callable[[ChainStep], float],
) -> Callable[[int, float], None] | None:
    """Return how an abandoned call (a hedge's loser), recorded at its estimate, adds what it billed past it once
    it completes (nodes/policy/budget.py: correct_spend); the briefing may have been settled by then."""
    if budget is None:
        return None
    # Computed now: the correction may come from the loser's thread after this branch has returned.
    estimates = [estimate(call.step) for call in in_record_order(group)]
    snapshot: list[Mapping[str, object]] = list(held)

    def on_settled(position: int, usd: float) -> None:
        correct_spend(budget, snapshot, estimates[position], usd)

    return on_settled
