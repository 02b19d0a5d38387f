"""Jobs whose message the broker lost are sent again (worker/reconcile.py), and only those.

kombu's Redis transport loses a message when its worker dies between taking it off the queue and recording it as
unacknowledged; here the loss is made by hand, as that BRPOP does (RPOP of the queue), on a real Redis with no
worker running. The sweep's clock is the ``now`` it is given.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis

from providers.config import load_settings
from providers.testing import redis_servers
from worker.app import create_celery
from worker.config import QUEUE
from worker.jobs import Jobs
from worker.reconcile import UNACKED, UNFINISHED, reconcile
from worker.records import RECORD

GRACE_S = 60.0
REQUEST = {"request": {"query": "Fix the grammar: the voters is angry.", "depth": "quick"}, "caller_key": None}


@pytest.fixture()
def jobs(redis_server: redis_servers.RedisServer, tmp_path: Any) -> Iterator[Jobs]:
    env = {"REDIS_URL": f"{redis_server.url}/0", "STRATEGIST_DATA_DIR": str(tmp_path)}
    client = Jobs(create_celery(load_settings(env), env))
    yield client
    client.close()


def queued_ids(client: redis.Redis) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange(QUEUE, 0, -1)]


def submitted(jobs: Jobs, job_id: str) -> float:
    job, created = jobs.submit("analysis", REQUEST, job_id=job_id)
    assert created
    return job.submitted_at


def test_a_job_whose_message_was_taken_and_lost_is_sent_again_with_its_arguments(jobs: Jobs) -> None:
    sent_at = submitted(jobs, "lost")
    raw = jobs.redis.rpop(QUEUE)  # a worker's BRPOP, and then the worker died
    assert isinstance(raw, bytes)
    taken = json.loads(raw)
    assert queued_ids(jobs.redis) == []
    # Not before the grace: the message may be between a live worker's BRPOP and its unacked record.
    assert reconcile(jobs.app, jobs.redis, sent_at + GRACE_S / 2, GRACE_S) == []
    assert reconcile(jobs.app, jobs.redis, sent_at + GRACE_S * 2, GRACE_S) == ["lost"]
    again = json.loads(jobs.redis.lrange(QUEUE, 0, -1)[0])
    assert again["headers"]["id"] == "lost" and again["headers"]["task"] == taken["headers"]["task"]
    args, kwargs, _ = json.loads(base64.b64decode(again["body"]))
    assert [args, kwargs] == json.loads(base64.b64decode(taken["body"]))[:2]
    # Sent again now: the next sweep gives the new message its grace too.
    assert reconcile(jobs.app, jobs.redis, sent_at + GRACE_S * 2, GRACE_S) == []


def test_a_job_still_queued_or_held_by_a_worker_is_left_alone(jobs: Jobs) -> None:
    sent_at = submitted(jobs, "waiting")
    submitted(jobs, "held")
    # A worker took "held" and recorded it as unacknowledged (prefetched, or running with late acks).
    queued = cast(list[bytes], jobs.redis.lrange(QUEUE, 0, -1))
    held = next(raw.decode() for raw in queued if json.loads(raw)["headers"]["id"] == "held")
    jobs.redis.lrem(QUEUE, 1, held)
    jobs.redis.hset(UNACKED, "tag-1", json.dumps([json.loads(held), "", QUEUE]))
    assert reconcile(jobs.app, jobs.redis, sent_at + 3600, GRACE_S) == []
    assert queued_ids(jobs.redis) == ["waiting"]


@pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")  # Celery's Redis backend
def test_finished_and_forgotten_jobs_leave_the_unfinished_set_without_being_sent(jobs: Jobs) -> None:
    sent_at = submitted(jobs, "done")
    submitted(jobs, "expired")
    jobs.redis.delete(QUEUE)  # both messages consumed
    jobs.app.backend.store_result("done", {"answer": "ok"}, "SUCCESS")
    jobs.redis.delete(RECORD.format(job_id="expired"))  # its record outlived (a day)
    assert reconcile(jobs.app, jobs.redis, sent_at + 3600, GRACE_S) == []
    assert queued_ids(jobs.redis) == [] and jobs.redis.zcard(UNFINISHED) == 0
