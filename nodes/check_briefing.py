"""cross_check (deep briefings): a provider of another vendor checks each key intelligence item.

The checker answers structured output too (``Verdicts``): an invalid answer is recorded with its validation
error and the next checker is asked. Agreement is the share of items found supported; each item's verdict
lowers its confidence when unsupported or contradicted (nodes/policy/credibility.py). One checker call per
node execution, so a completed check is checkpointed and never paid twice.

Under spend caps a checker call must first fit what the briefing holds (nodes/policy/budget.py: ``Cover``); one
the caps refuse is not made, a ``skipped`` attempt says why, and the next, cheaper checker is asked. A briefing
no checker could be paid for is served unchecked (its confidence has no cross-validation factor).
"""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from graphs.briefing_state import BriefingState, CheckUpdate, ItemVerdict, Verdict
from graphs.context import Context, context_of
from nodes.policy.attempts import attempt_call, skipped_attempt
from nodes.policy.briefing_budget import CHECK_COMPLEXITY
from nodes.policy.briefing_chains import check_chain
from nodes.policy.briefing_prompts import check_prompt
from nodes.policy.budget import not_made
from nodes.policy.costing import prompt_call_cost
from nodes.policy.events import CrossCheckStarted
from nodes.policy.progress import emit
from nodes.policy.structured import parse_structured


class _Verdict(BaseModel):
    item: int = Field(ge=0)
    verdict: Verdict
    note: str = ""


class Verdicts(BaseModel):
    verdicts: list[_Verdict] = Field(min_length=1)


def cross_check(state: BriefingState, runtime: Runtime[Context]) -> CheckUpdate:
    """Ask the next checker for a verdict on every key intelligence item."""
    ctx = context_of(runtime)
    registry = ctx.registry
    writer, draft = state.get("writer"), state.get("draft")
    assert writer is not None and draft is not None, "cross_check runs only after a structured draft"
    chain = state.get("check_chain")
    if chain is None:
        chain = check_chain(registry, writer["vendor"])
    cursor = state.get("check_cursor", 0)
    deadline_at = ctx.deadline_at or state["deadline_at"]
    update: CheckUpdate = {"check_chain": chain, "check_cursor": cursor + 1}
    if cursor >= len(chain):
        update["deadline_passed"] = ctx.clock() >= deadline_at
        return update
    step = chain[cursor]
    items = [item["content"] for item in draft["key_intelligence"]]
    prompt = check_prompt(state["ward"], items, state.get("sources", []))
    estimate = prompt_call_cost(registry, step["provider"], prompt, CHECK_COMPLEXITY)
    cover = ctx.cover(state)
    refusal = cover.admit(estimate)
    if refusal is not None:
        why = not_made(refusal, f"the check by {step['provider']}", estimate)
        skipped = skipped_attempt(registry, step, "cross_check", why)
        return update | {"attempts": [skipped], "deadline_passed": ctx.clock() >= deadline_at}
    emit(runtime, CrossCheckStarted(provider=step["provider"]))
    attempt, reply, _ = attempt_call(registry, ctx.clock, step, prompt, deadline_at - ctx.clock(), "cross_check")
    update["deadline_passed"] = ctx.clock() >= deadline_at
    update["budget_extra"] = cover.extra
    if reply is not None:
        parsed, problem = parse_structured(reply.text, Verdicts)
        if parsed is None:
            attempt |= {"outcome": "invalid", "error_class": "invalid_answer", "error": f"invalid answer: {problem}"}
        else:
            verdicts: dict[int, ItemVerdict] = {}
            for v in parsed.verdicts:
                if v.item < len(items):
                    verdicts.setdefault(v.item, {"item": v.item, "verdict": v.verdict, "note": v.note[:300]})
            supported = sum(1 for v in verdicts.values() if v["verdict"] == "supported")
            update["check"] = {
                "provider": step["provider"],
                "model": reply.model,
                # An item the checker did not judge counts as not supported.
                "agreement": round(supported / len(items), 4) if items else 0.0,
                "verdicts": sorted(verdicts.values(), key=lambda v: v["item"]),
            }
    update["attempts"] = [attempt]
    return update


def route_after_check(state: BriefingState) -> Literal["cross_check", "sanitise"]:
    """Sanitise once a check came back; otherwise ask the next checker while there is one and time left."""
    if state.get("check") is not None or state.get("deadline_passed"):
        return "sanitise"
    return "cross_check" if state.get("check_cursor", 0) < len(state.get("check_chain", [])) else "sanitise"
