"""The ward-briefing graph: plan -> gather (parallel, one branch per question) -> credibility -> write ->
cross_check (deep) -> sanitise -> score.

Built from the analysis graph's machinery: the same Context (registry, breakers, clock, deadline), the same
hedged and recorded provider calls (nodes/policy/hedging.py, attempts.py), the same answer rules and the same
confidence judge; compiled with the checkpointer the caller owns, so every step and every finished research
branch is checkpointed. ``graph`` is the export for `langgraph dev` / Studio (no checkpointer).
"""

from __future__ import annotations

from typing import Any, cast

from langgraph.graph import END, START, StateGraph

from graphs.briefing_result import BriefingOutput
from graphs.briefing_state import BriefingInput, BriefingState, GatherTask, WardDataTask
from graphs.context import Context
from nodes.check_briefing import cross_check, route_after_check
from nodes.credibility import credibility
from nodes.gather import gather
from nodes.plan import plan, route_after_plan
from nodes.sanitise import sanitise
from nodes.score_briefing import score
from nodes.ward_data import ward_data
from nodes.write import route_after_write, write


def build_briefing_graph() -> StateGraph[BriefingState, Context, BriefingInput, BriefingOutput]:
    """Return the uncompiled ward-briefing graph; compile it with the checkpointer you own."""
    builder = StateGraph(
        BriefingState, context_schema=Context, input_schema=BriefingInput, output_schema=BriefingOutput
    )
    builder.add_node("plan", plan)
    # Both run only from the plan's Sends, each on its own task (input_schema: what a Send carries to it).
    # (LangGraph's overloads cannot type a node whose input is not the graph's state: hence Any.)
    builder.add_node("gather", cast(Any, gather), input_schema=GatherTask)
    builder.add_node("ward_data", cast(Any, ward_data), input_schema=WardDataTask)
    builder.add_node("credibility", credibility)
    builder.add_node("write", write)
    builder.add_node("cross_check", cross_check)
    builder.add_node("sanitise", sanitise)
    builder.add_node("score", score)
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", route_after_plan, ["gather", "ward_data", "score"])
    builder.add_edge("gather", "credibility")
    builder.add_edge("ward_data", "credibility")
    builder.add_edge("credibility", "write")
    builder.add_conditional_edges("write", route_after_write)
    builder.add_conditional_edges("cross_check", route_after_check)
    builder.add_edge("sanitise", "score")
    builder.add_edge("score", END)
    return builder


graph = build_briefing_graph().compile(name="ward_briefing")
