"""Metrics, traces and logs of a run: the Prometheus counters an analysis moves (provider calls, failovers,
retries, spend), a span per graph node and per provider call parented under one trace, JSON log lines that carry
the thread id and trace id, and the HTTP side: ``/metrics``, ``X-Trace-Id``, jobs without a broker (503)."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from flask.testing import FlaskClient
from langgraph.checkpoint.memory import InMemorySaver
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

import app as app_module
import graphs.service
from graphs.request import parse_request
from graphs.service import Orchestrator
from observability.logs import JsonFormatter, bind_thread
from observability.metrics import exposition
from observability.tracing import SpanCallbacks, span
from providers.errors import ServerError
from providers.testing import fake_registry, reply
from providers.testing.checker import verdict_text

QUERY = "Design a 12-week mobilisation plan for Jubilee Hills with budget trade-offs and risks"
CHECK = reply(verdict_text("Map the booths first and name captains, then canvass door to door.", ["supports"]))


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_failed_over_analysis_moves_calls_failovers_retries_and_spend() -> None:
    names = [
        (
            "strategist_provider_calls_total",
            {"provider": "gemini", "tier": "premium", "role": "answer", "outcome": "error"},
        ),
        (
            "strategist_provider_calls_total",
            {"provider": "perplexity", "tier": "realtime", "role": "answer", "outcome": "ok"},
        ),
        ("strategist_failovers_total", {"kind": "analysis"}),
        ("strategist_retries_total", {"provider": "gemini"}),
        ("strategist_spend_usd_total", {"provider": "perplexity", "tier": "realtime"}),
        (
            "strategist_analyses_total",
            {"kind": "analysis", "tier": "realtime", "provider": "perplexity", "outcome": "answered"},
        ),
    ]
    before = [value(n, **labels) for n, labels in names]
    registry = fake_registry(
        {"gemini": [ServerError("500 INTERNAL")] * 5, "perplexity": [reply("Map every booth first.\nConfidence: 0.7")]}
    )
    result = Orchestrator(registry, None).analyze(parse_request({"query": QUERY, "depth": "quick"}))
    gemini_errors = sum(1 for a in result.attempts if a.provider == "gemini")
    assert result.provider == "perplexity" and gemini_errors >= 1
    after = [value(n, **labels) for n, labels in names]
    delta = [a - b for a, b in zip(after, before, strict=True)]
    assert delta[0] == gemini_errors and delta[1] == 1
    assert delta[2] == 1 and delta[3] == gemini_errors - 1
    assert delta[4] == pytest.approx(sum(a.cost_usd for a in result.attempts if a.provider == "perplexity"))
    assert delta[5] == 1
    text, content_type = exposition()
    assert content_type.startswith("text/plain") and b"strategist_failovers_total" in text


def test_a_span_per_node_and_per_provider_call_under_one_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(graphs.service, "span_callbacks", lambda: [SpanCallbacks(provider.get_tracer("test"))])
    registry = fake_registry({"gemini": [reply("Week 1: map every booth.\nConfidence: 0.7")], "perplexity": [CHECK]})
    Orchestrator(registry, InMemorySaver()).analyze(parse_request({"query": QUERY, "depth": "deep"}), thread_id="t-1")
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    for node in ("classify", "route", "call_model", "validate", "cross_check", "score"):
        assert f"node {node}" in names, names
    calls = [s for s in spans if s.name.startswith("provider call")]
    assert len(calls) == 2, names
    by_id = {s.context.span_id: s for s in spans}
    parents = sorted(by_id[c.parent.span_id].name for c in calls if c.parent is not None)
    assert parents == ["node call_model", "node cross_check"]
    assert len({s.context.trace_id for s in spans}) == 1
    assert {(s.attributes or {}).get("strategist.thread_id") for s in spans if s.name.startswith("node")} == {"t-1"}


def test_json_logs_carry_the_thread_id_and_trace_id() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("strategist.test-json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    provider = TracerProvider()
    try:
        with bind_thread("thread-7"):
            with provider.get_tracer("t").start_as_current_span("job"):
                logger.info("asked %s", "gemini", extra={"attempt": 2})
            logger.info("after")
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    first, second, third = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "asked gemini" and first["thread_id"] == "thread-7" and first["attempt"] == 2
    assert len(first["trace_id"]) == 32 and first["level"] == "INFO"
    assert second["thread_id"] == "thread-7" and "trace_id" not in second
    assert "thread_id" not in third


@pytest.fixture()
def client(monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    for var in ("REDIS_URL", "CELERY_BROKER_URL"):
        monkeypatch.delenv(var, raising=False)
    orchestrator = Orchestrator(fake_registry({"local": [reply("Sentiment is mixed; the key claim is X.")]}), None)
    return app_module.create_app(orchestrator).test_client()


def test_http_requests_are_counted_by_route_and_answered_with_a_trace_id(client: FlaskClient) -> None:
    labels = {"route": "/api/v1/strategist/alive", "method": "GET", "status": "200"}
    before = value("strategist_http_requests_total", **labels)
    with span("test request"):  # a recording tracer provider is what `serve` installs
        pass
    answer = client.get("/api/v1/strategist/alive")
    assert answer.status_code == 200
    assert value("strategist_http_requests_total", **labels) == before + 1
    scraped = client.get("/metrics")
    assert scraped.status_code == 200 and b"strategist_http_requests_total{" in scraped.data
    assert b'strategist_circuit_state{provider="local",state="closed"} 1.0' in scraped.data


def test_jobs_without_a_broker_are_a_clear_503(client: FlaskClient) -> None:
    answer = client.post("/api/v1/strategist/jobs", json={"query": QUERY})
    assert answer.status_code == 503
    assert "CELERY_BROKER_URL" in answer.get_json()["error"]


def test_a_job_deadline_longer_than_the_longest_configured_one_is_refused(client: FlaskClient) -> None:
    answer = client.post("/api/v1/strategist/jobs", json={"query": QUERY, "deadline_s": 3000})
    assert answer.status_code == 400 and "deadline_s" in answer.get_json()["error"]


def test_unknown_fields_of_a_job_are_refused(client: FlaskClient) -> None:
    answer: Any = client.post("/api/v1/strategist/jobs", json={"query": QUERY, "colour": "red"})
    assert answer.status_code == 400


def test_threads_arriving_first_build_the_metrics_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """functools.cache alone let two first callers both build (and register) the metrics; the second failed with
    DuplicateTimeseries and that request's metrics were lost."""
    import functools
    import threading

    import observability.metrics as metrics

    built: list[object] = []

    @functools.cache
    def slow_create() -> Any:
        threading.Event().wait(0.05)  # a construction slow enough for the others to arrive meanwhile
        built.append(object())
        return built[-1]

    monkeypatch.setattr(metrics, "_create", slow_create)
    start = threading.Barrier(8)
    got: list[object] = []

    def first_use() -> None:
        start.wait()
        got.append(metrics._metrics())

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(built) == 1 and got == built * 8
