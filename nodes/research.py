"""research: the first half of research-then-reason. One realtime call for fresh facts with sources.

Route plans it (``research_step``) when a query likely needs both fresh facts and complex reasoning; the chain's
premium step then reasons over the findings and cites them (nodes/policy/prompt.py). One call per node
execution, so the paid research is checkpointed before the reasoning call: a resumed analysis never pays for it
twice. A failed research step leaves ``research`` None: the reasoning still answers, and the result says it
is degraded (no fresh facts behind it); so does one the spend caps refused (nodes/policy/budget.py: Cover).
"""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.state import AnalysisState, ResearchUpdate
from nodes.policy.answers import candidate_from
from nodes.policy.attempts import attempt_call, attempt_timeout_s, skipped_attempt
from nodes.policy.budget import not_made
from nodes.policy.costing import estimate_call_cost
from nodes.policy.research_prompt import research_prompt


def research(state: AnalysisState, runtime: Runtime[Context]) -> ResearchUpdate:
    """Ask the realtime provider for the facts the analysis needs, with their sources."""
    ctx = context_of(runtime)
    step = state.get("research_step")
    assert step is not None, "research runs only when route planned a research step"
    deadline_at = ctx.deadline_at or state["deadline_at"]
    policy = ctx.registry.settings.resilience.retry
    # A share of the time left, like any step with fallbacks after it: the reasoning call still needs its time.
    timeout_s = attempt_timeout_s(deadline_at - ctx.clock(), True, policy)
    estimate = estimate_call_cost(ctx.registry, step["provider"], state["classification"], state["query"])
    cover = ctx.cover(state)
    refusal = cover.admit(estimate)
    if refusal is not None:
        # Not made: the reasoning step still answers, degraded (no fresh facts behind it), if it fits itself.
        why = not_made(refusal, f"the research by {step['provider']}", estimate)
        skipped = skipped_attempt(ctx.registry, step, "research", why)
        return {"attempts": [skipped], "research": None, "deadline_passed": ctx.clock() >= deadline_at}
    runtime.stream_writer({"event": "research_start", "provider": step["provider"]})
    attempt, reply, _ = attempt_call(ctx.registry, ctx.clock, step, research_prompt(state), timeout_s, "research")
    update: ResearchUpdate = {
        "attempts": [attempt],
        "research": None,
        "deadline_passed": ctx.clock() >= deadline_at,
        "budget_extra": cover.extra,
    }
    if reply is not None:
        found = candidate_from(reply, step, ctx.registry.vendor_of(step["provider"]))
        if found["text"].strip():
            update["research"] = {"provider": step["provider"], "text": found["text"], "citations": found["citations"]}
    return update


def route_after_route_with_research(state: AnalysisState) -> Literal["research", "call_model", "score"]:
    """Research first when route planned it (and it has not run yet); else on to the chain."""
    if state.get("research_step") is not None and "research" not in state and state.get("chain"):
        return "research"
    return "call_model" if state.get("chain") else "score"
