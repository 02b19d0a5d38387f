"""State of the conversation graph: a LangGraph thread whose ``messages`` accumulate (the add_messages reducer).

The checkpointer that stores analyses stores conversations too: each thread is one conversation, and each turn
adds the user's message and the reply. A turn's analysis runs in the analysis graph as a subgraph, so its own
attempts, costs and checkpoints are per turn and never mix with the previous turn's.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from graphs.state import StrategicContext
from providers.config import Depth

Language = Literal["en", "hi", "te", "ur"]
ChatType = Literal["strategy", "analysis", "planning", "quick", "playbook", "scenario"]


class ConversationInput(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    ward: str
    chat_type: ChatType
    language: Language
    history_tokens: int


class ConversationState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    ward: NotRequired[str]
    chat_type: NotRequired[ChatType]
    language: NotRequired[Language]
    history_tokens: NotRequired[int]  # the budget of earlier turns a reply sees (CONVERSATION_HISTORY_TOKENS)
    # What the turn's analysis (the subgraph) reads: set by prepare from the latest message and the history.
    query: NotRequired[str]
    history: NotRequired[str | None]
    depth: NotRequired[Depth]
    context: NotRequired[StrategicContext]
    # The turn's analysis result (the subgraph's output channel, AnalysisResult as JSON).
    result: NotRequired[dict[str, Any]]


class PrepareUpdate(TypedDict, total=False):
    query: str
    history: str | None
    depth: Depth
    context: StrategicContext
    ward: str


class ReplyUpdate(TypedDict, total=False):
    messages: list[AnyMessage]
