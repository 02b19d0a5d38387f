"""The OpenAPI 3.1 document of the API, generated from the pydantic request and response models, at
``GET /openapi.json``.

OpenAPI 3.1's schema dialect is JSON Schema 2020-12, which is what pydantic emits: the document is the route
table below plus pydantic's schemas. Assembled here rather than by a framework (flask-openapi3, spectree):
those take over routing and answer validation errors in their own format, where the contract fixes ours.
Every operation documents its success answer and, as ``default``, the JSON error body every error has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

from flask import jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import api.models as m
from api.common import API_PREFIX, bp
from graphs.briefing_result import Briefing

JsonSchemaMode = Literal["validation", "serialization"]
REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    response: type[BaseModel] | None
    body: type[BaseModel] | None = None
    status: int = 200
    parameters: list[dict[str, Any]] = field(default_factory=list)
    protected: bool = True
    extra_responses: dict[str, Any] = field(default_factory=dict)


_WARD_RESERVED = [
    "analyze",
    "trigger",
    "feedback",
    "health",
    "ready",
    "alive",
    "status",
    "cache",
    "circuit-breaker",
    "alerts",
    "openapi.json",
    "ward",
]
_BRIEFING_QUERY = [
    {
        "name": "depth",
        "in": "query",
        "required": False,
        "description": "quick | standard | deep; anything else: standard",
        "schema": {"type": "string"},
    },
    {
        "name": "context",
        "in": "query",
        "required": False,
        "description": "defensive | neutral | offensive; anything else: neutral",
        "schema": {"type": "string"},
    },
    {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "description": "entity tags (RFC 9110): a match answers 304",
        "schema": {"type": "string"},
    },
]
_BRIEFING_HEADERS = {
    "ETag": {"required": True, "schema": {"type": "string"}},
    "Cache-Control": {"required": True, "schema": {"type": "string"}},
    "X-Ward": {"required": True, "schema": {"type": "string"}},
    "X-Analysis-Depth": {"required": True, "schema": {"type": "string", "enum": ["quick", "standard", "deep"]}},
}


def _ward_param(reserved: list[str]) -> dict[str, Any]:
    return {
        "name": "ward",
        "in": "path",
        "required": True,
        "description": "the ward's name (stripped, cut to 64 characters)",
        "schema": {"type": "string", "not": {"enum": reserved}},
    }


_NOT_MODIFIED = {"304": {"description": "If-None-Match matched: no body", "headers": _BRIEFING_HEADERS}}

OPERATIONS = [
    Operation(
        "get",
        "/{ward}",
        "The ward's briefing",
        Briefing,
        parameters=[_ward_param(_WARD_RESERVED), *_BRIEFING_QUERY],
        extra_responses=_NOT_MODIFIED,
    ),
    Operation(
        "get",
        "/ward/{ward}",
        "The ward's briefing (alias)",
        Briefing,
        parameters=[_ward_param([]), *_BRIEFING_QUERY],
        extra_responses=_NOT_MODIFIED,
    ),
    Operation("post", "/analyze", "Analyse a text", m.AnalyzeResponse, m.AnalyzeBody),
    Operation("post", "/trigger", "Refresh a ward's briefing", m.TriggerResponse, m.TriggerBody),
    Operation("post", "/feedback", "Record an analysis's outcome", m.FeedbackResponse, m.FeedbackBody),
    Operation("get", "/health", "Provider health", m.HealthResponse, protected=False),
    Operation("get", "/ready", "Readiness", m.ReadyResponse, protected=False),
    Operation("get", "/alive", "Liveness", m.AliveResponse, protected=False),
    Operation("get", "/status", "Service status", m.StatusResponse),
    Operation("get", "/cache/stats", "Briefing cache statistics", m.CacheStatsResponse),
    Operation("post", "/cache/invalidate", "Drop cached briefings", m.InvalidateResponse, m.InvalidateBody),
    Operation("post", "/circuit-breaker/reset", "Close circuits", m.ResetResponse, m.ResetBody),
    Operation(
        "post", "/alerts/contextual", "Alerts from political events", m.ContextualAlertsResponse, m.ContextualAlertsBody
    ),
    Operation("post", "/alerts/priority-score", "An alert's priority", m.PriorityScoreResponse, m.PriorityScoreBody),
]


def _schemas() -> tuple[dict[tuple[type[BaseModel], JsonSchemaMode], Any], dict[str, Any]]:
    inputs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(op.body, "validation") for op in OPERATIONS if op.body]
    outputs: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (op.response, "serialization") for op in OPERATIONS if op.response
    ]
    refs, defs = models_json_schema([*inputs, *outputs, (m.ErrorBody, "serialization")], ref_template=REF)
    return cast(dict[tuple[type[BaseModel], JsonSchemaMode], Any], refs), defs.get("$defs", {})


def _json(schema: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def openapi_document() -> dict[str, Any]:
    """Build the OpenAPI 3.1 document of the blueprint's routes."""
    refs, components = _schemas()
    error = refs[(m.ErrorBody, "serialization")]
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        responses: dict[str, Any] = {
            str(op.status): {
                "description": op.summary,
                "content": _json(refs[(op.response, "serialization")]) if op.response else {},
            },
            **op.extra_responses,
            "default": {"description": "an error, as JSON", "content": _json(error)},
        }
        if op.path.endswith("{ward}"):
            responses[str(op.status)]["headers"] = _BRIEFING_HEADERS
        entry: dict[str, Any] = {
            "summary": op.summary,
            "operationId": op.method + op.path.replace("/", "_"),
            "responses": responses,
        }
        if op.parameters:
            entry["parameters"] = op.parameters
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": _json(refs[(op.body, "validation")])}
        if op.protected:
            # Optional: the bearer token is needed only when STRATEGIST_API_TOKEN is configured.
            entry["security"] = [{"bearer": []}, {}]
        paths.setdefault(op.path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Political Strategist API",
            "version": "1.0.0",
            "description": "The strategist blueprint (shared/contracts/strategist-api.md), served by the orchestrator.",
        },
        "servers": [{"url": API_PREFIX}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Any:
    """Serve the OpenAPI document."""
    return jsonify(openapi_document()), 200
