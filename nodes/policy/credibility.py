"""How far each source of a briefing can be trusted, and how far each key intelligence item can.

A source's credibility combines three things, each stated here so the number can be explained:

- reputation: the domain's category in the ``[sources]`` table of the configuration (official, news,
  reference, unknown, blog, social); the ward's own data (the backend's posts and news) counts as its URL's
  domain when it has one, as ``unknown`` otherwise;
- recency: full within a week, halving about every two months (nodes/policy/confidence.py's rule); undated
  sources count as middling;
- corroboration: a source that several gather branches (independent questions) brought back is worth more.

    credibility = reputation x (0.7 + 0.3 x recency) + 0.05 x (branches - 1), clipped to [0, 1]

Weak sources are kept (the writer may still use them) but weigh less: an item resting only on social media
gets a low confidence. An item's confidence is the noisy-OR of its sources' credibilities, each discounted to
0.8 (no single source is proof), times the cross-check's verdict on it.
"""

from __future__ import annotations

import datetime as dt
import math
from urllib.parse import urlsplit, urlunsplit

from graphs.briefing_state import Finding, ScoredSource, Verdict
from nodes.policy.confidence import recency_of
from providers.config import SourceTable

UNDATED_RECENCY = 0.5
SINGLE_SOURCE_WEIGHT = 0.8
NO_SOURCE_CONFIDENCE = 0.2
VERDICT_FACTOR: dict[Verdict, float] = {"supported": 1.0, "unsupported": 0.6, "contradicted": 0.3}


def canonical_url(url: str) -> str:
    """Normalise a URL so the same page cited by two branches is one source (no fragment, no trailing slash)."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower().removeprefix("www.")
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), host, path, parts.query, ""))


def score_sources(findings: list[Finding], table: SourceTable, today: dt.date) -> list[ScoredSource]:
    """Merge the sources of every finding (one per URL) and score each; most credible first, numbered from 1."""
    merged: dict[str, ScoredSource] = {}
    for finding in findings:
        for source in finding["sources"]:
            key = canonical_url(source["url"])
            if not key:
                continue
            entry = merged.get(key)
            if entry is None:
                merged[key] = entry = {
                    "id": 0,
                    "url": source["url"],
                    "title": source["title"] or source["url"],
                    "date": source["date"],
                    "snippet": source["snippet"],
                    "origin": source["origin"],
                    "credibility": 0.0,
                    "reputation": 0.0,
                    "recency": None,
                    "branches": 0,
                    "question_ids": [],
                }
            if finding["question_id"] not in entry["question_ids"]:
                entry["question_ids"].append(finding["question_id"])
            entry["date"] = entry["date"] or source["date"]
            entry["snippet"] = entry["snippet"] or source["snippet"]
    scored: list[ScoredSource] = []
    for entry in merged.values():
        reputation = table.score(urlsplit(entry["url"]).hostname or "")
        recency = recency_of(entry["date"], today) if entry["date"] else None
        branches = len(entry["question_ids"])
        value = reputation * (0.7 + 0.3 * (UNDATED_RECENCY if recency is None else recency)) + 0.05 * (branches - 1)
        entry |= {
            "reputation": round(reputation, 4),
            "recency": None if recency is None else round(recency, 4),
            "branches": branches,
            "credibility": round(min(1.0, max(0.0, value)), 4),
        }
        scored.append(entry)
    scored.sort(key=lambda s: (-s["credibility"], s["url"]))
    for i, entry in enumerate(scored, start=1):
        entry["id"] = i
    return scored


def item_confidence(credibilities: list[float], verdict: Verdict | None) -> float:
    """Return a key intelligence item's confidence from the credibility of the sources it rests on."""
    if not credibilities:
        value = NO_SOURCE_CONFIDENCE
    else:
        value = 1 - math.prod(1 - SINGLE_SOURCE_WEIGHT * c for c in credibilities)
    if verdict is not None:
        value *= VERDICT_FACTOR[verdict]
    return round(min(1.0, max(0.0, value)), 4)
