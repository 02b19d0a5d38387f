"""Alerts: ``POST /alerts/contextual`` and ``POST /alerts/priority-score`` (graphs/alerts.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import jsonify

from api.common import bp, now_iso, orchestrator, parse_body, protected
from api.models import ContextualAlertsBody, PriorityScoreBody
from graphs.alerts import contextual_alerts, priority_score


@bp.post("/alerts/contextual")
@protected
def alerts_contextual() -> Any:
    """Turn a ward's political events into ranked alerts."""
    body = parse_body(ContextualAlertsBody)
    events = [e if isinstance(e, str) else e.model_dump(exclude_none=True) for e in body.political_events]
    now = dt.datetime.now(dt.UTC)
    alerts = contextual_alerts(body.ward.strip(), events, orchestrator().registry.settings.sources, now)
    return jsonify({"alerts": alerts, "total": len(alerts), "ward": body.ward.strip(), "generated_at": now_iso()}), 200


@bp.post("/alerts/priority-score")
@protected
def alerts_priority_score() -> Any:
    """Score an alert's priority in [0, 1]."""
    body = parse_body(PriorityScoreBody)
    data = body.alert_data
    score = priority_score(data.priority.lower(), data.category.lower(), data.confidence_score)
    return jsonify({"priority_score": score, "ward": body.ward, "calculated_at": now_iso()}), 200
