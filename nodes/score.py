"""score: confidence in [0, 1] from the factors that could be measured, and the final AnalysisResult.

Each factor is in [0, 1] and carries its weight. A factor that cannot be measured for this answer is left out
and the remaining weights are renormalised: no factor ever gets a made-up default value. When nothing at all
could be measured the confidence is 0.5, stated as uninformative.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any
from urllib.parse import urlsplit

from langgraph.config import get_config
from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.state import AnalysisResult, AnalysisState, Attempt, Candidate, CitationDict, Factor
from nodes.costing import estimate_input_tokens, premium_provider
from providers.config import SourceTable

# Base weights before renormalisation. Cross-validation and certainty carry most: they are measured on this
# very answer; source quality applies to fresh-facts answers; the track record is a prior about the provider.
WEIGHTS = {
    "model_certainty": 0.30,
    "source_quality": 0.25,
    "cross_validation": 0.30,
    "historical_accuracy": 0.15,
}
_TRUNCATED = {"length", "MAX_TOKENS", "max_tokens"}
UNINFORMATIVE = 0.5


def model_certainty(answer: Candidate) -> tuple[float, str] | None:
    if answer["mean_logprob"] is not None:
        # exp(mean log-probability) is the geometric mean probability of the tokens the model chose.
        value, detail = math.exp(answer["mean_logprob"]), "geometric mean token probability"
    elif answer["stated_confidence"] is not None:
        value, detail = answer["stated_confidence"], "the model's stated confidence"
    else:
        return None
    if answer["finish_reason"] in _TRUNCATED:
        value, detail = value * 0.7, detail + "; answer truncated (x0.7)"
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


def combine(measured: dict[str, tuple[float, str]]) -> tuple[float, list[Factor]]:
    """Return the weighted mean of the measured factors, with weights renormalised over them."""
    total = sum(WEIGHTS[name] for name in measured)
    if total == 0:
        return UNINFORMATIVE, []
    factors = [
        Factor(name=name, value=round(value, 4), weight=round(WEIGHTS[name] / total, 4), detail=detail)
        for name, (value, detail) in measured.items()
    ]
    value = sum(WEIGHTS[name] / total * v for name, (v, _) in measured.items())
    return round(min(1.0, max(0.0, value)), 4), factors


def _baseline(ctx: Context, state: AnalysisState, answering: Attempt | None) -> float:
    """Cost of the same answer from the premium model: the all-premium path the strategist used to take."""
    registry = ctx.registry
    premium = premium_provider(registry)
    if premium is None:
        return 0.0
    if answering is None:
        return state.get("baseline_estimate_usd", 0.0)
    if answering["tier"] == "premium":
        return answering["cost_usd"]
    complexity = state["classification"]["complexity"]
    tokens_in = answering["input_tokens"] or estimate_input_tokens(state["query"])
    tokens_out = answering["output_tokens"] or registry.settings.routing.expected_output_tokens.get(complexity, 500)
    if registry.provider_settings(premium).thinks:
        tokens_out += registry.settings.routing.expected_thinking_tokens.get(complexity, 0)
    return registry.price_of(premium).cost_usd(tokens_in, tokens_out)


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
    attempts = [dict(a) for a in state.get("attempts", [])]
    for rejection in state.get("rejections", []):
        attempts[rejection["attempt_index"]] |= {
            "outcome": "invalid",
            "error_class": "invalid_answer",
            "error": rejection["reason"],
        }
    answer_attempts = [a for a in state.get("attempts", []) if a["role"] == "answer" and a["outcome"] == "ok"]
    answering = answer_attempts[-1] if answer is not None and answer_attempts else None

    measured: dict[str, tuple[float, str]] = {}
    if answer is not None:
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
        check = state.get("cross_check")
        if check is not None:
            measured["cross_validation"] = (check["agreement"], f"{check['method']} ({check['provider']})")
    value, factors = combine(measured)
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
            "confidence": {
                "value": value if answer else 0.0,
                "factors": factors,
                "method": "weighted mean of measured factors, weights renormalised"
                if factors
                else ("uninformative: no factor could be measured" if answer else "no answer"),
            },
            "citations": answer["citations"] if answer else [],
            "cost_usd": round(sum(a["cost_usd"] for a in attempts), 8),
            "baseline_cost_usd": round(_baseline(ctx, state, answering), 8),
            "fallback_mode": answer is None or (bool(chain) and answer["provider"] != chain[0]["provider"]),
            "error": None if answer else _error(state),
            "cross_check": state.get("cross_check"),
            "timings": {
                "total_ms": round((ctx.clock() - state.get("started_at", ctx.clock())) * 1000, 1),
                "model_ms": round(sum(a["latency_ms"] for a in attempts), 1),
            },
        }
    )
    return {"result": result.model_dump(mode="json")}
