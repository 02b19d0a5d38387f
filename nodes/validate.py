"""validate: is the answer usable? If not, the next provider gets the query (a cascade) and the reason is kept."""

from __future__ import annotations

import re
from typing import Any, Literal

from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.state import AnalysisState, Candidate

# Finish reasons that mean the vendor cut or withheld the answer (Gemini's names; others map to these).
_WITHHELD = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "content_filter"}
_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)


def problem_with(candidate: Candidate, state: AnalysisState, cites: bool) -> str | None:
    """Return why an answer is unusable, or None when it is usable."""
    text = candidate["text"].strip()
    if len(_WORD.findall(text)) < 2:
        return "answer has no usable text"
    if candidate["finish_reason"] in _WITHHELD:
        return f"answer withheld by the provider (finish_reason={candidate['finish_reason']})"
    needs_citations = state.get("constraints", {}).get("require_citations", False)
    fresh = state.get("classification", {}).get("needs_fresh", False)
    if (needs_citations or (fresh and cites)) and not candidate["citations"]:
        # A search-backed provider that returns no sources for a fresh-facts question answered from memory.
        return "fresh facts were needed but the answer cites no sources"
    return None


def validate(state: AnalysisState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = context_of(runtime)
    candidate = state.get("candidate")
    assert candidate is not None, "validate runs only after a successful attempt"
    cites = ctx.registry.provider_settings(candidate["provider"]).cites
    problem = problem_with(candidate, state, cites)
    deadline_at = ctx.deadline_at or state["deadline_at"]
    passed = ctx.clock() >= deadline_at
    if problem is None:
        return {"answer": candidate, "deadline_passed": passed}
    runtime.stream_writer({"event": "rejected", "provider": candidate["provider"], "reason": problem})
    return {
        "rejections": [{"attempt_index": len(state["attempts"]) - 1, "reason": problem}],
        "candidate": None,
        "deadline_passed": passed,
    }


def wants_cross_check(state: AnalysisState) -> bool:
    return state.get("depth") == "deep" or bool(state.get("constraints", {}).get("cross_check"))


def route_after_validate(state: AnalysisState) -> Literal["cross_check", "call_model", "score"]:
    """Cross-check a usable answer when asked; cascade an unusable one to the next provider."""
    if state.get("candidate") is not None:
        return "cross_check" if wants_cross_check(state) and not state.get("deadline_passed") else "score"
    if state.get("deadline_passed") or state.get("cursor", 0) >= len(state.get("chain", [])):
        return "score"
    return "call_model"
