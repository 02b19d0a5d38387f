"""How a query becomes a prompt, and how the model's stated confidence is read back out of its answer."""

from __future__ import annotations

import re

from graphs.state import AnalysisState
from providers.base import Prompt

_DEPTH_BRIEF = {
    "quick": "in two or three sentences",
    "standard": "in a few bullet points",
    "deep": "step by step, with risks and a recommendation",
}
_DEPTH_GUIDANCE = {
    "quick": "Answer briefly: the essentials in a few sentences or bullets.",
    "standard": "Give a focused analysis with concrete, actionable points.",
    "deep": "Give a thorough multi-step analysis: assumptions, evidence, options, risks and a recommendation.",
}
_CONTEXT_GUIDANCE = {
    "defensive": "The campaign is on the defensive: weigh risks, threats and rebuttals first.",
    "neutral": "Take a balanced view of opportunities and risks.",
    "offensive": "The campaign is on the offensive: weigh opportunities and openings first.",
}
_CONFIDENCE_LINE = re.compile(r"^\s*confidence\s*[:=]\s*([01](?:\.\d+)?)\s*$", re.IGNORECASE | re.MULTILINE)


def build_prompt(state: AnalysisState) -> Prompt:
    """Render the query with its depth, strategic context, ward and task into a provider-neutral prompt."""
    depth = state.get("depth", "standard")
    context = state.get("context", "neutral")
    task = state.get("classification", {}).get("task", "")
    # One short paragraph: small local models echo long multi-line instructions instead of following them.
    parts = [
        "Answer as a campaign strategist's analyst: factual, specific, non-partisan; never invent facts, polls"
        " or quotes.",
        _DEPTH_GUIDANCE[depth],
        _CONTEXT_GUIDANCE.get(context, _CONTEXT_GUIDANCE["neutral"]),
    ]
    if task:
        parts.append(f"Task: {task.replace('_', ' ')}.")
    if state.get("ward"):
        parts.append(f"Ward: {state['ward']}.")
    parts.append("Finish with a line 'Confidence: <0 to 1>'.")
    brief = f"Answer as a campaign strategy analyst, {_DEPTH_BRIEF[depth]}."
    user = state["query"]
    if state.get("instructions"):
        # Content to analyse: the instructions, then the content whole (never cut to fit them).
        user = f"{state['instructions']}\n\nContent:\n{user}"
    if state.get("history"):
        # A conversation's reply: the earlier turns first, so "shorten that" knows what "that" is.
        user = f"Conversation so far:\n{state['history']}\n\nReply to the latest message:\n{user}"
    return Prompt(system=" ".join(parts), user=user, brief=brief)


def split_stated_confidence(text: str) -> tuple[str, float | None]:
    """Remove the model's trailing confidence line and return it as a number (None when absent)."""
    matches = list(_CONFIDENCE_LINE.finditer(text))
    if not matches:
        return text.strip(), None
    last = matches[-1]
    value = float(last.group(1))
    cleaned = (text[: last.start()] + text[last.end() :]).strip()
    return cleaned, value if 0.0 <= value <= 1.0 else None
