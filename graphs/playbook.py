"""The document graph of playbooks and scenarios: plan -> ground (the analysis graph as a subgraph, when the type
needs fresh facts: crisis response, opposition counter) -> draft (structured output, failing over on schema
violations) -> end. Compiled with the caller's checkpointer: each attempt is checkpointed, none is paid twice."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from graphs.analysis import build_analysis_graph
from graphs.context import Context
from graphs.playbook_state import DocumentInput, DocumentState
from graphs.playbook_steps import draft, plan, route_after_draft, route_after_plan


def build_document_graph() -> StateGraph[DocumentState, Context, DocumentInput, DocumentState]:
    """Return the uncompiled document graph; compile it with the checkpointer you own."""
    builder = StateGraph(DocumentState, context_schema=Context, input_schema=DocumentInput)
    builder.add_node("plan", plan)
    builder.add_node("ground", build_analysis_graph().compile())
    builder.add_node("draft", draft)
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", route_after_plan)
    builder.add_edge("ground", "draft")
    builder.add_conditional_edges("draft", route_after_draft, {"draft": "draft", "__end__": END})
    return builder


graph = build_document_graph().compile(name="playbook")
