"""The Redis keys of a job beside Celery's result: its record (kind, submission time, written by the web) and its
deliveries (when and where a worker took it; more than one means it was redelivered after its worker died)."""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

import redis

from worker.config import RESULT_TTL_S

RECORD = "strategist:job:{job_id}"
DELIVERIES = "strategist:job:{job_id}:deliveries"


def record_delivery(client: redis.Redis, job_id: str, worker: str | None = None, trace_id: str | None = None) -> None:
    """Append a delivery of the job (now, this worker and process, the trace it runs in) to its list."""
    key = DELIVERIES.format(job_id=job_id)
    entry = {"at": time.time(), "worker": worker or socket.gethostname(), "pid": os.getpid(), "trace_id": trace_id}
    pipe = client.pipeline()
    pipe.rpush(key, json.dumps(entry))
    pipe.expire(key, RESULT_TTL_S)
    pipe.execute()


def deliveries(client: redis.Redis, job_id: str) -> list[dict[str, Any]]:
    """Return the job's deliveries, first first."""
    return [json.loads(raw) for raw in client.lrange(DELIVERIES.format(job_id=job_id), 0, -1)]
