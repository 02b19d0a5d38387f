"""``GET /metrics``: Prometheus text exposition of every process's metrics (observability/metrics.py), plus what is
read at scrape time: circuit state per provider and the job queue's depth. Also records each HTTP request (by
route template, method and status) and answers every response with its trace id (``X-Trace-Id``).

Mounted at the root (``/metrics``, where Prometheus looks), outside the API's prefix and its token: like
``/alive``, it says nothing a caller could misuse, and scrapers rarely carry bearer tokens.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request

from observability.metrics import exposition, observe_http
from observability.tracing import current_trace_id, tracer

metrics_bp = Blueprint("strategist_metrics", __name__)
CIRCUIT_STATES = ("closed", "half_open", "open")


class ScrapeTimeCollector:
    """Circuit states (shared through Redis with ``REDIS_URL``) and queue depth, read when scraped."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        circuits = GaugeMetricFamily(
            "strategist_circuit_state", "1 for the circuit's current state, per provider", labels=["provider", "state"]
        )
        orchestrator = self.app.extensions.get("strategist")
        if orchestrator is not None:
            registry = orchestrator.registry
            for name in registry.settings.providers:
                state = registry.health.breaker(name).snapshot().state
                for candidate in CIRCUIT_STATES:
                    circuits.add_metric([name, candidate], 1.0 if state == candidate else 0.0)
        yield circuits
        jobs = self.app.extensions.get("strategist_jobs")
        if jobs is not None:
            depth = GaugeMetricFamily("strategist_queue_depth", "Jobs waiting for a worker")
            try:
                depth.add_metric([], float(jobs.queue_depth()))
            except Exception:  # the broker is down: say nothing rather than fail the scrape
                return
            yield depth


@metrics_bp.get("/metrics")
def metrics() -> Response:
    """Return the metrics in Prometheus's text format."""
    body, content_type = exposition([ScrapeTimeCollector(current_app._get_current_object())])  # type: ignore[attr-defined]
    return Response(body, content_type=content_type)


def register_metrics(app: Flask) -> None:
    """Mount ``/metrics``, time every request in a span, count it, and put its trace id on the answer."""
    app.register_blueprint(metrics_bp)

    @app.before_request
    def _start() -> None:
        g.strategist_started = time.perf_counter()
        g.strategist_span = tracer().start_as_current_span(f"{request.method} {request.path}")
        g.strategist_span.__enter__()

    @app.after_request
    def _finish(response: Response) -> Response:
        trace_id = current_trace_id()
        if trace_id:
            response.headers["X-Trace-Id"] = trace_id
        started = g.get("strategist_started")
        if started is not None and request.endpoint != "strategist_metrics.metrics":
            route = request.url_rule.rule if request.url_rule is not None else "unmatched"
            observe_http(route, request.method, response.status_code, time.perf_counter() - started)
        return response

    @app.teardown_request
    def _end(exc: BaseException | None) -> None:
        manager = g.pop("strategist_span", None)
        if manager is not None:
            manager.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)
