"""Contextual alerts and their priority score: political events in, ranked alerts out. No model call.

An alert's priority score in [0, 1] is a weighted mean of three parts, each in [0, 1], so it can never leave
the range (the old score added bonuses on top and passed 1):

    score = 0.5 x priority weight + 0.2 x category weight + 0.3 x confidence

The weights of priorities and categories say how urgently each kind needs a strategist's attention: a crisis
or an electoral development before an opportunity; the event's confidence (its source's credibility when
it has a URL) discounts rumours.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from providers.config import SourceTable

PRIORITY_WEIGHT = {"critical": 1.0, "high": 0.8, "medium": 0.5, "low": 0.25, "informational": 0.1}
CATEGORY_WEIGHT = {
    "crisis": 1.0,
    "electoral": 0.9,
    "opposition": 0.8,
    "media": 0.7,
    "policy": 0.6,
    "coalition": 0.6,
    "opportunity": 0.5,
}
# Hours an alert stays relevant, by priority.
LIFETIME_H = {"critical": 6, "high": 24, "medium": 72, "low": 168, "informational": 168}
_KEYWORDS: dict[str, tuple[str, ...]] = {
    "crisis": ("riot", "violence", "clash", "arrest", "scandal", "flood", "protest", "accident", "fire"),
    "electoral": ("election", "poll", "voter", "booth", "nomination", "candidate", "campaign", "survey"),
    "opposition": ("opposition", "rival", "attack", "allegation", "accus", "criticis"),
    "media": ("tv", "news", "viral", "video", "newspaper", "media", "twitter", "post"),
    "policy": ("scheme", "policy", "budget", "bill", "welfare", "ordinance", "announcement"),
    "coalition": ("alliance", "coalition", "seat-sharing", "seat sharing", "merger", "joins"),
}
_URGENT = ("breaking", "urgent", "violence", "riot", "arrest", "clash", "today", "tonight", "immediately")
_IMPLICATIONS = {
    "crisis": "Public safety and the campaign's credibility are at stake; a slow or careless response will be used "
    "against us.",
    "electoral": "It can move turnout or vote share in the ward; booth-level plans may need to change.",
    "opposition": "The opponent is setting the narrative; an unanswered claim hardens into belief.",
    "media": "Coverage shapes what undecided voters hear this week.",
    "policy": "A policy change affects voters' everyday concerns and invites comparison with our promises.",
    "coalition": "Shifts in alliances change the arithmetic of the ward.",
    "opportunity": "An opening the campaign can use before others do.",
}
_ACTIONS = {
    "crisis": ["Issue a calm, factual statement within the hour", "Brief local leaders on the line to take"],
    "electoral": ["Review booth-level plans for the ward", "Alert the ward's volunteer coordinators"],
    "opposition": ["Prepare a fact-based rebuttal", "Identify credible local voices to respond"],
    "media": ["Monitor coverage and correct errors quickly", "Offer a spokesperson to local media"],
    "policy": ["Explain what the change means for residents", "Compare it with our commitments"],
    "coalition": ["Assess the seat arithmetic with the new alignment", "Reach out to affected local leaders"],
    "opportunity": ["Plan outreach around the opening", "Assign an owner and a deadline"],
}


def priority_score(priority: str, category: str, confidence: float) -> float:
    """Return an alert's priority score in [0, 1]."""
    p = PRIORITY_WEIGHT.get(priority, PRIORITY_WEIGHT["medium"])
    c = CATEGORY_WEIGHT.get(category, 0.5)
    value = 0.5 * p + 0.2 * c + 0.3 * min(1.0, max(0.0, confidence))
    return round(min(1.0, max(0.0, value)), 4)


def _text(event: Mapping[str, Any], *keys: str) -> str:
    for key in keys:
        value = event.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def categorise(text: str, given: str = "") -> str:
    """Return the alert category of an event: its own when valid, else by keywords (``policy`` by default)."""
    if given in CATEGORY_WEIGHT:
        return given
    lowered = text.lower()
    hits = {cat: sum(lowered.count(k) for k in words) for cat, words in _KEYWORDS.items()}
    best = max(hits, key=lambda cat: hits[cat])
    return best if hits[best] else "policy"


def prioritise(text: str, category: str, given: str = "") -> str:
    """Return an event's priority: its own when valid, else from its category and urgent words."""
    if given in PRIORITY_WEIGHT:
        return given
    urgent = any(word in text.lower() for word in _URGENT)
    if category == "crisis":
        return "critical" if urgent else "high"
    if category in ("electoral", "opposition"):
        return "high" if urgent else "medium"
    return "medium" if urgent else "low"


def contextual_alerts(
    ward: str, events: Sequence[Mapping[str, Any] | str], sources: SourceTable, now: dt.datetime
) -> list[dict[str, Any]]:
    """Turn political events into alerts for a ward, most urgent first."""
    alerts: list[dict[str, Any]] = []
    for event in events:
        item: Mapping[str, Any] = {"content": event} if isinstance(event, str) else event
        content = _text(item, "content", "description", "text", "summary")
        title = _text(item, "title", "headline") or content[:80] or "Political event"
        body = f"{title}. {content}".strip()
        category = categorise(body, _text(item, "category", "type").lower())
        priority = prioritise(body, category, _text(item, "priority", "severity").lower())
        url = _text(item, "url", "source_url", "link")
        source = _text(item, "source") or url
        given = item.get("confidence_score", item.get("confidence"))
        if isinstance(given, int | float) and not isinstance(given, bool) and 0 <= given <= 1:
            confidence = float(given)
        else:
            confidence = sources.score(urlsplit(url).hostname or "") if url else sources.score("")
        created = now.isoformat()
        digest = hashlib.sha256(f"{ward}|{title}|{content}".encode()).hexdigest()[:12]
        alerts.append(
            {
                "alert_id": f"alert_{digest}",
                "title": title[:200],
                "content": content[:2000] or title[:200],
                "priority": priority,
                "category": category,
                "ward": ward,
                "confidence_score": round(confidence, 4),
                "strategic_implications": _IMPLICATIONS[category],
                "recommended_actions": _ACTIONS[category],
                "evidence_sources": [source] if source else [],
                "urgency_score": priority_score(priority, category, confidence),
                "created_at": created,
                "expires_at": (now + dt.timedelta(hours=LIFETIME_H[priority])).isoformat(),
            }
        )
    alerts.sort(key=lambda a: -a["urgency_score"])
    return alerts
