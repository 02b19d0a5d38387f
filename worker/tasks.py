"""The tasks: run (or resume) one analysis or one ward briefing whose thread id is the task id.

A task is idempotent by its thread: the first delivery starts the thread, a redelivery (its worker died) resumes
it from the last checkpoint, so a provider call that completed is not paid again, and a delivery of a finished
thread returns its result. Progress events go to Redis pub/sub (worker/events.py) for the web's SSE streams.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery, Task

from graphs.errors import CheckpointStoreError, ThreadBusy, UnknownThread
from graphs.request import parse_request
from graphs.service import Orchestrator
from graphs.ward_reports import WardReports, normalise_context, normalise_depth, normalise_ward, open_reports
from observability.logs import bind_thread
from observability.metrics import observe_queue_wait
from observability.tracing import current_trace_id, span
from providers.config import load_settings
from worker import events
from worker.hub import shared_hub
from worker.records import record_delivery

log = logging.getLogger("strategist.worker")
ANALYSIS_TASK = "strategist.analysis"
BRIEFING_TASK = "strategist.briefing"
# A task that meets a store failure (Redis restarting) or a thread held by another runner tries again later.
RETRY_COUNTDOWN_S = 5
MAX_RETRIES = 60


@dataclass(frozen=True)
class Services:
    """This process's services over the configured stores."""

    orchestrator: Orchestrator
    reports: WardReports


_services: tuple[int, Services] | None = None
_services_lock = threading.Lock()


def services() -> Services:
    """Return this process's services, opened on first use after the fork (connections never cross a fork)."""
    global _services
    with _services_lock:
        if _services is None or _services[0] != os.getpid():
            reports = open_reports(load_settings())
            # Briefing progress goes to every web process's live feeds through Redis.
            reports.hub = shared_hub() or reports.hub
            orchestrator = Orchestrator(
                reports.registry, reports.checkpointer, reports.ledger, reports.feedback, budget=reports.budget
            )
            _services = (os.getpid(), Services(orchestrator, reports))
        return _services[1]


# A task that meets these tries again later: the store is down (Redis restarting), or another runner holds the
# thread's lease (a redelivery that overtook a run still going: it finds the thread finished, or resumes it).
RETRIABLE = (CheckpointStoreError, ThreadBusy)


def run_analysis(thread_id: str, request: dict[str, Any], caller_key: str | None) -> dict[str, Any]:
    """Run the analysis of ``thread_id``, or resume it from its checkpoint when a previous delivery started it."""
    orchestrator = services().orchestrator
    publish = events.publisher(thread_id)
    try:
        orchestrator.status(thread_id)
    except UnknownThread:
        result = orchestrator.analyze(
            parse_request(request), thread_id=thread_id, caller_key=caller_key, on_event=publish
        )
    else:
        result = orchestrator.resume(thread_id, on_event=publish)
    return result.model_dump(mode="json")


def run_briefing(thread_id: str, ward: str, depth: str, context: str) -> dict[str, Any]:
    """Run the briefing of ``thread_id``, or resume it from its checkpoint when a previous delivery started it."""
    reports = services().reports
    publish = events.publisher(thread_id)
    try:
        result = reports.resume(thread_id, on_event=publish)
    except UnknownThread:
        result = reports.run(
            normalise_ward(ward),
            normalise_depth(depth),
            normalise_context(context),
            thread_id=thread_id,
            on_event=publish,
        )
    return result.model_dump(mode="json")


def register(app: Celery) -> None:
    """Register the tasks on ``app`` under their fixed names (the web process sends them by name)."""

    @app.task(name=ANALYSIS_TASK, bind=True, max_retries=MAX_RETRIES)  # type: ignore[untyped-decorator]
    def analysis(
        self: Task, request: dict[str, Any], caller_key: str | None = None, enqueued_at: float | None = None
    ) -> dict[str, Any]:
        observe_queue_wait("analysis", enqueued_at, self.request.retries, _redelivered(self))
        thread_id = str(self.request.id)
        with bind_thread(thread_id), span("job analysis", _trace_headers(self), thread_id=thread_id):
            _record_delivery(self)
            try:
                return run_analysis(thread_id, request, caller_key)
            except RETRIABLE as exc:
                raise self.retry(exc=exc, countdown=RETRY_COUNTDOWN_S) from exc

    @app.task(name=BRIEFING_TASK, bind=True, max_retries=MAX_RETRIES)  # type: ignore[untyped-decorator]
    def briefing(
        self: Task,
        ward: str,
        depth: str = "standard",
        context: str = "neutral",
        enqueued_at: float | None = None,
    ) -> dict[str, Any]:
        observe_queue_wait("briefing", enqueued_at, self.request.retries, _redelivered(self))
        thread_id = str(self.request.id)
        with bind_thread(thread_id), span("job briefing", _trace_headers(self), thread_id=thread_id):
            _record_delivery(self)
            try:
                return run_briefing(thread_id, ward, depth, context)
            except RETRIABLE as exc:
                raise self.retry(exc=exc, countdown=RETRY_COUNTDOWN_S) from exc


def _record_delivery(task: Task) -> None:
    try:
        record_delivery(
            events.client(str(task.app.conf.broker_url)),
            str(task.request.id),
            task.request.hostname,
            current_trace_id(),
        )
    except redis.RedisError as exc:
        # Bookkeeping only: the job itself goes on.
        log.warning("could not record the delivery of job %s: %s", task.request.id, exc)


def _redelivered(task: Task) -> bool:
    return bool((task.request.delivery_info or {}).get("redelivered"))


def _trace_headers(task: Task) -> dict[str, str] | None:
    """Return the trace context the web process sent with the job (``traceparent``), if any."""
    parent = getattr(task.request, "traceparent", None)
    return {"traceparent": str(parent)} if parent else None
