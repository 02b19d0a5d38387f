"""The degraded briefing: what can still be said when no provider wrote a valid structured briefing.

Built from what the research found (each answered question becomes a key intelligence item resting on that
answer's sources) and, when a provider answered in plain text, its overview. The strategist gets a briefing
marked ``fallback_mode`` with a low confidence, and actions that say what to verify. When there is neither a
finding nor an overview, nothing at all can be said and the caller answers 500.
"""

from __future__ import annotations

import re
from typing import Any

from graphs.briefing_result import BriefingDraft
from graphs.briefing_state import Finding, Question, ScoredSource
from nodes.policy.credibility import canonical_url

_ITEM_CHARS = 400
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _lead(text: str) -> str:
    """Return the first sentences of a text, up to about ``_ITEM_CHARS`` characters."""
    out = ""
    for sentence in _SENTENCE_END.split(text.strip()):
        if out and len(out) + len(sentence) > _ITEM_CHARS:
            break
        out = f"{out} {sentence}".strip()
    return out[:_ITEM_CHARS]


def fallback_draft(
    ward: str,
    questions: list[Question],
    findings: list[Finding],
    sources: list[ScoredSource],
    overview: str | None,
) -> dict[str, Any] | None:
    """Assemble a BriefingDraft from the findings and a plain overview; None when there is nothing to say."""
    answered = [f for f in findings if f["text"]]
    if not answered and not (overview and overview.strip()):
        return None
    ids = {canonical_url(s["url"]): s["id"] for s in sources}
    items = [
        {
            "category": f["category"],
            "content": _lead(f["text"] or ""),
            "impact_level": "medium",
            "actionable": False,
            "sources": sorted({ids[k] for k in (canonical_url(s["url"]) for s in f["sources"]) if k in ids}),
        }
        for f in answered
    ]
    unanswered = [q for q in questions if not any(f["question_id"] == q["id"] and f["text"] for f in findings)]
    actions = [
        {
            "category": "intelligence",
            "description": "Verify the items of this provisional briefing before acting on them, and refresh it "
            "once the analysis providers are available again.",
            "timeline": "within 24 hours",
            "priority": 1,
        }
    ] + [
        {"category": "research", "description": f"Find out: {q['text']}", "timeline": "this week", "priority": 2}
        for q in unanswered
    ]
    text = (overview or "").strip()
    if len(text) < 20:
        text = (
            f"Only part of the analysis of {ward} could be completed; this provisional briefing lists what the "
            "research found, unverified."
        )
    draft = {
        "strategic_overview": text[:6000],
        "insights": [f"Provisional: {len(answered)} of {len(questions)} research questions were answered."],
        "key_intelligence": items
        or [
            {
                "category": "narrative",
                "content": _lead(text),
                "impact_level": "low",
                "actionable": False,
                "sources": [],
            }
        ],
        "opportunities": [],
        "risks": [],
        "threats": [],
        "recommended_actions": actions,
    }
    # Validated like any draft, so a degraded briefing has the contract's shape too.
    return BriefingDraft.model_validate(draft).model_dump(mode="json", exclude_none=True)
