"""Async jobs: ``POST /jobs`` queues an analysis or a briefing for the Celery workers (202 and the job's URL),
``GET /jobs/<id>`` gives its state and, once done, its result; ``GET /jobs/<id>/events`` streams its progress
(server-sent events relayed from the worker through Redis pub/sub: the event model of nodes/policy/events.py,
then a last ``job`` event with the job's state and result).

The job id is the analysis's thread id: resubmitting an id returns the existing job (200) instead of a second run.
Without a broker (``CELERY_BROKER_URL`` or ``REDIS_URL``) these routes answer 503. The synchronous routes are
unchanged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, Literal

from flask import Response, current_app, jsonify, request, stream_with_context, url_for
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from api.common import ApiError, bp, parse_body, protected
from graphs.errors import RequestError
from graphs.request import parse_request
from graphs.ward_reports import MAX_WARD_CHARS
from providers.config import ConfigError, Depth
from worker import events
from worker.config import longest_deadline_s
from worker.jobs import Job, Jobs

KEEPALIVE_S = 15.0


class JobBody(BaseModel):
    """``POST /jobs``: an analysis (``query`` and the request's options) or a ward briefing (``ward``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["analysis", "briefing"] = "analysis"
    thread_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    query: str | None = None
    ward: str | None = Field(default=None, max_length=MAX_WARD_CHARS)
    depth: Depth = "standard"
    context: Literal["defensive", "neutral", "offensive"] = "neutral"
    max_cost_usd: float | None = Field(default=None, ge=0)
    deadline_s: float | None = Field(default=None, gt=0)
    require_citations: StrictBool = False
    cost_sensitive: StrictBool = False
    cross_check: StrictBool = False


def jobs() -> Jobs:
    """Return the app's job client, connected on first use (503 when no broker is configured)."""
    found = current_app.extensions.get("strategist_jobs")
    if found is None:
        from api.common import orchestrator
        from worker.app import create_celery

        try:
            found = Jobs(create_celery(orchestrator().registry.settings))
        except ConfigError as exc:
            raise ApiError(503, str(exc)) from None
        current_app.extensions["strategist_jobs"] = found
    return found


def _arguments(body: JobBody) -> dict[str, Any]:
    if body.kind == "briefing":
        if not (body.ward or "").strip():
            raise ApiError(400, "ward is required for a briefing job")
        return {"ward": body.ward, "depth": body.depth, "context": body.context}
    if body.query is None:
        raise ApiError(400, "query is required for an analysis job")
    fields = body.model_dump(
        include={
            "query",
            "ward",
            "depth",
            "context",
            "max_cost_usd",
            "deadline_s",
            "require_citations",
            "cost_sensitive",
            "cross_check",
        },
        exclude_none=True,
    )
    try:
        analysis = parse_request(fields)
    except RequestError as exc:
        raise ApiError(400, str(exc)) from None
    return {"request": analysis.model_dump(exclude_none=True), "caller_key": request.headers.get("X-Session-Id")}


def _check_deadline(body: JobBody) -> None:
    """Refuse a deadline longer than the longest configured one (the visibility timeout is sized on it)."""
    from api.common import orchestrator

    longest = longest_deadline_s(orchestrator().registry.settings)
    if body.deadline_s is not None and body.deadline_s > longest:
        raise ApiError(400, f"deadline_s: at most {longest:g} seconds for a job (the longest configured deadline)")


def _job_body(job: Job) -> dict[str, Any]:
    return job.data() | {
        "url": url_for("strategist.job", job_id=job.job_id),
        "events_url": url_for("strategist.job_events", job_id=job.job_id),
    }


@bp.post("/jobs")
@protected
def submit_job() -> Any:
    """Queue an analysis or briefing; 202 with the job's URL (200 with the existing job for a known id)."""
    body = parse_body(JobBody)
    _check_deadline(body)
    job, created = jobs().submit(body.kind, _arguments(body), job_id=body.thread_id)
    response = jsonify(_job_body(job))
    response.status_code = 202 if created else 200
    response.headers["Location"] = url_for("strategist.job", job_id=job.job_id)
    return response


@bp.get("/jobs/<job_id>")
@protected
def job(job_id: str) -> Any:
    """Return a job's state (queued, running, retrying, done, failed) and, once done, its result."""
    found = jobs().get(job_id)
    if found is None:
        raise ApiError(404, f"no job with id {job_id!r}")
    return jsonify(_job_body(found)), 200


@bp.get("/jobs/<job_id>/events")
@protected
def job_events(job_id: str) -> Any:
    """Stream a job's progress events as server-sent events until its result (or its end, for a finished job)."""
    client = jobs()
    found = client.get(job_id)
    if found is None:
        raise ApiError(404, f"no job with id {job_id!r}")
    url = str(client.app.conf.broker_url)

    def stream() -> Iterator[str]:
        current = client.get(job_id)
        if current is not None and current.state in ("done", "failed"):
            yield _sse({"event": "job", **current.data()})
            return
        for event in events.subscribe(job_id, url, timeout_s=KEEPALIVE_S):
            if event is None:
                # The result may have been published before this stream subscribed: the record has it.
                latest = client.get(job_id)
                if latest is not None and latest.state in ("done", "failed"):
                    yield _sse({"event": "job", **latest.data()})
                    return
                yield ": keep-alive\n\n"
                continue
            yield _sse(event)
            if event.get("event") in ("complete", "error"):
                # The worker stores the result just after its last event: wait for it, then end with the job.
                yield _sse({"event": "job", **_settled(client, job_id).data()})
                return

    return Response(stream_with_context(stream()), mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})


def _settled(client: Jobs, job_id: str, wait_s: float = 30.0) -> Job:
    """Return the job once its result is stored (or as it stands after ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while True:
        job = client.get(job_id)
        assert job is not None  # it was found when the stream began, and records outlive results
        if job.state in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def _sse(event: dict[str, Any]) -> str:
    return f"event: {event.get('event', 'message')}\ndata: {json.dumps(event, default=str)}\n\n"
