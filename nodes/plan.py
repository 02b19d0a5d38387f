"""plan: the ward briefing's research questions (by depth and context), its deadline and its research chain.

``route_after_plan`` fans the questions out to parallel ``gather`` branches (LangGraph ``Send``), one per
question, and one ``ward_data`` branch for the ward's own posts and news; each branch is its own task, so its
result is checkpointed as soon as it finishes and a resumed briefing does not ask a finished question again.
"""

from __future__ import annotations

from langgraph.runtime import Runtime
from langgraph.types import Send

from graphs.briefing_state import BriefingState, GatherTask, PlanUpdate, WardDataTask
from graphs.context import Context, context_of
from nodes.policy.briefing_chains import gather_chain
from nodes.policy.events import PlanMade
from nodes.policy.progress import emit
from nodes.policy.research import plan_questions


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
    emit(runtime, PlanMade(questions=[q["text"] for q in update["questions"]]))
    return update


def route_after_plan(state: BriefingState) -> list[Send]:
    """Send each question to its own gather branch, and the ward to the ward-data branch."""
    deadline_at = state["gather_deadline_at"]
    sends = [
        Send(
            "gather",
            GatherTask(
                ward=state["ward"],
                context=state.get("context", "neutral"),
                question=q,
                chain=state.get("gather_chain", []),
                deadline_at=deadline_at,
            ),
        )
        for q in state.get("questions", [])
    ]
    return [*sends, Send("ward_data", WardDataTask(ward=state["ward"], deadline_at=deadline_at))]
