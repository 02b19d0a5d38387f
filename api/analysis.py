"""Content analysis and outcome feedback: ``POST /analyze`` and ``POST /feedback``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import jsonify, request

from api.budget import over_budget_of
from api.common import ApiError, bp, changes_beliefs, now_iso, orchestrator, parse_body, protected
from api.models import AnalyzeBody, FeedbackBody
from graphs.errors import FeedbackError, RequestError, UnknownThread
from graphs.overload import overload_of
from graphs.request import parse_request
from graphs.ward_reports import MAX_WARD_CHARS, normalise_context

CONTENT_PROMPT = (
    "Analyse this content for a campaign strategist: overall sentiment, key claims, who is affected, "
    "risks, opportunities and recommended responses."
)


@bp.post("/analyze")
@protected
def analyze() -> Any:
    """Analyse the text itself (never cut), optionally steered by a query, depth and context."""
    body = parse_body(AnalyzeBody)
    ward = (body.ward or "").strip()[:MAX_WARD_CHARS].strip() or "Unknown"
    fields = body.model_dump(include={"max_cost_usd", "deadline_s"}, exclude_none=True)
    fields |= body.model_dump(include={"require_citations", "cost_sensitive", "cross_check"})
    try:
        analysis = parse_request(
            {
                "query": body.text,
                "instructions": (body.query or "").strip() or CONTENT_PROMPT,
                "ward": ward,
                "depth": body.depth,
                "context": normalise_context(body.context),
                **fields,
            }
        )
    except RequestError as exc:
        raise ApiError(400, str(exc)) from None
    result = orchestrator().analyze(analysis, caller_key=request.headers.get("X-Session-Id"))
    overload = overload_of(result, orchestrator().registry)
    if overload is not None:
        raise overload  # 503 with Retry-After (app.py), never 200 without an answer
    refused = over_budget_of(result, dt.datetime.now(dt.UTC).timestamp())
    if refused is not None:
        raise refused  # 402 / 429: the spend caps, not an outage
    payload = result.model_dump(mode="json") | {
        "analysis_type": "content_analysis",
        "text_length": len(body.text),
        "analyzed_at": now_iso(),
        "ward": ward,
    }
    return jsonify(payload), 200


@bp.post("/feedback")
@changes_beliefs(admin=False)
def feedback() -> Any:
    """Record whether an analysis turned out right: {"thread_id": ..., "correct": true|false, "note": ...}."""
    body = parse_body(FeedbackBody)
    try:
        outcome = orchestrator().record_feedback(body.thread_id, body.correct, note=body.note)
    except UnknownThread as exc:
        raise ApiError(404, str(exc)) from None
    except FeedbackError as exc:
        raise ApiError(409, str(exc)) from None
    return jsonify(
        {
            "thread_id": outcome.thread_id,
            "correct": outcome.correct,
            "provider": outcome.provider,
            "task": outcome.task,
            "raw_confidence": outcome.raw,
            "confidence": outcome.calibrated,
            "recorded_at": dt.datetime.fromtimestamp(outcome.at, dt.UTC).isoformat(),
        }
    ), 200
