"""Send again the jobs whose message the broker lost.

Why hand-written: kombu's Redis transport takes a message off the queue (BRPOP) before it writes it to its
``unacked`` hash, and a worker killed between the two loses the message for good: no visibility timeout brings it
back, because nothing records it (kombu#305 and celery#7950, both open). ``bench/load.py`` met it: one job of 200
stayed queued forever after a worker was SIGKILLed. Celery has no reconciliation of its own, so the jobs' records
(worker/jobs.py) keep what is needed to send a job again, and an unfinished job is tracked in a sorted set by the
time it was sent.

A job is lost when it is unfinished, was sent more than ``grace_s`` ago, and its message is nowhere: not in the
queue, not in ``unacked`` (where a worker's prefetched and running messages stay until acknowledged, late acks).
It is then sent again under its own id; tasks are idempotent by thread (worker/tasks.py: a redelivery resumes the
thread from its checkpoint, or returns a finished one's result), so a rare duplicate costs no provider call twice.
One sweep at a time runs in each broker (a Redis lock); every worker process runs it on a timer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import redis
from celery import Celery
from celery.result import AsyncResult

from worker.config import QUEUE
from worker.records import RECORD

log = logging.getLogger("strategist.worker")
# Unfinished jobs by when they were (last) sent: written on submit, dropped once the sweep finds them finished.
UNFINISHED = "strategist:jobs:unfinished"
LOCK = "strategist:jobs:reconcile"
# kombu's Redis transport: the hash of delivered, unacknowledged messages (tag -> [message, exchange, key]).
UNACKED = "unacked"
FINISHED = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


def track(pipe: Any, job_id: str, sent_at: float) -> None:
    """Add a sent job to the unfinished set, in the caller's pipeline."""
    pipe.zadd(UNFINISHED, {job_id: sent_at})


def _task_id(message: Any) -> str | None:
    try:
        return str(message["headers"]["id"])
    except (KeyError, TypeError):
        return None  # not a Celery task message: not one of ours


def _in_flight(client: redis.Redis) -> set[str]:
    """Return the ids of the task messages the broker holds: queued, or delivered and not yet acknowledged."""
    queued = [json.loads(raw) for raw in client.lrange(QUEUE, 0, -1)]
    unacked = [json.loads(raw)[0] for raw in client.hvals(UNACKED)]
    return {found for message in queued + unacked if (found := _task_id(message)) is not None}


def reconcile(app: Celery, client: redis.Redis, now: float, grace_s: float) -> list[str]:
    """Send again every job lost by the broker (see the module's docstring); return their ids.

    Finished jobs leave the unfinished set here, and so do jobs whose record has expired.
    """
    found = cast(list[bytes], client.zrangebyscore(UNFINISHED, "-inf", now - grace_s))
    candidates = [raw.decode() for raw in found]
    if not candidates:
        return []
    # Read whole, once per sweep with candidates: a backlog costs one read of the queue a sweep, by one sweeper.
    held = _in_flight(client)
    resent = []
    for job_id in candidates:
        raw_record = client.get(RECORD.format(job_id=job_id))
        state = AsyncResult(job_id, app=app).state
        if raw_record is None or state in FINISHED:
            client.zrem(UNFINISHED, job_id)
            continue
        if job_id in held:
            continue
        record = json.loads(raw_record)
        # Finished between the two reads (its ack removed the message): not lost.
        if AsyncResult(job_id, app=app).state in FINISHED:
            continue
        log.warning("job %s: its message is in no queue and no worker holds it; sending it again", job_id)
        app.send_task(record["task"], kwargs=record["kwargs"], task_id=job_id)
        client.zadd(UNFINISHED, {job_id: now})
        resent.append(job_id)
    return resent


def start_sweeper(
    app: Celery, grace_s: float, every_s: float, clock: Callable[[], float] = time.time
) -> threading.Thread:
    """Run ``reconcile`` every ``every_s`` in a daemon thread, one sweeper at a time per broker."""
    client = redis.Redis.from_url(str(app.conf.broker_url))

    def sweep_forever() -> None:
        while True:
            time.sleep(every_s)
            try:
                if client.set(LOCK, "1", nx=True, ex=max(1, int(every_s))):
                    reconcile(app, client, clock(), grace_s)
            except redis.RedisError as exc:  # the broker restarting: the next sweep tries again
                log.warning("job reconciliation skipped: %s", exc)

    thread = threading.Thread(target=sweep_forever, name="strategist-reconcile", daemon=True)
    thread.start()
    return thread
