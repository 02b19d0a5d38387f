"""Prompts of the document graph: a playbook or a scenario as JSON in the schema of its pydantic model, with the
fresh facts found for it (and their sources), and, on a retry, what was wrong with the last answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from nodes.policy.conversation_prompts import LANGUAGES
from nodes.policy.structured import schema_for_prompt
from providers.base import Prompt

NEEDS_FRESH_PLAYBOOKS = frozenset({"crisis_response", "opposition_counter"})
NEEDS_FRESH_SCENARIOS = frozenset({"crisis", "opposition"})


def document_prompt(
    model: type[BaseModel],
    ward: str,
    brief: str,
    language: str,
    facts: dict[str, Any] | None,
    feedback: str | None,
) -> Prompt:
    """Ask for one JSON object in ``model``'s schema, for the ward, grounded in the facts when there are any."""
    parts = [
        "You are a campaign strategist's planner: specific, practical, non-partisan; never invent polls, quotes"
        " or events.",
        f"Answer with one JSON object only, no prose, matching this JSON Schema: {schema_for_prompt(model)}",
    ]
    if language in LANGUAGES and language != "en":
        parts.append(f"Write the text values in {LANGUAGES[language]}; keep the JSON keys in English.")
    user = [f"Ward: {ward}.", brief]
    if facts and facts.get("answer"):
        user.append(f"Fresh facts found for this (use them, do not contradict them):\n{facts['answer']}")
        urls = [c.get("url") for c in facts.get("citations", []) if c.get("url")]
        if urls:
            user.append("Sources: " + ", ".join(urls[:8]))
    if feedback:
        user.append(f"Your previous answer was invalid: {feedback}. Answer again with valid JSON in the schema.")
    return Prompt(system=" ".join(parts), user="\n\n".join(user), brief="Answer with the JSON object only.")
