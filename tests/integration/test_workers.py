"""Analyses on real Celery workers: a `strategist worker` process (Redis broker and stores started by the test)
runs jobs against the fake provider servers; a worker SIGKILLed in the middle of a provider call loses nothing
but time: its job is delivered again and resumes from the checkpoint, and the fake servers' request counts prove
that no completed call was made twice.

Two ways of dying: the pool process running the job (the worker's main process sees it die and puts the job back
at once: ``task_reject_on_worker_lost``), and the whole worker, main process and pool together, as when its
machine goes (the job comes back after the broker's visibility timeout, to another worker). Waits are generous
and nothing measures wall-clock time.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from providers.config import load_settings
from providers.testing import redis_servers
from providers.testing.checker import verdict_text
from providers.testing.servers import FakeGemini, FakePerplexity, Hang, Reply
from worker.app import create_celery
from worker.config import QUEUE
from worker.jobs import Job, Jobs
from worker.reconcile import UNFINISHED
from worker.testing import Processes, processes, scrubbed_env, wait_until

ROOT = Path(__file__).resolve().parents[2]
QUERY = "Design a 12-week mobilisation plan for Jubilee Hills with budget trade-offs and risks"
PREMIUM = Reply(text="Week 1-2: map every booth and name a captain. Week 3-6: door-to-door on water.\nConfidence: 0.7")
CHECK = Reply(
    text=verdict_text(
        "Map the booths first and name captains, then canvass door to door on water supply.", ["supports"] * 2
    )
)
# Generous: a loaded 2-core machine takes several seconds to start a worker; a healthy run never waits this long.
WAIT_S = 180.0


@pytest.fixture()
def fakes() -> Iterator[tuple[FakeGemini, FakePerplexity]]:
    with FakeGemini() as gemini, FakePerplexity() as perplexity:
        yield gemini, perplexity


# No hedging: on a loaded machine a fresh worker's first call can outlast the hedge delay, and a hedge would
# make the call counts depend on timing.
NO_HEDGE = "[resilience.hedge]\nenabled = false\n"


def cluster_env(
    fakes: tuple[FakeGemini, FakePerplexity],
    server: redis_servers.RedisServer,
    tmp_path: Path,
    config: str = "",
    **extra: str,
) -> dict[str, str]:
    gemini, perplexity = fakes
    config_file = tmp_path / "strategist.toml"
    config_file.write_text(NO_HEDGE + config)
    return scrubbed_env(
        {
            "GEMINI_API_KEY": "test",
            "PERPLEXITY_API_KEY": "test",
            "GEMINI_BASE_URL": gemini.base_url,
            "PERPLEXITY_BASE_URL": perplexity.base_url,
            "LOCAL_MODEL_PATH": str(ROOT / "no-such-model.gguf"),
            "STRATEGIST_DATA_DIR": str(tmp_path / "data"),
            "REDIS_URL": f"{server.url}/0",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
            "STRATEGIST_CONFIG": str(config_file),
            **extra,
        }
    )


def jobs_for(env: dict[str, str]) -> Jobs:
    return Jobs(create_celery(load_settings(env), env))


def submit(jobs: Jobs, thread_id: str, depth: str = "deep") -> Job:
    job, created = jobs.submit(
        "analysis", {"request": {"query": QUERY, "depth": depth}, "caller_key": None}, job_id=thread_id
    )
    assert created and job.state == "queued"
    return job


def finished(jobs: Jobs, job_id: str, run: Processes) -> Job:
    box: dict[str, Job] = {}

    def done() -> bool:
        job = jobs.get(job_id)
        assert job is not None and job.job_id == job_id, f"the job store lost job {job_id}"
        box["job"] = job
        return job.state in ("done", "failed")

    wait_until(done, WAIT_S, f"job {job_id} to finish", [p for p in run.started if p.popen.poll() is None])
    return box["job"]


def attempt_keys(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(a["provider"], a["role"], a["outcome"]) for a in result["attempts"]]


def test_a_worker_process_runs_an_analysis_job(
    redis_server: redis_servers.RedisServer, fakes: tuple[FakeGemini, FakePerplexity], tmp_path: Path
) -> None:
    gemini, perplexity = fakes
    gemini.script([PREMIUM])
    perplexity.script([CHECK])
    env = cluster_env(fakes, redis_server, tmp_path)
    jobs = jobs_for(env)
    metrics_port = redis_servers.free_port()
    with processes(env, tmp_path / "logs") as run:
        run.worker("w1", 1, "prefork", "--metrics-port", str(metrics_port))
        submit(jobs, "job-one")
        job = finished(jobs, "job-one", run)
        assert job.state == "done", job.error
        assert job.result is not None
        assert job.result["thread_id"] == "job-one" and job.result["provider"] == "gemini"
        assert attempt_keys(job.result) == [("gemini", "answer", "ok"), ("perplexity", "cross_check", "ok")]
        assert (gemini.request_count, perplexity.request_count) == (1, 1)
        assert len(job.deliveries) == 1 and job.queue_wait_s is not None and job.finished_at is not None
        # Submitting the same id again is the same job, not a second analysis.
        again, created = jobs.submit("analysis", {"request": {"query": QUERY}, "caller_key": None}, job_id="job-one")
        assert not created and again.state == "done"
        # A worker on a machine of its own serves its metrics itself (--metrics-port).
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text
        assert (
            'strategist_analyses_total{kind="analysis",outcome="answered",provider="gemini",tier="premium"} 1.0'
            in scraped
        )
    assert (gemini.request_count, perplexity.request_count) == (1, 1)
    jobs.close()


def test_a_pool_process_killed_mid_call_is_redelivered_and_resumes_without_repeating_a_call(
    redis_server: redis_servers.RedisServer, fakes: tuple[FakeGemini, FakePerplexity], tmp_path: Path
) -> None:
    gemini, perplexity = fakes
    # Premium answers; the cross-check hangs until the pool process running it is killed; asked again, it answers.
    gemini.script([PREMIUM])
    perplexity.script([Hang(), CHECK])
    env = cluster_env(fakes, redis_server, tmp_path)
    jobs = jobs_for(env)
    with processes(env, tmp_path / "logs") as run:
        worker = run.worker("w1")
        submit(jobs, "job-killed")
        wait_until(lambda: perplexity.request_count >= 1, WAIT_S, "the cross-check request", [worker])
        pool = worker.children()
        assert len(pool) == 1, pool
        os.kill(pool[0], signal.SIGKILL)
        job = finished(jobs, "job-killed", run)
    assert job.state == "done", job.error
    assert job.result is not None
    # The premium answer completed before the kill: not asked again. The killed cross-check is asked again.
    assert (gemini.request_count, perplexity.request_count) == (1, 2)
    assert attempt_keys(job.result) == [("gemini", "answer", "ok"), ("perplexity", "cross_check", "ok")]
    assert perplexity.pending == 0
    assert len(job.deliveries) == 2 and job.deliveries[0]["pid"] != job.deliveries[1]["pid"]
    jobs.close()


def test_a_whole_worker_killed_mid_call_loses_its_job_to_another_worker_after_the_visibility_timeout(
    redis_server: redis_servers.RedisServer, fakes: tuple[FakeGemini, FakePerplexity], tmp_path: Path
) -> None:
    gemini, perplexity = fakes
    gemini.script([PREMIUM])
    perplexity.script([Hang(), CHECK])
    # Short deadlines, so the visibility timeout (above the longest deadline) is short too.
    deadlines = "[deadlines]\nquick = 10.0\nstandard = 15.0\ndeep = 20.0\n"
    env = cluster_env(fakes, redis_server, tmp_path, deadlines, STRATEGIST_VISIBILITY_TIMEOUT="25")
    jobs = jobs_for(env)
    with processes(env, tmp_path / "logs") as run:
        first = run.worker("w1")
        submit(jobs, "job-orphaned")
        wait_until(lambda: perplexity.request_count >= 1, WAIT_S, "the cross-check request", [first])
        first.kill_all()
        second = run.worker("w2")
        job = finished(jobs, "job-orphaned", run)
        assert second.popen.poll() is None
    assert [d["worker"].split("@")[0] for d in job.deliveries] == ["w1", "w2"]
    assert job.state == "done", job.error
    assert job.result is not None
    assert (gemini.request_count, perplexity.request_count) == (1, 2)
    assert attempt_keys(job.result) == [("gemini", "answer", "ok"), ("perplexity", "cross_check", "ok")]
    jobs.close()


def test_a_job_whose_message_the_broker_lost_is_sent_again_by_a_workers_sweep(
    redis_server: redis_servers.RedisServer, fakes: tuple[FakeGemini, FakePerplexity], tmp_path: Path
) -> None:
    """kombu's Redis transport loses a message whose worker dies between its BRPOP and its unacked record
    (bench/load.py lost one job in 200 so); the workers' sweep (worker/reconcile.py) sends such a job again."""
    gemini, perplexity = fakes
    gemini.script([PREMIUM])
    perplexity.script([CHECK])
    # A short visibility timeout makes the sweep frequent (every tenth of it).
    deadlines = "[deadlines]\nquick = 10.0\nstandard = 15.0\ndeep = 20.0\n"
    env = cluster_env(fakes, redis_server, tmp_path, deadlines, STRATEGIST_VISIBILITY_TIMEOUT="25")
    jobs = jobs_for(env)
    submit(jobs, "job-lost")
    assert jobs.queue_depth() == 1
    jobs.redis.rpop(QUEUE)  # taken off the queue by a worker that then died
    assert jobs.queue_depth() == 0
    jobs.redis.zadd(UNFINISHED, {"job-lost": 0.0})  # and long ago: past the sweep's grace
    with processes(env, tmp_path / "logs") as run:
        run.worker("w1")
        job = finished(jobs, "job-lost", run)
    assert job.state == "done", job.error
    assert (job.result or {}).get("thread_id") == "job-lost" and len(job.deliveries) == 1
    assert (gemini.request_count, perplexity.request_count) == (1, 1)
    jobs.close()


def test_submitting_a_job_without_waiting_for_it_records_it_queued(
    redis_server: redis_servers.RedisServer, fakes: tuple[FakeGemini, FakePerplexity], tmp_path: Path
) -> None:
    jobs = jobs_for(cluster_env(fakes, redis_server, tmp_path))
    assert jobs.get("nobody") is None
    before = time.time()
    submit(jobs, "waiting")
    job = jobs.get("waiting")
    assert job is not None and job.state == "queued" and job.submitted_at >= before  # stamped when submitted
    assert jobs.queue_depth() == 1
    jobs.close()
