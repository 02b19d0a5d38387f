"""The conversation graph: prepare -> analysis (the analysis graph, as a subgraph) -> reply.

Each reply is routed like any analysis: the analysis graph itself (classify, route, call_model, validate,
cross_check, score, with their policies) runs as a subgraph on the turn's latest message, with the trimmed
history in its prompt. Composed here at the graph level, so no node imports another. The subgraph checkpoints
under the conversation's thread (its own namespace per turn): one provider call per checkpointed step, as in
an analysis, and a turn's attempts and costs are its own.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from graphs.analysis import build_analysis_graph
from graphs.context import Context
from graphs.conversation_state import ConversationInput, ConversationState
from graphs.conversation_steps import prepare, reply

# The subgraph node's name: its token chunks are the reply being written (graphs/conversation_service.py).
ANALYSIS_NODE = "analysis"


def build_conversation_graph() -> StateGraph[ConversationState, Context, ConversationInput, ConversationState]:
    """Return the uncompiled conversation graph; compile it with the checkpointer you own."""
    builder = StateGraph(ConversationState, context_schema=Context, input_schema=ConversationInput)
    builder.add_node("prepare", prepare)
    builder.add_node(ANALYSIS_NODE, build_analysis_graph().compile())
    builder.add_node("reply", reply)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", ANALYSIS_NODE)
    builder.add_edge(ANALYSIS_NODE, "reply")
    builder.add_edge("reply", END)
    return builder


graph = build_conversation_graph().compile(name="conversation")
