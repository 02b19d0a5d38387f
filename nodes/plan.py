"""plan: the ward briefing's research questions (by depth and context), its deadline and its research chain.

``route_after_plan`` fans the questions out to parallel ``gather`` branches (LangGraph ``Send``), one per
question, and one ``ward_data`` branch for the ward's own posts and news; each branch is its own task, so its
result is checkpointed as soon as it finishes and a resumed briefing does not ask a finished question again.

Under spend caps plan holds, in one atomic reservation, the writer's estimate and as many questions' research as
fit with it (nodes/policy/briefing_budget.py), and sends each branch its part: racing briefings cannot spend
what this one's writer needs, nor its branches what another branch holds. When no writer fits, the briefing goes
straight to score, having spent nothing, and its error names the cap (a 402 or 429).
"""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime
from langgraph.types import Send

from graphs.briefing_state import BriefingState, GatherTask, PlanUpdate, WardDataTask
from graphs.context import Context, context_of
from nodes.policy.briefing_budget import hold_briefing, research_estimate, research_tokens, write_estimate
from nodes.policy.briefing_chains import gather_chain, write_chain
from nodes.policy.briefing_prompts import write_prompt
from nodes.policy.budget import ANONYMOUS
from nodes.policy.events import PlanMade
from nodes.policy.progress import emit
from nodes.policy.research import ITEMS_BY_DEPTH, plan_questions


def plan(state: BriefingState, runtime: Runtime[Context]) -> PlanUpdate:
    """Plan the research: the questions, the chain that answers them, and the deadlines (on the first run)."""
    ctx = context_of(runtime)
    settings = ctx.registry.settings
    depth = state.get("depth", "standard")
    chain, notes = gather_chain(ctx.registry)
    update: PlanUpdate = {
        "questions": plan_questions(state["ward"], depth, state.get("context", "neutral")),
        "gather_chain": chain,
        "notes": notes,
    }
    if "started_at" not in state:
        now = ctx.clock()
        total = settings.deadlines.for_depth(depth)
        update |= {
            "started_at": now,
            "deadline_at": now + total,
            "gather_deadline_at": now + total * settings.briefing.gather_share,
        }
    if ctx.budget is not None and "budget_refused" not in state:
        # Once per briefing (budget_refused is set whatever the outcome): a resumed plan must not hold twice.
        questions = update["questions"]
        registry = ctx.registry
        steps = [s for s in write_chain(registry)[0] if s["mode"] == "structured"]
        prompt = write_prompt(
            state["ward"], depth, state.get("context", "neutral"), questions, [], [], ITEMS_BY_DEPTH[depth], None
        )
        pending = research_tokens(registry, questions)
        writers = [(s, write_estimate(registry, s, prompt, pending)) for s in steps]
        research = [
            research_estimate(registry, chain, state["ward"], state.get("context", "neutral"), q) for q in questions
        ]
        hold = hold_briefing(ctx.budget, ctx.caller_key or ANONYMOUS, ctx.clock(), writers, research)
        if hold.writer is not None:
            update["budget_reservation"] = hold.writer
        # In state too (budget_extra), so score settles every part whatever became of its branch.
        update["budget_extra"] = [q for q in hold.questions if q is not None]
        update["question_holds"] = hold.questions
        update["budget_refused"] = hold.refused
    emit(runtime, PlanMade(questions=[q["text"] for q in update["questions"]]))
    return update


def route_after_plan(state: BriefingState) -> list[Send] | Literal["score"]:
    """Send each question to its own gather branch, and the ward to the ward-data branch; a briefing the spend
    caps refused goes straight to score, which says why."""
    if state.get("budget_refused"):
        return "score"
    deadline_at = state["gather_deadline_at"]
    questions = state.get("questions", [])
    holds = state.get("question_holds") or [None] * len(questions)
    sends = [
        Send(
            "gather",
            GatherTask(
                ward=state["ward"],
                context=state.get("context", "neutral"),
                question=q,
                chain=state.get("gather_chain", []),
                deadline_at=deadline_at,
                held=held,
            ),
        )
        for q, held in zip(questions, holds, strict=True)
    ]
    return [*sends, Send("ward_data", WardDataTask(ward=state["ward"], deadline_at=deadline_at))]
