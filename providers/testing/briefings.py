"""Test doubles for ward briefings, shared by tests and bench/briefing.py: a valid writer answer, research
answers with citations, and a registry whose fake providers answer a whole briefing.

The writer's answer is plain JSON in the shape the briefing graph asks for (graphs/briefing_result.py
``BriefingDraft``); it is written out here rather than built from that model because providers/ imports nothing
of the graphs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from providers.registry import ProviderRegistry
from providers.testing import fake_registry, reply

RESEARCH_SOURCES = [
    "https://www.thehindu.com/news/cities/Hyderabad/water-supply-jubilee-hills",
    "https://ghmc.gov.in/notices/road-works-2026",
    "https://x.com/someone/status/1",
]


def draft(ward: str = "Jubilee Hills", *, items: int = 3, confidence: float = 0.7, **overrides: Any) -> dict[str, Any]:
    """Return a valid briefing draft (the writer's structured answer) as a dict."""
    value: dict[str, Any] = {
        "strategic_overview": f"{ward} is competitive: water supply and road works dominate this month's debate.",
        "insights": ["Water supply is the top grievance", "Road works divide residents"],
        "key_intelligence": [
            {
                "category": ["public_sentiment", "development", "opposition", "narrative"][i % 4],
                "content": f"Item {i + 1}: residents report irregular water supply in {ward}.",
                "impact_level": "high",
                "actionable": True,
                "sources": [1, 2] if i == 0 else [i + 1],
            }
            for i in range(items)
        ],
        "opportunities": [{"description": "Tanker drive in the worst lanes", "timeline": "2 weeks", "priority": 1}],
        "risks": [
            {"description": "Opposition rally on water", "severity": "medium", "timeline": "1 week", "mitigation": "x"}
        ],
        "threats": [{"description": "A viral complaint video", "severity": "high", "timeline": "now"}],
        "recommended_actions": [
            {"category": "outreach", "description": "Door to door on water", "timeline": "this week", "priority": 1}
        ],
        "confidence": confidence,
    }
    return value | overrides


def draft_json(ward: str = "Jubilee Hills", **kwargs: Any) -> str:
    """Return a valid briefing draft as the writer's JSON text."""
    return json.dumps(draft(ward, **kwargs))


def research_reply(text: str = "Residents report irregular water supply and delayed road works.") -> AIMessage:
    """Return a research answer with three citations (official, news, social)."""
    return reply(text, citations=RESEARCH_SOURCES)


def verdicts_json(n: int, verdict: str = "supported") -> str:
    """Return a checker's structured answer with the same verdict on ``n`` items."""
    return json.dumps({"verdicts": [{"item": i, "verdict": verdict, "note": "ok"} for i in range(n)]})


def briefing_registry(
    *,
    writer: list[Any] | None = None,
    research: list[Any] | None = None,
    local: list[Any] | None = None,
    ward: str = "Jubilee Hills",
) -> ProviderRegistry:
    """Wire fake providers that answer a briefing: Perplexity researches, Gemini writes (and checks)."""
    scripts: dict[str, list[AIMessage | Exception | Callable[[list[BaseMessage]], AIMessage]]] = {}
    scripts["perplexity"] = research if research is not None else [research_reply()]
    scripts["gemini"] = writer if writer is not None else [reply(draft_json(ward))]
    if local is not None:
        scripts["local"] = local
    return fake_registry(scripts)
