"""Scenarios: ``POST /scenario/simulate`` and ``GET /scenarios/history`` (graphs/playbook_service.py)."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from api.common import ApiError, bp, parse_body, protected
from api.playbook import playbooks, ward_or_none
from api.playbook_models import MIN_QUERY_CHARS, SimulateBody
from graphs.playbook_result import SCENARIO_TYPES, TIMEFRAMES
from graphs.playbook_service import DocumentFailed


@bp.post("/scenario/simulate")
@protected
def simulate() -> Any:
    """Simulate a scenario for a ward and store it."""
    body = parse_body(SimulateBody)
    query, ward = (body.scenario_query or "").strip(), ward_or_none(body.ward)
    if not query or ward is None:
        raise ApiError(400, "scenario_query and ward are required")
    if len(query) < MIN_QUERY_CHARS:
        raise ApiError(400, "scenario_query must be at least 10 characters")
    if body.scenario_type not in SCENARIO_TYPES:
        raise ApiError(400, f"Invalid scenario_type. Must be one of: {list(SCENARIO_TYPES)}")
    if body.timeframe not in TIMEFRAMES:
        raise ApiError(400, f"Invalid timeframe. Must be one of: {list(TIMEFRAMES)}")
    try:
        doc = playbooks().simulate(query, body.scenario_type, ward, body.timeframe, body.metrics, body.parameters)
    except DocumentFailed as exc:
        raise ApiError(500, "Scenario simulation failed", detail=str(exc)) from None
    return jsonify(doc), 200


@bp.get("/scenarios/history")
@protected
def scenario_history() -> Any:
    """List stored scenarios, newest first (``ward``, ``limit`` default 10, at most 100)."""
    ward = (request.args.get("ward") or "").strip() or None
    try:
        limit = min(100, max(1, int(request.args.get("limit", "10"))))
    except ValueError:
        raise ApiError(400, "limit must be an integer") from None
    found = playbooks().history(ward, limit)
    return jsonify({"scenarios": found, "total": len(found), "ward_filter": ward, "limit": limit}), 200
