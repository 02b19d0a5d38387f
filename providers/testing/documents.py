"""Test doubles for playbooks and scenarios: a valid writer answer of each, fresh facts for the grounding
research, and a fake provider step that answers a document prompt with the right one.

Written out as plain JSON in the shapes graphs/playbook_result.py asks for (``PlaybookDraft``,
``ScenarioDraft``), as briefings.py does, because providers/ imports nothing of the graphs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from providers.testing import reply

PLAYBOOK: dict[str, Any] = {
    "title": "Water crisis response",
    "objectives": ["Restore trust within a week"],
    "key_messages": ["Tankers reach every lane by Friday"],
    "talking_points": ["Twelve tankers added", "Helpline open 24x7"],
    "channels": ["WhatsApp groups", "Door-to-door"],
    "timeline": [{"when": "Day 1", "action": "Visit the affected colonies"}],
    "success_metrics": ["Complaints halved"],
    "risks": [{"risk": "Tanker delays", "mitigation": "Daily status posts"}],
    "confidence": 0.8,
}
SCENARIO: dict[str, Any] = {
    "key_impact": "Turnout rises among first-time voters if the metro extension is announced.",
    "strategic_recommendations": ["Announce with a date", "Door-to-door in the metro corridor"],
    "impact_breakdown": [{"metric": "turnout", "baseline": 0.52, "projected": 0.56}],
    "electoral_projections": [{"group": "Incumbent", "projected_share": 0.44}],
    "risk_factors": ["Announcement seen as a gimmick"],
    "mitigation_strategies": ["Publish the tender timeline"],
    "confidence": 0.6,
    "confidence_low": 0.4,
    "confidence_high": 0.7,
}
FACTS = "Residents of Malakpet protested water shortages on Monday; the board promised tankers.\nConfidence: 0.7"
FACTS_SOURCE = "https://www.thehindu.com/news/malakpet-water"


def text_of(messages: list[BaseMessage]) -> str:
    """Return a prompt's messages as one text."""
    return "\n".join(m.text for m in messages)


def document_of(prompt: str) -> dict[str, Any] | None:
    """Return the valid document a document prompt asks for (its JSON Schema names the fields), else None."""
    if "JSON Schema" not in prompt:
        return None
    if '"key_impact"' in prompt:
        return SCENARIO
    if '"talking_points"' in prompt:
        return PLAYBOOK
    return None


def document_writer(otherwise: AIMessage) -> Callable[[list[BaseMessage]], AIMessage]:
    """Return a provider step that answers playbook and scenario prompts with a valid document, and anything else
    (a briefing's writer or research prompt, a chat message) with ``otherwise``."""

    def answer(messages: list[BaseMessage]) -> AIMessage:
        document = document_of(text_of(messages))
        return reply(json.dumps(document)) if document is not None else otherwise

    return answer
