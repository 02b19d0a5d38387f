"""OpenTelemetry traces: a span per HTTP request, per job, per graph node and per provider call.

Off by default. ``OTEL_TRACES_EXPORTER`` (the OpenTelemetry variable) chooses the exporter: ``none`` (default),
``console`` (spans as JSON on stderr) or ``otlp`` (needs ``opentelemetry-exporter-otlp``; the standard
``OTEL_EXPORTER_OTLP_*`` variables configure it). A tracer provider is installed either way, so every request has
a trace id (``X-Trace-Id`` on answers, ``trace_id`` in JSON logs) even when nothing is exported; the per-node and
per-provider spans are made only when an exporter is on, so tracing costs nothing by default.

Node and provider spans come from a LangChain callback handler (``span_callbacks``): LangGraph reports each node
as a chain run (with ``langgraph_node`` in its metadata) and each model call as a chat-model run, with their parent
runs, which this module turns into parented spans. LangSmith tracing uses the same callback system: with its
variables set (``LANGSMITH_TRACING=true``, ``LANGSMITH_API_KEY``) LangChain adds its own tracer beside this one.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Span, Status, StatusCode

log = logging.getLogger("strategist.tracing")
TRACER = "strategist"
_configured: dict[str, Any] = {"exporting": False, "provider": None}
_lock = threading.Lock()


class TracingConfigError(ValueError):
    """The tracing configuration names an exporter that cannot be used."""


def _exporter(name: str) -> SpanExporter | None:
    if name in ("", "none"):
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )
        except ImportError:
            raise TracingConfigError(
                "OTEL_TRACES_EXPORTER=otlp needs `pip install opentelemetry-exporter-otlp-proto-http`"
            ) from None
        exporter: SpanExporter = OTLPSpanExporter()
        return exporter
    raise TracingConfigError(f"OTEL_TRACES_EXPORTER={name!r}: expected none, console or otlp")


def configure_tracing(env: Mapping[str, str] | None = None, exporter: SpanExporter | None = None) -> bool:
    """Install the tracer provider (once per process) with the configured exporter; return whether it exports.

    ``exporter`` (tests) replaces the one the environment names.
    """
    env = os.environ if env is None else env
    with _lock:
        chosen = exporter or _exporter(env.get("OTEL_TRACES_EXPORTER", "none").strip().lower())
        provider = _configured["provider"]
        if provider is None:
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
            _configured["provider"] = provider
        if chosen is not None:
            processor = SimpleSpanProcessor(chosen) if exporter is not None else BatchSpanProcessor(chosen)
            provider.add_span_processor(processor)
            _configured["exporting"] = True
        return bool(_configured["exporting"])


def exporting() -> bool:
    """Say whether spans are exported (and node and provider spans are worth making)."""
    return bool(_configured["exporting"])


def tracer() -> trace.Tracer:
    """Return the strategist tracer (a no-op one until ``configure_tracing``)."""
    return trace.get_tracer(TRACER)


def current_trace_id() -> str | None:
    """Return the current span's trace id as 32 hex digits, or None outside a recorded span."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def inject_headers() -> dict[str, str]:
    """Return W3C trace-context headers for the current span (to carry a trace into a job)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def span(name: str, headers: Mapping[str, str] | None = None, **attributes: Any) -> Iterator[Span]:
    """Run the block in a span, continuing the trace carried by ``headers`` when given."""
    parent = propagate.extract(dict(headers)) if headers else None
    with tracer().start_as_current_span(name, context=parent, attributes=_clean(attributes)) as current:
        yield current


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if isinstance(v, str | int | float | bool)}


class SpanCallbacks(BaseCallbackHandler):
    """Turns LangGraph node runs and chat-model runs into OpenTelemetry spans, parented as the runs are."""

    def __init__(self, tracer_: trace.Tracer | None = None) -> None:
        self._tracer = tracer_ or tracer()
        self._spans: dict[UUID, Span] = {}
        self._root = otel_context.get_current()
        self._lock = threading.Lock()

    def _start(self, run_id: UUID, parent_run_id: UUID | None, name: str, attributes: dict[str, Any]) -> None:
        with self._lock:
            parent = self._spans.get(parent_run_id) if parent_run_id else None
        ctx = trace.set_span_in_context(parent, self._root) if parent is not None else self._root
        started = self._tracer.start_span(name, context=ctx, attributes=_clean(attributes))
        with self._lock:
            self._spans[run_id] = started

    def _end(self, run_id: UUID, error: BaseException | None = None) -> None:
        with self._lock:
            ended = self._spans.pop(run_id, None)
        if ended is None:
            return
        if error is not None:
            ended.record_exception(error)
            ended.set_status(Status(StatusCode.ERROR, type(error).__name__))
        ended.end()

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        node = (metadata or {}).get("langgraph_node")
        name = kwargs.get("name")
        if node is not None and name == node:
            self._start(
                run_id,
                parent_run_id,
                f"node {node}",
                {
                    "langgraph.node": node,
                    "langgraph.step": (metadata or {}).get("langgraph_step", -1),
                    "strategist.thread_id": (metadata or {}).get("thread_id", ""),
                },
            )
        elif parent_run_id is None:
            self._start(run_id, None, f"graph {name or 'run'}", {})

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        # GraphInterrupt/bubble-ups end the node's span too; only a real exception marks it an error.
        self._end(run_id, error)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        meta = metadata or {}
        model = str(meta.get("ls_model_name") or (serialized or {}).get("name") or "model")
        self._start(
            run_id,
            parent_run_id,
            f"provider call {model}",
            {
                "gen_ai.request.model": model,
                "gen_ai.system": str(meta.get("ls_provider") or ""),
                "langgraph.node": str(meta.get("langgraph_node") or ""),
            },
        )

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error)


def span_callbacks() -> list[BaseCallbackHandler]:
    """Return the callbacks to add to a graph run's config: the span maker when exporting, else none."""
    return [SpanCallbacks()] if exporting() else []
