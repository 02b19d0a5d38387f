"""validate: is the answer usable? If not, the next provider gets the query (a cascade) and the reason is kept.

A usable answer also gets its preliminary confidence here - the same factors and calibration as score, before
any cross-check - and the confidence-gated cascade decides on it: an answer below the policy threshold gets a
second provider's independent answer when the request's deadline and budget allow it. The decision and its
reason are stored in state, so ``route_after_validate`` stays a pure function of state.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.state import AnalysisState, Candidate, ChainStep, Escalation
from nodes.cross_check import checker_chain
from nodes.score import assess

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


def wants_cross_check(state: AnalysisState) -> bool:
    return state.get("depth") == "deep" or bool(state.get("constraints", {}).get("cross_check"))


def escalation_decision(
    answer: Candidate, state: AnalysisState, ctx: Context, now: float
) -> tuple[Escalation, list[ChainStep] | None]:
    """Decide whether a usable first answer gets a second provider's answer; return the record and the chain.

    Asked-for cross-checks (depth=deep, constraints.cross_check) always happen. Otherwise the answer escalates
    when its calibrated preliminary confidence is below ``confidence.escalate_below`` and a checker of another
    vendor fits in the remaining budget and time.
    """
    cfg = ctx.registry.settings.confidence
    prelim = assess(answer, state, ctx)
    record: Escalation = {
        "decision": "accept",
        "reason": "",
        "raw": prelim.raw,
        "calibrated": prelim.value,
        "threshold": cfg.escalate_below,
    }
    if wants_cross_check(state):
        return record | {"decision": "requested", "reason": "cross-check requested (depth=deep or cross_check)"}, None
    if cfg.escalate_below <= 0:
        return record | {"decision": "off", "reason": "confidence-gated cascade is off (escalate_below=0)"}, None
    below = f"confidence {prelim.value:.2f} < threshold {cfg.escalate_below:.2f}"
    if prelim.value >= cfg.escalate_below:
        return record | {"reason": f"confidence {prelim.value:.2f} >= threshold {cfg.escalate_below:.2f}"}, None
    chain, notes = checker_chain(answer, state, ctx)
    left = (ctx.deadline_at or state["deadline_at"]) - now
    if not chain:
        why = "; ".join(notes) or "no provider of another vendor is available"
        return record | {"decision": "not_possible", "reason": f"{below}, but {why}"}, None
    if left < cfg.min_time_left_s:
        reason = f"{below}, but only {left:.1f} s left before the deadline (min {cfg.min_time_left_s:.1f} s)"
        return record | {"decision": "not_possible", "reason": reason}, None
    step = chain[0]
    reason = f"{below}: asking {step['provider']} ({step['tier']}) for an independent answer"
    return record | {"decision": "escalate", "reason": reason}, chain


def validate(state: AnalysisState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = context_of(runtime)
    candidate = state.get("candidate")
    assert candidate is not None, "validate runs only after a successful attempt"
    cites = ctx.registry.provider_settings(candidate["provider"]).cites
    problem = problem_with(candidate, state, cites)
    deadline_at = ctx.deadline_at or state["deadline_at"]
    now = ctx.clock()
    passed = now >= deadline_at
    if problem is None:
        escalation, chain = escalation_decision(candidate, state, ctx, now)
        update: dict[str, Any] = {"answer": candidate, "deadline_passed": passed, "escalation": escalation}
        if chain is not None:
            update["cross_chain"] = chain
        return update
    runtime.stream_writer({"event": "rejected", "provider": candidate["provider"], "reason": problem})
    return {
        "rejections": [{"attempt_index": len(state["attempts"]) - 1, "reason": problem}],
        "candidate": None,
        "deadline_passed": passed,
    }


def route_after_validate(state: AnalysisState) -> Literal["cross_check", "call_model", "score"]:
    """Cross-check a usable answer when asked or escalated; cascade an unusable one to the next provider."""
    if state.get("candidate") is not None:
        escalation = state.get("escalation")
        go = wants_cross_check(state) or (escalation is not None and escalation["decision"] == "escalate")
        return "cross_check" if go and not state.get("deadline_passed") else "score"
    if state.get("deadline_passed") or state.get("cursor", 0) >= len(state.get("chain", [])):
        return "score"
    return "call_model"
