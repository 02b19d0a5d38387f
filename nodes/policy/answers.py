"""What makes an answer usable, and how a provider's reply becomes the graph's answer candidate.

One rule for every place that judges a reply: call_model (is the winner of a hedged pair usable?), validate
(cascade an unusable answer) and cross_check (an unusable check measures nothing).
"""

from __future__ import annotations

import re

from graphs.state import AnalysisState, Candidate, ChainStep
from nodes.policy.prompt import split_stated_confidence
from providers.base import ModelReply
from providers.finish import finish_kind

_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)


def candidate_from(reply: ModelReply, step: ChainStep, vendor: str) -> Candidate:
    """Normalise a provider's reply into an answer candidate (stated confidence split off the text)."""
    text, stated = split_stated_confidence(reply.text)
    return {
        "text": text,
        "provider": step["provider"],
        "model": reply.model,
        "tier": step["tier"],
        "vendor": vendor,
        "finish_reason": reply.finish_reason,
        "citations": [{"url": c.url, "title": c.title, "date": c.date} for c in reply.citations],
        "mean_logprob": reply.mean_logprob,
        "stated_confidence": stated,
    }


def problem_with(candidate: Candidate, state: AnalysisState, cites: bool) -> str | None:
    """Return why an answer is unusable, or None when it is usable."""
    text = candidate["text"].strip()
    if len(_WORD.findall(text)) < 2:
        return "answer has no usable text"
    if finish_kind(candidate["finish_reason"]) == "withheld":
        return f"answer withheld by the provider (finish_reason={candidate['finish_reason']})"
    needs_citations = state.get("constraints", {}).get("require_citations", False)
    fresh = state.get("classification", {}).get("needs_fresh", False)
    if (needs_citations or (fresh and cites)) and not candidate["citations"]:
        # A search-backed provider that returns no sources for a fresh-facts question answered from memory.
        return "fresh facts were needed but the answer cites no sources"
    return None
