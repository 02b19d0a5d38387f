"""Jobs: analyses and briefings submitted to the workers, their state and result, by job id (= thread id).

A job's record (kind, submission time) is written to the broker's Redis when it is submitted, with ``SET NX``:
that makes submission idempotent by thread id (a second submit of the same id returns the first job) and tells an
unknown id (404) from a queued one, which Celery's result backend cannot (it answers PENDING for any id).
The state and result come from Celery's result backend.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import redis
from celery import Celery
from celery.result import AsyncResult

from observability.metrics import observe_job_submitted
from observability.tracing import inject_headers
from worker.config import RESULT_TTL_S
from worker.reconcile import track
from worker.records import RECORD, deliveries
from worker.tasks import ANALYSIS_TASK, BRIEFING_TASK

JobKind = Literal["analysis", "briefing"]
JobState = Literal["queued", "running", "retrying", "done", "failed"]
TASKS: dict[JobKind, str] = {"analysis": ANALYSIS_TASK, "briefing": BRIEFING_TASK}
_STATES: dict[str, JobState] = {
    "PENDING": "queued",
    "RECEIVED": "queued",
    "STARTED": "running",
    "RETRY": "retrying",
    "SUCCESS": "done",
    "FAILURE": "failed",
    "REVOKED": "failed",
    "REJECTED": "queued",
}


@dataclass(frozen=True)
class Job:
    """A submitted job as a client sees it."""

    job_id: str
    kind: JobKind
    submitted_at: float
    state: JobState
    result: dict[str, Any] | None = None
    error: str | None = None
    # When a worker took it (each delivery: at, worker, pid), and when its result was stored.
    deliveries: tuple[dict[str, Any], ...] = ()
    finished_at: float | None = None

    @property
    def queue_wait_s(self) -> float | None:
        """Return how long the job waited for its first worker."""
        return self.deliveries[0]["at"] - self.submitted_at if self.deliveries else None

    def data(self) -> dict[str, Any]:
        """Return the job as JSON-ready data."""
        body: dict[str, Any] = {
            "job_id": self.job_id,
            "thread_id": self.job_id,
            "kind": self.kind,
            "state": self.state,
            "submitted_at": self.submitted_at,
        }
        if self.deliveries:
            body["started_at"] = self.deliveries[0]["at"]
            body["queue_wait_s"] = round(self.queue_wait_s or 0.0, 3)
            body["deliveries"] = len(self.deliveries)
            body["trace_id"] = self.deliveries[-1].get("trace_id")
        if self.finished_at is not None:
            body["finished_at"] = self.finished_at
        if self.result is not None:
            body["result"] = self.result
        if self.error is not None:
            body["error"] = self.error
        return body


class Jobs:
    """Submit jobs to the workers and read them back."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.redis: redis.Redis = redis.Redis.from_url(str(app.conf.broker_url))

    def submit(self, kind: JobKind, arguments: dict[str, Any], *, job_id: str | None = None) -> tuple[Job, bool]:
        """Queue a job; return it and whether it is new (False: a job with this id was already submitted)."""
        job_id = job_id or str(uuid.uuid4())
        submitted_at = time.time()
        kwargs = {**arguments, "enqueued_at": submitted_at}
        # The task and its arguments are kept so that a job whose message the broker loses can be sent again
        # (worker/reconcile.py); they are what the message itself carries, in the same Redis.
        record = json.dumps({"kind": kind, "submitted_at": submitted_at, "task": TASKS[kind], "kwargs": kwargs})
        if not self.redis.set(RECORD.format(job_id=job_id), record, nx=True, ex=RESULT_TTL_S):
            existing = self.get(job_id)
            assert existing is not None  # the record was just found
            return existing, False
        # Tracked before it is sent: a web process that dies in between leaves a job the sweep sends.
        pipe = self.redis.pipeline()
        track(pipe, job_id, submitted_at)
        pipe.execute()
        self.app.send_task(TASKS[kind], kwargs=kwargs, task_id=job_id, headers=inject_headers())
        observe_job_submitted(kind)
        return Job(job_id, kind, submitted_at, "queued"), True

    def get(self, job_id: str) -> Job | None:
        """Return the job, or None for an id never submitted (or forgotten after a day)."""
        raw = self.redis.get(RECORD.format(job_id=job_id))
        if raw is None:
            return None
        record = json.loads(raw)
        outcome = AsyncResult(job_id, app=self.app)
        state = _STATES.get(outcome.state, "running")
        result = outcome.result if state == "done" else None
        error = f"{type(outcome.result).__name__}: {outcome.result}" if state == "failed" else None
        done_at = outcome.date_done.timestamp() if state in ("done", "failed") and outcome.date_done else None
        taken = tuple(deliveries(self.redis, job_id))
        return Job(job_id, record["kind"], record["submitted_at"], state, result, error, taken, done_at)

    def queue_depth(self) -> int:
        """Return how many jobs wait in the queue (not yet taken by a worker)."""
        return int(self.redis.llen(str(self.app.conf.task_default_queue)))

    def close(self) -> None:
        """Close the connection to the broker's Redis."""
        self.redis.close()
