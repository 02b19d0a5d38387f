"""The analysis graph: classify -> route [-> research] -> call_model -> validate -> cross_check -> score.

``build_analysis_graph`` returns the uncompiled StateGraph; callers compile it with the checkpointer they own
(app.py). ``graph`` is the export for `langgraph dev` / Studio, compiled without a checkpointer because the
server brings its own.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from graphs.context import Context
from graphs.result import AnalysisOutput
from graphs.state import AnalysisInput, AnalysisState
from nodes.call_model import call_model, route_after_call, route_after_route
from nodes.classify import classify
from nodes.cross_check import cross_check, route_after_cross_check
from nodes.research import research, route_after_route_with_research
from nodes.route import route
from nodes.score import score
from nodes.validate import route_after_validate, validate


def build_analysis_graph() -> StateGraph[AnalysisState, Context, AnalysisInput, AnalysisOutput]:
    """Return the uncompiled analysis graph; compile it with the checkpointer you own."""
    builder = StateGraph(
        AnalysisState, context_schema=Context, input_schema=AnalysisInput, output_schema=AnalysisOutput
    )
    builder.add_node("classify", classify)
    builder.add_node("route", route)
    builder.add_node("research", research)
    builder.add_node("call_model", call_model)
    builder.add_node("validate", validate)
    builder.add_node("cross_check", cross_check)
    builder.add_node("score", score)
    builder.add_edge(START, "classify")
    builder.add_edge("classify", "route")
    # Research-then-reason runs its research step first; route_after_route decides from there.
    builder.add_conditional_edges("route", route_after_route_with_research)
    builder.add_conditional_edges("research", route_after_route)
    builder.add_conditional_edges("call_model", route_after_call)
    builder.add_conditional_edges("validate", route_after_validate)
    builder.add_conditional_edges("cross_check", route_after_cross_check)
    builder.add_edge("score", END)
    return builder


graph = build_analysis_graph().compile(name="strategist")
