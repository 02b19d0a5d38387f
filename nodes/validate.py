"""validate: is the answer usable? If not, the next provider gets the query (a cascade) and the reason is kept.

A usable answer also gets its preliminary confidence here - the same factors and calibration as score, before
any cross-check - and the confidence-gated cascade decides on it: an answer below the policy threshold gets a
second provider's independent answer when the request's deadline and budget allow it. The decision and its
reason are stored in state, so ``route_after_validate`` stays a pure function of state.
"""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.state import AnalysisState, Candidate, ChainStep, Escalation, ValidateUpdate
from nodes.policy.answers import problem_with
from nodes.policy.checkers import checker_chain
from nodes.policy.events import Validated
from nodes.policy.progress import emit


def wants_cross_check(state: AnalysisState) -> bool:
    """Say whether the request asked for a cross-check (depth=deep, or constraints.cross_check)."""
    return state.get("depth") == "deep" or bool(state.get("constraints", {}).get("cross_check"))


def escalation_decision(
    answer: Candidate, state: AnalysisState, ctx: Context, now: float
) -> tuple[Escalation, list[ChainStep] | None]:
    """Decide whether a usable first answer gets a second provider's answer; return the record and the chain.

    Asked-for cross-checks (depth=deep, constraints.cross_check) always happen; depth=quick never escalates by
    itself. Otherwise the answer escalates when its calibrated preliminary confidence is below
    ``confidence.escalate_below`` and a checker of another vendor fits in the remaining budget and time.
    """
    cfg = ctx.registry.settings.confidence
    prelim = ctx.judge().assess(answer, state)
    record: Escalation = {
        "decision": "accept",
        "reason": "",
        "raw": prelim.raw,
        "calibrated": prelim.value,
        "threshold": cfg.escalate_below,
    }
    if wants_cross_check(state):
        return record | {"decision": "requested", "reason": "cross-check requested (depth=deep or cross_check)"}, None
    if state.get("depth") == "quick":
        # Quick means one paid answer: a second opinion only when the caller asks for it.
        return record | {"decision": "off", "reason": "depth=quick: no cascade (ask for cross_check to check)"}, None
    if cfg.escalate_below <= 0:
        return record | {"decision": "off", "reason": "confidence-gated cascade is off (escalate_below=0)"}, None
    below = f"confidence {prelim.value:.2f} < threshold {cfg.escalate_below:.2f}"
    if prelim.value >= cfg.escalate_below:
        return record | {"reason": f"confidence {prelim.value:.2f} >= threshold {cfg.escalate_below:.2f}"}, None
    left = (ctx.deadline_at or state["deadline_at"]) - now
    chain, notes = checker_chain(answer, state, ctx.registry, left, now - state.get("started_at", now))
    if not chain:
        why = "; ".join(notes) or "no provider of another vendor is available"
        return record | {"decision": "not_possible", "reason": f"{below}, but {why}"}, None
    if left < cfg.min_time_left_s:
        reason = f"{below}, but only {left:.1f} s left before the deadline (min {cfg.min_time_left_s:.1f} s)"
        return record | {"decision": "not_possible", "reason": reason}, None
    step = chain[0]
    reason = f"{below}: asking {step['provider']} ({step['tier']}) for an independent answer"
    return record | {"decision": "escalate", "reason": reason}, chain


def validate(state: AnalysisState, runtime: Runtime[Context]) -> ValidateUpdate:
    """Accept a usable answer (and decide on the cascade) or reject it so the next provider gets the query."""
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
        update: ValidateUpdate = {"answer": candidate, "deadline_passed": passed, "escalation": escalation}
        if chain is not None:
            update["cross_chain"] = chain
        return update
    emit(runtime, Validated(provider=candidate["provider"], verdict="rejected", reason=problem))
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
