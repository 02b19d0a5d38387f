"""The ward briefing, the main product: ``GET /<ward>``, ``GET /ward/<ward>`` and ``POST /trigger``.

A briefing comes from the cache while it lives (graphs/ward_reports.py), with a strong ETag; a request whose
``If-None-Match`` matches it (a list, ``*``, ``W/`` tags: RFC 9110's weak comparison, parsed by werkzeug) gets
304 with no body and the same ETag and Cache-Control.

Under spend caps a briefing run for a request is reserved against the day's cap and the caller's (its
``X-Session-Id``, as for analyses); one the caps left with nothing to say is a 402 (the day's cap) or 429 (the
caller's) naming the cap, never a 500, and nothing is cached. A briefing from the cache costs nothing.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from flask import Response, jsonify, request

from api.budget import refused
from api.common import ApiError, bp, now_iso, parse_body, protected, reports
from api.models import TriggerBody
from graphs.errors import RequestError
from graphs.ward_reports import (
    BriefingFailed,
    BriefingOverBudget,
    Report,
    normalise_context,
    normalise_depth,
    normalise_ward,
)

# Paths of the blueprint's other routes: a GET on one of them is a wrong method, not a ward of that name.
RESERVED = frozenset(
    {"analyze", "trigger", "feedback", "health", "ready", "alive", "status", "cache", "circuit-breaker", "alerts"}
    | {"conversation", "conversations", "chat", "playbook", "scenario", "scenarios"}
)


def _failed(exc: BriefingFailed) -> ApiError:
    if isinstance(exc, BriefingOverBudget):
        return refused(str(exc), time.time(), ward=exc.ward, timestamp=now_iso())
    return ApiError(500, "Analysis failed", ward=exc.ward, timestamp=now_iso(), retry_after=60, detail=str(exc))


def _headers(report: Report, ward: str, depth: str) -> dict[str, str]:
    return {
        "ETag": report.etag,
        "Cache-Control": f"public, max-age={report.ttl_s}",
        # Header values are Latin-1: a ward in Telugu or Urdu script is sent percent-encoded (UTF-8).
        "X-Ward": quote(ward, safe=" -_.,'()&"),
        "X-Analysis-Depth": depth,
    }


def _briefing(ward: str) -> Any:
    if ward.strip() in RESERVED:
        raise ApiError(405, "Method not allowed for this endpoint", headers={"Allow": "POST"})
    try:
        name = normalise_ward(ward)
    except RequestError as exc:
        raise ApiError(400, str(exc)) from None
    depth = normalise_depth(request.args.get("depth"))
    context = normalise_context(request.args.get("context"))
    try:
        report = reports().report(name, depth, context, caller_key=request.headers.get("X-Session-Id"))
    except BriefingFailed as exc:
        raise _failed(exc) from None
    headers = _headers(report, name, depth)
    if request.if_none_match.contains_weak(report.etag.strip('"')):
        return Response(status=304, headers=headers)
    return Response(report.body, status=200, mimetype="application/json", headers=headers)


@bp.get("/<ward>")
@protected
def ward_briefing(ward: str) -> Any:
    """Answer the ward's briefing (``depth``, ``context`` query parameters)."""
    return _briefing(ward)


@bp.get("/ward/<ward>")
@protected
def ward_briefing_alias(ward: str) -> Any:
    """Answer the ward's briefing (the same as ``GET /<ward>``)."""
    return _briefing(ward)


@bp.post("/trigger")
@protected
def trigger() -> Any:
    """Drop the ward's cached briefings and run a fresh one."""
    body = parse_body(TriggerBody)
    try:
        ward = normalise_ward(body.ward)
    except RequestError:
        raise ApiError(400, "Ward is required") from None
    depth, context = normalise_depth(body.depth), normalise_context(body.context)
    try:
        report, invalidated = reports().refresh(ward, depth, context, caller_key=request.headers.get("X-Session-Id"))
    except BriefingFailed as exc:
        raise _failed(exc) from None
    return jsonify(
        {
            "status": "analysis_triggered",
            "ward": ward,
            "depth": depth,
            "cache_invalidated": invalidated,
            "result": report.data(),
            "timestamp": now_iso(),
        }
    ), 200
