"""score: the answer's confidence (nodes/policy/confidence.py) and the final AnalysisResult."""

from __future__ import annotations

from typing import Any

from langgraph.config import get_config
from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.result import AnalysisResult, Review
from graphs.state import AnalysisState, Attempt, ScoreUpdate
from nodes.policy.budget import OVER_CALLER, OVER_DAILY, reservations_of, settle_budget
from nodes.policy.costing import answered_baseline
from nodes.policy.degraded import degraded_reason, with_notice


def _error(state: AnalysisState) -> str:
    if state.get("stop_reason"):
        return f"the request was refused: {state['stop_reason']}"
    failures = [f"{a['provider']}: {a['error_class']}" for a in state.get("attempts", []) if a["outcome"] == "error"]
    failures += [r["reason"] for r in state.get("rejections", [])]
    refused = [a["error"] for a in state.get("attempts", []) if a["outcome"] == "skipped" and a["error"]]
    over = next((e for e in refused if e.startswith((OVER_DAILY, OVER_CALLER))), None)
    if over is not None and state.get("chain"):
        # Money, not an outage, left the analysis without an answer: the error starts with the cap, so the HTTP
        # layer answers 402 or 429 (api/budget.py); what failed before the refusal follows.
        return over + (f" (before it: {'; '.join(failures)})" if failures else "")
    if not state.get("chain"):
        return "no provider can serve this request (" + "; ".join(state.get("reasons", [])) + ")"
    if state.get("deadline_passed"):
        return "deadline passed before any provider answered (" + "; ".join(failures) + ")"
    return "every provider in the chain failed (" + "; ".join(failures) + ")"


def score(state: AnalysisState, runtime: Runtime[Context]) -> ScoreUpdate:
    """Score the served answer and build the result (also when no provider answered: then it says why)."""
    ctx = context_of(runtime)
    answer = state.get("answer")
    attempts: list[Attempt] = [a.copy() for a in state.get("attempts", [])]
    for rejection in state.get("rejections", []):
        attempts[rejection["attempt_index"]] |= {
            "outcome": "invalid",
            "error_class": "invalid_answer",
            "error": rejection["reason"],
        }
    ok = [a for a in attempts if a["outcome"] == "ok"]
    # The validated first answer is the last answer attempt that succeeded and was not rejected; the served
    # answer can be a checker's instead, when the two disagreed and the checker's was better supported.
    first = next((a for a in reversed(ok) if a["role"] == "answer"), None)
    answering = next((a for a in reversed(ok) if answer and a["provider"] == answer["provider"]), None)
    confidence: dict[str, Any]
    if answer is not None:
        assessed = ctx.judge().assess(answer, state, state.get("cross_check"))
        confidence = {
            "value": assessed.value,
            "raw": assessed.raw,
            "factors": assessed.factors,
            "method": assessed.method,
            "calibration": assessed.calibration,
            "calibrated": assessed.calibrated,
            "degenerate": list(assessed.degenerate),
        }
        review: Review | None = assessed.review
    else:
        confidence = {"value": 0.0, "factors": [], "method": "no answer"}
        review = None
    chain = state.get("chain", [])
    degraded = degraded_reason(state, answer)
    research = state.get("research")
    citations = (answer["citations"] or (research["citations"] if research else [])) if answer else []
    config = get_config()
    result = AnalysisResult.model_validate(
        {
            "thread_id": str(config.get("configurable", {}).get("thread_id", "")),
            "query": state["query"],
            "depth": state.get("depth", "standard"),
            "answer": (with_notice(answer["text"], degraded) if degraded else answer["text"]) if answer else None,
            "provider": answer["provider"] if answer else None,
            "model": answer["model"] if answer else None,
            "tier": answer["tier"] if answer else None,
            "attempts": attempts,
            "routing": {
                "classification": state["classification"],
                "chain": chain,
                "reasons": state.get("reasons", []),
                "mode": state.get("routing_mode", "intelligent"),
                "estimated_cost_usd": state.get("estimated_cost_usd", 0.0),
                "shadow": state.get("shadow"),
            },
            "confidence": confidence,
            "citations": citations,
            "cost_usd": round(sum(a["cost_usd"] for a in attempts), 8),
            "baseline_cost_usd": round(answered_baseline(ctx.registry, state, answering), 8),
            "fallback_mode": answer is None
            or degraded is not None
            or (bool(chain) and (first or answer)["provider"] != chain[0]["provider"]),
            "fallback_reason": degraded,
            "error": None if answer else _error(state),
            "cross_check": state.get("cross_check"),
            "escalation": state.get("escalation"),
            "needs_review": review.needs_review if review is not None else True,
            "review": review,
            "timings": {
                "total_ms": round((ctx.clock() - state.get("started_at", ctx.clock())) * 1000, 1),
                "model_ms": round(sum(a["latency_ms"] for a in attempts), 1),
            },
        }
    )
    settle_budget(ctx.budget, reservations_of(state), result.cost_usd)
    return {"result": result.model_dump(mode="json")}
