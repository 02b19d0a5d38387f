"""The strategist HTTP app: the Flask factory that mounts the /api/v1/strategist blueprint (api/).

The app owns the stores' lifecycle for the life of the process: ``create_app()`` without arguments opens the
configured stores, the same ones ``graphs.ward_reports.get_ward_report`` uses (same checkpoints, same briefing
cache and leases, so single flight holds between the two).
Every error the app answers is JSON: the blueprint's errors, Flask's own (404, 405, 413), unhandled exceptions
(the contract's 500 body) and, with ``JsonErrorRequestHandler`` (`strategist serve`), the server's own refusals
(431 oversized headers).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from api import API_PREFIX, bp
from api.common import (
    ApiError,
    JsonErrorRequestHandler,
    admin_token_ok,
    check_header_size,
    disabled,
    disabled_response,
    internal_error_response,
    max_body_bytes,
    not_found_response,
)
from api.metrics import register_metrics
from graphs.errors import CheckpointStoreError, ThreadBusy
from graphs.overload import Overloaded
from graphs.service import Orchestrator
from graphs.ward_reports import WardReports, open_reports
from providers.config import load_settings
from worker.hub import shared_hub

__all__ = ["API_PREFIX", "JsonErrorRequestHandler", "admin_token_ok", "create_app"]
log = logging.getLogger("strategist.http")


def _under_api() -> bool:
    return request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/")


def _register_errors(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return exc.response()

    @app.errorhandler(CheckpointStoreError)
    def _store_error(exc: CheckpointStoreError) -> tuple[Response, int]:
        # The store is down: a server-side, retryable condition; the analysis resumes from its last checkpoint.
        body = {"error": str(exc), "status": "checkpoint_store_unavailable"}
        if exc.thread_id:
            body["thread_id"] = exc.thread_id
        return jsonify(body), 503

    @app.errorhandler(Overloaded)
    def _overloaded(exc: Overloaded) -> Response:
        # No provider could answer within the deadline (the local model's queue, hung calls): honest and retryable.
        body = {"error": str(exc), "status": "overloaded", "retry_after_s": exc.retry_after_s}
        if exc.thread_id:
            body["thread_id"] = exc.thread_id
        response = jsonify(body)
        response.status_code = 503
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.errorhandler(ThreadBusy)
    def _thread_busy(exc: ThreadBusy) -> tuple[Response, int]:
        # Another runner holds the thread's lease (graphs/stores/lease.py): a conflict, not a failure.
        return jsonify({"error": str(exc), "status": "thread_busy", "thread_id": exc.thread_id}), 409

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        if exc.code == 404 and _under_api():
            return not_found_response()
        if isinstance(exc, RequestEntityTooLarge):
            body = {"error": "Request body too large", "limit_bytes": max_body_bytes()}
        else:
            body = {"error": exc.description or exc.name}
        response = jsonify(body)
        response.status_code = exc.code or 500
        for name, value in exc.get_headers():
            if name in ("Allow", "Retry-After", "WWW-Authenticate"):
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unhandled(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return internal_error_response()


def _with_shared_progress(reports: WardReports) -> WardReports:
    """With a broker, briefing progress goes through Redis (worker/hub.py): a live feed sees briefings running in
    any process, a Celery worker's included."""
    reports.hub = shared_hub() or reports.hub
    return reports


def create_app(orchestrator: Orchestrator | None = None, reports: WardReports | None = None) -> Flask:
    """Build the Flask app; without arguments, serve the process-wide stores and services."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes()
    if orchestrator is None:
        reports = reports or _with_shared_progress(open_reports(load_settings()))
        orchestrator = Orchestrator(
            reports.registry, reports.checkpointer, reports.ledger, reports.feedback, budget=reports.budget
        )
    app.extensions["strategist"] = orchestrator
    # None: opened on first use from the orchestrator's settings (api/common.py reports()).
    app.extensions["strategist_reports"] = reports
    app.register_blueprint(bp)

    @app.before_request
    def _gate() -> Any:
        if not _under_api():
            return None
        if disabled():
            return disabled_response()
        check_header_size()
        return None

    _register_errors(app)
    # Scale-out: /metrics, request metrics and trace ids (api/metrics.py).
    register_metrics(app)
    return app
