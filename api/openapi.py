"""The OpenAPI 3.1 document of the API, generated from the pydantic request and response models, at
``GET /openapi.json``.

OpenAPI 3.1's schema dialect is JSON Schema 2020-12, which is what pydantic emits: the document is the route
table below plus pydantic's schemas. Assembled here rather than by a framework (flask-openapi3, spectree):
those take over routing and answer validation errors in their own format, where the contract fixes ours.
Every operation documents its success answer, the errors it answers on purpose (400, 404, a failed document's
500) and, as ``default``, the JSON error body every error has.

Left out: the Server-Sent Events routes (``GET /conversation/stream``, ``GET /feed``, ``GET /jobs/<id>/events``)
and the jobs routes (``POST /jobs``, ``GET /jobs/<id>``). OpenAPI has no way to describe an event stream's
events, so a client generator gains nothing and schemathesis cannot check one (it would wait on a stream that
stays open); the jobs routes need a Celery broker, which the fuzz's app does not have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

from flask import jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import api.conversation_models as cm
import api.models as m
import api.playbook_models as pm
from api.common import API_PREFIX, bp
from graphs.briefing_result import Briefing

JsonSchemaMode = Literal["validation", "serialization"]
REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class ErrorAnswer:
    """An error status an operation answers on purpose, with its body (every error is also under ``default``)."""

    status: int
    description: str
    body: type[BaseModel] = m.ErrorBody


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
    errors: tuple[ErrorAnswer, ...] = ()


# The first path segments of the other GET routes: a ward of that name would be their request, not a briefing's.
RESERVED_WARDS = [
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
    "feed",
    "jobs",
    "conversation",
    "conversations",
    "chat",
    "playbook",
    "scenario",
    "scenarios",
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


def _list_query(default: int, most: int) -> list[dict[str, Any]]:
    return [
        {
            "name": "ward",
            "in": "query",
            "required": False,
            "description": "only this ward's",
            "schema": {"type": "string"},
        },
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "description": f"how many, newest first (default {default}, kept within 1 to {most})",
            "schema": {"type": "integer"},
        },
    ]


def _session_param() -> dict[str, Any]:
    # The pattern also keeps /conversation/stream (the SSE route's path) out of the session operations.
    schema = {"type": "string", "pattern": cm.SESSION_ID}
    return {
        "name": "session_id",
        "in": "path",
        "required": True,
        "description": "conv_<12hex>_<epoch>",
        "schema": schema,
    }


_INVALID = ErrorAnswer(400, "a required field is missing or a value is invalid")
_NO_SESSION = ErrorAnswer(404, "Conversation not found (never created, deleted or expired)")
_PLAYBOOK_FAILED = ErrorAnswer(
    500, "Playbook generation failed: no provider wrote a valid playbook", pm.PlaybookFailedBody
)
_SCENARIO_FAILED = ErrorAnswer(
    500, "Scenario simulation failed: no provider wrote a valid scenario", pm.ScenarioFailedBody
)

_NOT_MODIFIED = {"304": {"description": "If-None-Match matched: no body", "headers": _BRIEFING_HEADERS}}

OPERATIONS = [
    Operation(
        "get",
        "/{ward}",
        "The ward's briefing",
        Briefing,
        parameters=[_ward_param(RESERVED_WARDS), *_BRIEFING_QUERY],
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
    # Conversations (api/conversation.py): sessions and messages; the reply stream is SSE, left out.
    Operation(
        "post",
        "/conversation",
        "Open a conversation",
        cm.ConversationCreated,
        cm.NewConversationBody,
        errors=(_INVALID,),
    ),
    Operation(
        "get",
        "/conversation/{session_id}",
        "A conversation and its messages",
        cm.Conversation,
        parameters=[_session_param()],
        errors=(_NO_SESSION,),
    ),
    Operation(
        "delete",
        "/conversation/{session_id}",
        "Delete a conversation",
        cm.ConversationDeleted,
        parameters=[_session_param()],
        errors=(_NO_SESSION,),
    ),
    Operation(
        "post",
        "/conversation/message",
        "Add a user message (answered by GET /conversation/stream)",
        cm.MessageAdded,
        cm.MessageBody,
        errors=(_INVALID, _NO_SESSION),
    ),
    Operation(
        "get",
        "/conversations",
        "Live conversations, newest activity first",
        cm.ConversationList,
        parameters=_list_query(50, 200),
        errors=(_INVALID,),
    ),
    Operation("post", "/chat", "Answer one message (the older chat)", cm.ChatReply, cm.ChatBody, errors=(_INVALID,)),
    # Playbooks and scenarios (api/playbook.py, api/scenario.py).
    Operation(
        "post",
        "/playbook/generate",
        "Write a playbook",
        pm.Playbook,
        pm.GenerateBody,
        errors=(_INVALID, _PLAYBOOK_FAILED),
    ),
    Operation(
        "post",
        "/playbook/opposition-response",
        "Write a counter-playbook to an opposition message",
        pm.OppositionPlaybook,
        pm.OppositionBody,
        errors=(_INVALID, _PLAYBOOK_FAILED),
    ),
    Operation(
        "post",
        "/playbook/customize",
        "Rewrite a playbook to preferences",
        pm.CustomizedPlaybook,
        pm.CustomizeBody,
        errors=(_INVALID, _PLAYBOOK_FAILED),
    ),
    Operation(
        "post",
        "/scenario/simulate",
        "Simulate a scenario",
        pm.Scenario,
        pm.SimulateBody,
        errors=(_INVALID, _SCENARIO_FAILED),
    ),
    Operation(
        "get",
        "/scenarios/history",
        "Stored scenarios, newest first",
        pm.ScenarioHistory,
        parameters=_list_query(10, 100),
        errors=(_INVALID,),
    ),
]


def _schemas() -> tuple[dict[tuple[type[BaseModel], JsonSchemaMode], Any], dict[str, Any]]:
    inputs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(op.body, "validation") for op in OPERATIONS if op.body]
    outputs: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (op.response, "serialization") for op in OPERATIONS if op.response
    ]
    errors: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (e.body, "serialization") for op in OPERATIONS for e in op.errors if e.body is not m.ErrorBody
    ]
    refs, defs = models_json_schema(
        [*inputs, *outputs, *dict.fromkeys(errors), (m.ErrorBody, "serialization")], ref_template=REF
    )
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
            **{
                str(e.status): {"description": e.description, "content": _json(refs[(e.body, "serialization")])}
                for e in op.errors
            },
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
