"""score (briefing): the briefing's confidence from the confidence machinery, per-item confidence from its real
sources, the costs, and the contract's body.

``confidence_score`` is the confidence machinery of the analysis graph (nodes/policy/confidence.py) applied to
the written briefing as one answer: the writer's stated certainty, the quality of the sources it rests on,
the cross-check's agreement (deep) and the writer's track record, calibrated from outcomes. A degraded
briefing's confidence is capped low. Each key intelligence item's ``source_count`` counts the real sources it
names, and its ``confidence`` comes from their credibility and the checker's verdict
(nodes/policy/credibility.py).

Under spend caps score settles what the briefing held (plan's hold for the writer, every top-up) with its actual
cost; research questions the caps left unasked are listed in ``analysis.not_researched``; a briefing the caps
left with nothing to say has an error that starts with the refusal, so the HTTP layer answers 402 or 429.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from langgraph.config import get_config
from langgraph.runtime import Runtime

from graphs.briefing_result import Briefing, BriefingResult
from graphs.briefing_state import BriefingState, ScoreBriefingUpdate, Verdict
from graphs.context import Context, context_of
from graphs.state import AnalysisState, Attempt, Candidate, CrossCheck
from nodes.policy.budget import OVER_CALLER, OVER_DAILY, reservations_of, settle_budget
from nodes.policy.costing import grounding_fee, premium_provider
from nodes.policy.credibility import item_confidence
from providers.registry import ProviderRegistry

# A degraded briefing (no valid structured briefing from the premium writer, or no sourced research) is served
# with at most this confidence: the strategist must see that it is provisional.
FALLBACK_CAP = 0.3
BRIEFING_NEEDS = {
    "fresh_p": 1.0,
    "complexity_p": {"complex": 1.0},
    "task_p": {"briefing": 1.0},
    "complexity": "complex",
    "task": "briefing",
    "needs_fresh": True,
}


def baseline_usd(registry: ProviderRegistry, attempts: list[Attempt]) -> float:
    """Price the all-premium path for the same calls: every answered call at the premium price,
    and search grounding for each research question (premium needs it to answer fresh facts at all)."""
    premium = premium_provider(registry)
    if premium is None:
        return 0.0
    price = registry.price_of(premium)
    thinking = registry.settings.routing.expected_thinking_tokens.get("complex", 0)
    thinks = registry.provider_settings(premium).thinks
    total = 0.0
    for a in attempts:
        if a["outcome"] not in ("ok", "invalid"):
            continue
        if a["tier"] == "premium":
            total += a["cost_usd"]
        else:
            total += price.cost_usd(a["input_tokens"], a["output_tokens"] + (thinking if thinks else 0))
        if a["role"] == "gather" and a["outcome"] == "ok":
            total += grounding_fee(registry, premium, True)
    return total


def _over_budget(error: str | None) -> bool:
    return error is not None and error.startswith((OVER_DAILY, OVER_CALLER))


def _why_nothing(state: BriefingState) -> str:
    reasons = [f"{f['question_id']}: {f['error']}" for f in state.get("findings", []) if f["error"]]
    attempts = state.get("attempts", [])
    reasons += [f"{a['provider']} ({a['role']}): {a['error'] or a['error_class']}" for a in attempts]
    reasons += state.get("notes", [])
    refused = state.get("budget_refused") or next(
        (
            a["error"]
            for a in attempts
            if a["role"] == "write" and a["outcome"] == "skipped" and _over_budget(a["error"])
        ),
        None,
    )
    if refused:
        # Money, not an outage, left nothing to say: the error starts with the cap (api/budget.py: 402 or 429).
        return refused + (f" (before it: {'; '.join(reasons)})" if reasons else "")
    return "nothing could be said about the ward (" + ("; ".join(reasons) or "no provider is available") + ")"


def _not_researched(state: BriefingState) -> list[str]:
    """Say which questions the spend caps left unasked, and why (the research of the others was written up)."""
    asked = {q["id"]: q["text"] for q in state.get("questions", [])}
    return [
        f"{asked.get(f['question_id'], f['question_id'])}: {f['error']}"
        for f in state.get("findings", [])
        if f["text"] is None and _over_budget(f["error"])
    ]


def score(state: BriefingState, runtime: Runtime[Context]) -> ScoreBriefingUpdate:
    """Score the sanitised briefing and build the result (also when nothing could be said: then it says why)."""
    ctx = context_of(runtime)
    registry = ctx.registry
    attempts = state.get("attempts", [])
    thread_id = str(get_config().get("configurable", {}).get("thread_id", ""))
    depth, context = state.get("depth", "standard"), state.get("context", "neutral")
    now = ctx.clock()
    common: dict[str, Any] = {
        "thread_id": thread_id,
        "ward": state["ward"],
        "depth": depth,
        "context": context,
        "attempts": attempts,
        "cost_usd": round(sum(a["cost_usd"] for a in attempts), 8),
        "baseline_cost_usd": round(baseline_usd(registry, attempts), 8),
        "total_ms": round((now - state.get("started_at", now)) * 1000, 1),
    }
    # Every path settles: what the briefing held is released and its actual cost counted, once.
    settle_budget(ctx.budget, reservations_of(state), common["cost_usd"])
    draft = state.get("sanitised")
    if state.get("draft") is None or draft is None:
        result = BriefingResult.model_validate(
            common | {"briefing": None, "error": _why_nothing(state), "confidence": {"value": 0.0, "factors": []}}
        )
        return {"result": result.model_dump(mode="json")}
    sources = state.get("sources", [])
    by_id = {s["id"]: s for s in sources}
    check = state.get("check")
    verdicts: dict[int, Verdict] = {v["item"]: v["verdict"] for v in check["verdicts"]} if check else {}
    items = []
    for i, item in enumerate(draft["key_intelligence"]):
        ids = sorted({n for n in item.get("sources", []) if n in by_id})
        items.append(
            {
                "category": item["category"],
                "content": item["content"],
                "impact_level": item["impact_level"],
                "actionable": item["actionable"],
                "source_count": len(ids),
                "confidence": item_confidence(
                    [by_id[n]["credibility"] for n in ids], verdicts.get(i) if check else None
                ),
            }
        )
    writer = state.get("writer")
    answered_by_realtime = any(
        f["provider"] is not None and registry.tier_of(f["provider"]) == "realtime" for f in state.get("findings", [])
    )
    fallback = (
        bool(state.get("fallback"))
        or writer is None
        or writer["tier"] != "premium"
        or (bool(state.get("questions")) and not answered_by_realtime)
    )
    candidate: Candidate = {
        "text": draft["strategic_overview"],
        "provider": writer["provider"] if writer else "fallback",
        "model": writer["model"] if writer else "",
        "tier": cast(Any, writer["tier"] if writer else "local"),
        "vendor": writer["vendor"] if writer else "",
        "finish_reason": writer["finish_reason"] if writer else "",
        "citations": [{"url": s["url"], "title": s["title"], "date": s["date"]} for s in sources],
        "mean_logprob": writer["mean_logprob"] if writer else None,
        "stated_confidence": writer["stated_confidence"] if writer else None,
    }
    view = cast(AnalysisState, {"classification": BRIEFING_NEEDS, "constraints": {}})
    cross: CrossCheck | None = None
    if check is not None:
        cross = {
            "provider": check["provider"],
            "model": check["model"],
            "agreement": check["agreement"],
            "method": "share of key intelligence items the checker found supported",
            "text": "",
        }
    assessed = ctx.judge().assess(candidate, view, cross)
    value, method = assessed.value, assessed.method
    if fallback and value > FALLBACK_CAP:
        value, method = FALLBACK_CAP, f"{method}; capped at {FALLBACK_CAP} (degraded briefing)"
    providers = list(dict.fromkeys(a["provider"] for a in attempts if a["outcome"] == "ok"))
    briefing = Briefing.model_validate(
        {
            "ward": state["ward"],
            "generated_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(),
            "internal_use_only": True,
            "strategic_overview": draft["strategic_overview"],
            "insights": draft.get("insights", []),
            "key_intelligence": items,
            "opportunities": draft.get("opportunities", []),
            "risks": draft.get("risks", []),
            "threats": draft.get("threats", []),
            "recommended_actions": draft.get("recommended_actions", []),
            "actions": [
                {"type": a["category"], "label": a["description"][:120], "priority": a["priority"]}
                for a in draft.get("recommended_actions", [])
            ],
            "confidence_score": value,
            "fallback_mode": fallback,
            "source_citations": [
                {"url": s["url"], "title": s["title"], "date": s["date"] or None, "credibility": s["credibility"]}
                for s in sources
            ],
            "compliance": state.get("compliance"),
            "analysis": {
                "thread_id": thread_id,
                "depth": depth,
                "context": context,
                "providers": providers,
                "cost_usd": common["cost_usd"],
                "baseline_cost_usd": common["baseline_cost_usd"],
                "questions": [q["text"] for q in state.get("questions", [])],
                "cross_checked_by": check["provider"] if check else None,
                "not_researched": _not_researched(state),
            },
        }
    )
    confidence = {
        "value": value,
        "raw": assessed.raw,
        "factors": assessed.factors,
        "method": method,
        "calibration": assessed.calibration,
    }
    result = BriefingResult.model_validate(common | {"briefing": briefing, "confidence": confidence})
    return {"result": result.model_dump(mode="json")}
