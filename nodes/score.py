"""score: confidence in [0, 1] from the factors that could be measured, calibrated, and the final AnalysisResult.

Each factor is in [0, 1] and carries its weight. A factor that cannot be measured for this answer is left out
and the remaining weights are renormalised: no factor ever gets a made-up default value. The weighted mean is
the *raw* confidence. The calibration model learned from outcome feedback (nodes/calibration.py) turns the
factors into the probability that the answer is right, which is the confidence's value; with no feedback it is
the identity on the raw value, and once it is fitted each factor's detail shows its learned log-odds weight.
When nothing at all could be measured the raw value is missing and the confidence is 0.5 before feedback,
stated as uninformative.

``assess`` is shared with validate (the cascade's preliminary confidence) and cross_check (which of two
disagreeing answers is better supported), so all three judge an answer the same way.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from langgraph.config import get_config
from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.state import AnalysisResult, AnalysisState, Attempt, Candidate, CitationDict, CrossCheck, Factor
from nodes.calibration import Learned, learned_from
from nodes.costing import estimate_input_tokens, grounding_fee, premium_provider
from providers.config import SourceTable

# Finish reasons: the vendor cut the answer short (Gemini, OpenAI/llama.cpp, Perplexity's Responses status) ...
_TRUNCATED = frozenset({"length", "MAX_TOKENS", "max_tokens", "incomplete", "max_output_tokens"})
# ... withheld part of it (validate rejects these; an answer that still carries one is mostly not the model's)
_WITHHELD = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "content_filter"}
)
# ... or ended normally. Anything else (Gemini's OTHER, MALFORMED_FUNCTION_CALL, ...) is an unexplained stop.
_NORMAL = frozenset({"", "stop", "STOP", "end_turn", "completed", "eos", "FINISH_REASON_UNSPECIFIED"})
# How much each kind of stop lowers certainty. A cut answer may have lost its conclusion; a partly withheld
# one lost content the model meant to give.
FINISH_PENALTY = {"truncated": 0.7, "withheld": 0.4, "unexplained": 0.85}


def finish_kind(finish_reason: str) -> str | None:
    """Classify a finish reason as truncated, withheld or unexplained; None for a normal stop."""
    if finish_reason in _NORMAL:
        return None
    if finish_reason in _TRUNCATED:
        return "truncated"
    if finish_reason in _WITHHELD:
        return "withheld"
    return "unexplained"


def model_certainty(answer: Candidate) -> tuple[float, str] | None:
    """Measure the model's own certainty: token probabilities, else its stated confidence; lowered by a bad stop."""
    if answer["mean_logprob"] is not None:
        # exp(mean log-probability) is the geometric mean probability of the tokens the model chose.
        value, detail = math.exp(answer["mean_logprob"]), "geometric mean token probability"
    elif answer["stated_confidence"] is not None:
        value, detail = answer["stated_confidence"], "the model's stated confidence"
    else:
        return None
    kind = finish_kind(answer["finish_reason"])
    if kind is not None:
        value *= FINISH_PENALTY[kind]
        detail += f"; answer {kind} (finish_reason={answer['finish_reason']}, x{FINISH_PENALTY[kind]})"
    return min(1.0, max(0.0, value)), detail


def _recency(date: str, today: dt.date) -> float | None:
    try:
        when = dt.date.fromisoformat(date[:10])
    except ValueError:
        return None
    age = (today - when).days
    # Campaign facts go stale in weeks: full credit within a week, half at about two months.
    return 1.0 if age <= 7 else max(0.1, 0.5 ** ((age - 7) / 60))


def source_quality(citations: list[CitationDict], table: SourceTable, today: dt.date) -> tuple[float, str]:
    if not citations:
        return 0.0, "fresh facts needed, no sources cited"
    reputations = [table.score(urlsplit(c["url"]).hostname or "") for c in citations]
    reputation = sum(sorted(reputations, reverse=True)[:5]) / min(5, len(reputations))
    # Three independent sources are where corroboration stops adding much.
    count = min(1.0, len({urlsplit(c["url"]).hostname for c in citations}) / 3)
    recencies = [r for r in (_recency(c["date"], today) for c in citations if c["date"]) if r is not None]
    recency = sum(recencies) / len(recencies) if recencies else None
    parts = [reputation, 0.5 + 0.5 * count] + ([recency] if recency is not None else [])
    value = math.prod(parts) ** (1 / len(parts))
    detail = f"{len(citations)} sources, reputation {reputation:.2f}" + (
        f", recency {recency:.2f}" if recency is not None else ", undated"
    )
    return value, detail


def combine(
    measured: Mapping[str, tuple[float, str]], weights: Mapping[str, float]
) -> tuple[float | None, list[Factor]]:
    """Return the weighted mean of the measured factors (None if none), with weights renormalised over them."""
    total = sum(weights.get(name, 0.0) for name in measured)
    if total == 0:
        return None, []
    factors = [
        Factor(name=name, value=round(value, 4), weight=round(weights.get(name, 0.0) / total, 4), detail=detail)
        for name, (value, detail) in measured.items()
    ]
    value = sum(weights.get(name, 0.0) / total * v for name, (v, _) in measured.items())
    return round(min(1.0, max(0.0, value)), 4), factors


def measure(
    answer: Candidate, state: AnalysisState, ctx: Context, learned: Learned, check: CrossCheck | None = None
) -> dict[str, tuple[float, str]]:
    """Measure every factor that can be measured on this answer."""
    measured: dict[str, tuple[float, str]] = {}
    certainty = model_certainty(answer)
    if certainty is not None:
        measured["model_certainty"] = certainty
    needs_sources = state["classification"]["needs_fresh"] or state.get("constraints", {}).get(
        "require_citations", False
    )
    if needs_sources:
        measured["source_quality"] = source_quality(
            answer["citations"], ctx.registry.settings.sources, dt.date.fromtimestamp(ctx.clock())
        )
    if check is not None:
        measured["cross_validation"] = (check["agreement"], f"{check['method']} ({check['provider']})")
    history = learned.history(answer["provider"], state["classification"]["task"])
    if history is not None:
        measured["historical_accuracy"] = history
    return measured


@dataclass(frozen=True)
class Assessment:
    raw: float | None  # None when no factor could be measured
    value: float  # calibrated
    factors: list[Factor]
    method: str
    calibration: str


def assess(answer: Candidate, state: AnalysisState, ctx: Context, check: CrossCheck | None = None) -> Assessment:
    """Score an answer: measure its factors, combine them with the configured weights, calibrate."""
    cfg = ctx.registry.settings.confidence
    learned = learned_from(ctx.feedback, cfg)
    measured = measure(answer, state, ctx, learned, check)
    raw, factors = combine(measured, cfg.weights)
    calibrator = learned.calibrator
    value = round(calibrator(raw, {name: v for name, (v, _) in measured.items()}, answer["provider"]), 4)
    for f in factors:
        coefficient = calibrator.coefficient(f.name, answer["provider"])
        if coefficient is not None:
            f.detail += f"; learned log-odds weight {coefficient:+.2f}"
    if raw is None:
        method = "uninformative: no factor could be measured"
    else:
        method = "weighted mean of measured factors, weights renormalised"
    return Assessment(raw, value, factors, method, calibrator.describe())


def _baseline(ctx: Context, state: AnalysisState, answering: Attempt | None) -> float:
    """Cost of the same answer from the premium model: the all-premium path the strategist used to take."""
    registry = ctx.registry
    premium = premium_provider(registry)
    if premium is None:
        return 0.0
    if answering is None:
        return state.get("baseline_estimate_usd", 0.0)
    # The premium model needs search grounding to serve a fresh-facts question at all (see nodes/costing.py).
    grounding = grounding_fee(registry, premium, state["classification"]["needs_fresh"])
    if answering["tier"] == "premium":
        return answering["cost_usd"] + grounding
    complexity = state["classification"]["complexity"]
    tokens_in = answering["input_tokens"] or estimate_input_tokens(state["query"])
    tokens_out = answering["output_tokens"] or registry.settings.routing.expected_output_tokens.get(complexity, 500)
    if registry.provider_settings(premium).thinks:
        tokens_out += registry.settings.routing.expected_thinking_tokens.get(complexity, 0)
    return registry.price_of(premium).cost_usd(tokens_in, tokens_out) + grounding


def _error(state: AnalysisState) -> str:
    if state.get("stop_reason"):
        return f"the request was refused: {state['stop_reason']}"
    failures = [f"{a['provider']}: {a['error_class']}" for a in state.get("attempts", []) if a["outcome"] == "error"]
    failures += [r["reason"] for r in state.get("rejections", [])]
    if not state.get("chain"):
        return "no provider can serve this request (" + "; ".join(state.get("reasons", [])) + ")"
    if state.get("deadline_passed"):
        return "deadline passed before any provider answered (" + "; ".join(failures) + ")"
    return "every provider in the chain failed (" + "; ".join(failures) + ")"


def score(state: AnalysisState, runtime: Runtime[Context]) -> dict[str, Any]:
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
        assessed = assess(answer, state, ctx, state.get("cross_check"))
        confidence = {
            "value": assessed.value,
            "raw": assessed.raw,
            "factors": assessed.factors,
            "method": assessed.method,
            "calibration": assessed.calibration,
        }
    else:
        confidence = {"value": 0.0, "factors": [], "method": "no answer"}
    chain = state.get("chain", [])
    config = get_config()
    result = AnalysisResult.model_validate(
        {
            "thread_id": str(config.get("configurable", {}).get("thread_id", "")),
            "query": state["query"],
            "depth": state.get("depth", "standard"),
            "answer": answer["text"] if answer else None,
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
            "citations": answer["citations"] if answer else [],
            "cost_usd": round(sum(a["cost_usd"] for a in attempts), 8),
            "baseline_cost_usd": round(_baseline(ctx, state, answering), 8),
            "fallback_mode": answer is None or (bool(chain) and (first or answer)["provider"] != chain[0]["provider"]),
            "error": None if answer else _error(state),
            "cross_check": state.get("cross_check"),
            "escalation": state.get("escalation"),
            "timings": {
                "total_ms": round((ctx.clock() - state.get("started_at", ctx.clock())) * 1000, 1),
                "model_ms": round(sum(a["latency_ms"] for a in attempts), 1),
            },
        }
    )
    return {"result": result.model_dump(mode="json")}
