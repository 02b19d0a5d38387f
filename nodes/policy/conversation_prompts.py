"""How a conversation's history becomes part of a reply's prompt: trimmed to a token budget, newest turns kept.

The history is cut with ``langchain_core.messages.trim_messages`` (strategy ``last``, starting on a user turn)
and the approximate token counter, so it fits any provider's window, the embedded local model's 2,048 tokens
included, and a long conversation costs no more per reply than a short one.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage, trim_messages
from langchain_core.messages.utils import count_tokens_approximately

# Tokens of earlier turns a reply sees (the latest message is never cut).
DEFAULT_HISTORY_TOKENS = 600
LANGUAGES = {"en": "English", "hi": "Hindi", "te": "Telugu", "ur": "Urdu"}
CHAT_TYPES = ("strategy", "analysis", "planning", "quick", "playbook", "scenario")


def normalise_language(value: object) -> str:
    """Return one of en, hi, te, ur (anything else is en, as the contract says)."""
    text = str(value or "").strip().lower()
    return text if text in LANGUAGES else "en"


def normalise_chat_type(value: object) -> str:
    """Return one of the contract's chat types (anything else is strategy, its default)."""
    text = str(value or "").strip().lower()
    return text if text in CHAT_TYPES else "strategy"


def trimmed_history(messages: Sequence[AnyMessage], max_tokens: int = DEFAULT_HISTORY_TOKENS) -> list[BaseMessage]:
    """Return the newest earlier turns that fit ``max_tokens`` (approximate count), oldest first."""
    kept = trim_messages(
        list(messages),
        max_tokens=max_tokens,
        token_counter=count_tokens_approximately,
        strategy="last",
        start_on="human",
        allow_partial=False,
    )
    return list(kept)


def render_history(messages: Sequence[BaseMessage], language: str) -> str | None:
    """Render earlier turns as 'User: ...' / 'Assistant: ...' lines, with the language to answer in."""
    lines = [f"{'User' if isinstance(m, HumanMessage) else 'Assistant'}: {m.text.strip()}" for m in messages]
    if language != "en":
        lines = lines or ["(no earlier messages)"]
        lines.append(f"(Reply in {LANGUAGES[language]}.)")
    return "\n".join(lines) if lines else None


def depth_for(chat_type: str) -> str:
    """Return the analysis depth of a chat type: quick chats answer briefly, the others as a standard analysis."""
    return "quick" if chat_type == "quick" else "standard"
