"""The conversation graph's own steps around the analysis subgraph: prepare a turn, then record its reply.

They sit at the nodes' layer (they import no node): ``prepare`` turns the latest user message and the trimmed
history into the analysis's input; ``reply`` appends the answer as an AI message carrying what the client shows
beside it (confidence, sources, providers), so the thread's messages are the whole conversation.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.conversation_state import ConversationState, PrepareUpdate, ReplyUpdate
from nodes.policy.conversation_prompts import (
    DEFAULT_HISTORY_TOKENS,
    depth_for,
    normalise_chat_type,
    normalise_language,
    render_history,
    trimmed_history,
)


class NothingToAnswer(ValueError):
    """The conversation's last message is not a user's message: there is nothing to reply to."""


def prepare(state: ConversationState) -> PrepareUpdate:
    """Build the turn's analysis input: the latest user message as the query, earlier turns as history."""
    messages = state.get("messages", [])
    if not messages or not isinstance(messages[-1], HumanMessage):
        raise NothingToAnswer("the conversation has no unanswered user message")
    chat_type = normalise_chat_type(state.get("chat_type"))
    language = normalise_language(state.get("language"))
    earlier = trimmed_history(messages[:-1], state.get("history_tokens") or DEFAULT_HISTORY_TOKENS)
    return {
        "query": messages[-1].text.strip(),
        "history": render_history(earlier, language),
        "depth": "quick" if depth_for(chat_type) == "quick" else "standard",
        "context": "neutral",
    }


def reply_metadata(result: dict[str, Any]) -> dict[str, Any]:
    """Return what a reply message carries besides its text (read back by GET /conversation/<id>)."""
    confidence = result.get("confidence") or {}
    providers = sorted({a["provider"] for a in result.get("attempts", []) if a.get("outcome") == "ok"})
    return {
        "thread_result": result.get("thread_id"),
        "provider": result.get("provider"),
        "model": result.get("model"),
        "confidence": confidence.get("value"),
        "sources": [c.get("url") for c in result.get("citations", [])],
        "providers_used": providers,
        "cost_usd": result.get("cost_usd"),
        "error": result.get("error"),
    }


def reply(state: ConversationState, runtime: Runtime[Context]) -> ReplyUpdate:
    """Append the turn's answer to the conversation (an empty answer is recorded as the failure it is)."""
    result = state.get("result") or {}
    ctx = context_of(runtime)
    text = result.get("answer") or ""
    if not text:
        # Nothing to say: the user's message stays the last one, so the next request answers it again.
        return {}
    stamp = dt.datetime.fromtimestamp(ctx.clock(), dt.UTC).isoformat()
    meta = reply_metadata(result) | {"timestamp": stamp}
    return {"messages": [AIMessage(content=text, additional_kwargs={"strategist": meta})]}
