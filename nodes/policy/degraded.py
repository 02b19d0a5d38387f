"""Degraded answers: served by a tier that cannot serve the query's need, and said so.

Route does not plan such a tier as a fallback while an adequate provider is usable (nodes/route.py); this is
the other half, for when none was: the answer is still served (something beats nothing for a campaign team
at 11 pm), but ``fallback_mode`` is set with the reason, and the answer text itself starts with a notice, so a
reader of the text alone (a forwarded WhatsApp message) cannot mistake it for a sourced or reasoned answer.
"""

from __future__ import annotations

from graphs.state import AnalysisState, Candidate

# A complex analysis is "likely" from this probability on; below it the local model's answer is not flagged.
COMPLEX_FROM = 0.5


def degraded_reason(state: AnalysisState, answer: Candidate | None) -> str | None:
    """Return why the served answer cannot serve the query's need, or None when it can."""
    if answer is None:
        return None
    c = state.get("classification")
    if c is None:
        return None
    research_step = state.get("research_step")
    if research_step is not None and state.get("research", None) is None and "research" in state:
        return f"the research step ({research_step['provider']}) failed: this analysis has no fresh facts behind it"
    sourced = bool(answer["citations"]) or state.get("research") is not None
    if c.get("needs_fresh") and not sourced:
        return f"fresh facts were needed but {answer['provider']} ({answer['tier']}) answered without sources"
    total = sum(c["complexity_p"].values()) or 1.0
    if answer["tier"] == "local" and c["complexity_p"].get("complex", 0.0) / total >= COMPLEX_FROM:
        return "a complex analysis was answered by the local model, which cannot do one well"
    return None


def with_notice(text: str, reason: str) -> str:
    """Start a degraded answer with a one-line notice of why it is degraded."""
    return f"[Degraded answer: {reason}; no adequate provider was available.]\n\n{text}"
