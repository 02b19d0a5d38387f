"""The strategist HTTP app: the Flask factory and the /api/v1/strategist blueprint.

The app owns the checkpointer's lifecycle for the life of the process (``create_app`` opens the configured
stores); only the CLI's ``serve`` command imports this module.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import hmac
import os
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from graphs.errors import CheckpointStoreError, FeedbackError, RequestError, UnknownThread
from graphs.ops import UnknownProvider, health_report, reset_circuits
from graphs.request import parse_request
from graphs.service import Orchestrator
from graphs.stores import open_stores
from providers.config import Settings, load_settings
from providers.registry import ProviderRegistry

API_PREFIX = "/api/v1/strategist"
CONTENT_PROMPT = (
    "Analyse this content for a campaign strategist: overall sentiment, key claims, who is affected, "
    "risks, opportunities and recommended responses."
)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


bp = Blueprint("strategist", __name__, url_prefix=API_PREFIX)


def _orchestrator() -> Orchestrator:
    orchestrator: Orchestrator = current_app.extensions["strategist"]
    return orchestrator


def _error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": message, **extra}), status


@bp.before_request
def _gate() -> tuple[Response, int] | None:
    if os.environ.get("STRATEGIST_ENABLED", "true").strip().lower() in ("false", "0", "no", "off"):
        return jsonify(
            {"error": "Political Strategist system is currently disabled", "status": "service_unavailable"}
        ), 503
    return None


def protected(view: Callable[..., Any]) -> Callable[..., Any]:
    """Require `Authorization: Bearer <STRATEGIST_API_TOKEN>` when a token is configured (401 otherwise)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = os.environ.get("STRATEGIST_API_TOKEN", "")
        if token:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                return _error(401, "Authentication required")
        return view(*args, **kwargs)

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return wrapper


@bp.post("/analyze")
@protected
def analyze() -> Any:
    """Analyse a piece of content (the contract's body), optionally steered by a query, depth and context."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error(400, "Request body must be a JSON object")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return _error(400, "Text content is required")
    text = text.strip()
    if len(text) < 10:
        return _error(400, "Text too short for meaningful analysis")
    if len(text) > 10_000:
        return _error(400, "Text too long - maximum 10,000 characters")
    query = body.get("query")
    if query is not None and not isinstance(query, str):
        return _error(400, "query must be a string")
    ward = body.get("ward") or "Unknown"
    fields = {k: body[k] for k in ("depth", "context", "max_cost_usd", "deadline_s", "require_citations") if k in body}
    if fields.get("context") not in (None, "defensive", "neutral", "offensive"):
        fields["context"] = "neutral"  # the contract maps unknown contexts to neutral
    try:
        analysis = parse_request(
            {"query": f"{(query or CONTENT_PROMPT).strip()}\n\nContent:\n{text}"[:10_000], "ward": ward, **fields}
        )
        result = _orchestrator().analyze(analysis, caller_key=request.headers.get("X-Session-Id"))
    except RequestError as exc:
        return _error(400, str(exc))
    payload = result.model_dump(mode="json")
    payload |= {
        "analysis_type": "content_analysis",
        "text_length": len(text),
        "analyzed_at": _now(),
        "ward": ward,
    }
    return jsonify(payload), 200


@bp.post("/feedback")
@protected
def feedback() -> Any:
    """Record whether an analysis turned out right: {"thread_id": ..., "correct": true|false, "note": ...}."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error(400, "Request body must be a JSON object")
    thread_id, correct, note = body.get("thread_id"), body.get("correct"), body.get("note", "")
    if not isinstance(thread_id, str) or not thread_id.strip():
        return _error(400, "thread_id is required")
    if not isinstance(correct, bool):
        return _error(400, "correct must be true or false")
    if not isinstance(note, str) or len(note) > 2000:
        return _error(400, "note must be a string of at most 2,000 characters")
    try:
        outcome = _orchestrator().record_feedback(thread_id.strip(), correct, note=note)
    except UnknownThread as exc:
        return _error(404, str(exc))
    except FeedbackError as exc:
        return _error(409, str(exc))
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


@bp.get("/health")
def health() -> Any:
    """Report provider health: availability, circuit, recent error rate, latency percentiles, hedge budget."""
    report = health_report(_orchestrator().registry)
    return jsonify(report), 200 if report["overall_score"] > 0 else 503


@bp.post("/circuit-breaker/reset")
@protected
def circuit_breaker_reset() -> Any:
    """Close every circuit, or one (body {"provider": name}); needs the admin token in X-Admin-Token."""
    registry = _orchestrator().registry
    if not admin_token_ok(registry.settings, request.headers.get("X-Admin-Token")):
        return _error(403, "Admin token required (X-Admin-Token, configured by STRATEGIST_ADMIN_TOKEN)")
    body = request.get_json(silent=True)
    provider = body.get("provider") if isinstance(body, dict) else None
    if provider is not None and not isinstance(provider, str):
        return _error(400, "provider must be a string")
    try:
        return jsonify(reset_circuits(registry, provider)), 200
    except UnknownProvider as exc:
        return _error(400, str(exc))


@bp.errorhandler(CheckpointStoreError)
def _store_error(exc: CheckpointStoreError) -> tuple[Response, int]:
    # The store is down: a server-side, retryable condition; the analysis resumes from its last checkpoint.
    body = {"error": str(exc), "status": "checkpoint_store_unavailable"}
    if exc.thread_id:
        body["thread_id"] = exc.thread_id
    return jsonify(body), 503


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[Response, int]:
    return _error(exc.code or 500, exc.description or exc.name)


def create_app(orchestrator: Orchestrator | None = None) -> Flask:
    """Build the Flask app; without an orchestrator, open the configured checkpoint store for the process."""
    app = Flask(__name__)
    if orchestrator is None:
        settings = load_settings()
        stack = contextlib.ExitStack()
        stores = stack.enter_context(open_stores(settings))
        atexit.register(stack.close)
        orchestrator = Orchestrator(ProviderRegistry(settings), stores.checkpointer, stores.ledger, stores.feedback)
    app.extensions["strategist"] = orchestrator
    app.register_blueprint(bp)

    @app.errorhandler(404)
    @app.errorhandler(405)
    def _not_found(exc: HTTPException) -> tuple[Response, int]:
        return _error(exc.code or 404, exc.description or exc.name)

    return app


def admin_token_ok(settings: Settings, given: str | None) -> bool:
    """Say whether ``given`` is the configured admin token; with no token configured, nobody is admin."""
    expected = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
