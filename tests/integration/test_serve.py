"""The production shape, with real processes: `strategist serve` (gunicorn, 2 processes x 4 threads) and a
`strategist worker` over a Redis the test starts. A client submits an analysis job over HTTP (202 and the job's
URL), watches its progress as server-sent events relayed from the worker through Redis pub/sub, reads the result,
and scrapes ``/metrics``: the web's request counts and the worker's analysis, provider-call, spend and queue-wait
metrics add up in one multiprocess directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from providers.testing import redis_servers
from providers.testing.checker import verdict_text
from providers.testing.servers import FakeGemini, FakePerplexity, Reply
from worker.testing import http_ready, processes, scrubbed_env, wait_until

ROOT = Path(__file__).resolve().parents[2]
API = "/api/v1/strategist"
QUERY = "Design a 12-week mobilisation plan for Jubilee Hills with budget trade-offs and risks"
PREMIUM = Reply(text="Week 1-2: map every booth and name a captain. Week 3-6: door-to-door on water.\nConfidence: 0.7")
CHECK = Reply(text=verdict_text("Map the booths first and name captains, then canvass door to door.", ["supports"]))
WAIT_S = 180.0


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line.removeprefix("data: "))


def samples(text: str, name: str) -> list[tuple[str, float]]:
    """Return the (labels, value) samples of a metric in a Prometheus text exposition."""
    found = []
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            found.append((labels[len(name) :], float(value)))
    return found


def test_jobs_over_http_on_gunicorn_with_a_worker_and_metrics(
    redis_server: redis_servers.RedisServer, tmp_path: Path
) -> None:
    port = redis_servers.free_port()
    with FakeGemini() as gemini, FakePerplexity() as perplexity:
        gemini.script([PREMIUM])
        perplexity.script([CHECK])
        metrics_dir = tmp_path / "metrics"
        metrics_dir.mkdir()
        # No hedging: a fresh worker's first call can outlast the hedge delay on a loaded machine.
        config = tmp_path / "strategist.toml"
        config.write_text("[resilience.hedge]\nenabled = false\n")
        env = scrubbed_env(
            {
                "GEMINI_API_KEY": "test",
                "PERPLEXITY_API_KEY": "test",
                "GEMINI_BASE_URL": gemini.base_url,
                "PERPLEXITY_BASE_URL": perplexity.base_url,
                "LOCAL_MODEL_PATH": str(ROOT / "no-such-model.gguf"),
                "STRATEGIST_DATA_DIR": str(tmp_path / "data"),
                "REDIS_URL": f"{redis_server.url}/0",
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                "STRATEGIST_CONFIG": str(config),
            }
        )
        base = f"http://127.0.0.1:{port}"
        with processes(env, tmp_path / "logs") as run, httpx.Client(base_url=base, timeout=60) as http:
            web = run.server(port, workers=2, threads=4)
            wait_until(lambda: http_ready(base + API + "/alive"), WAIT_S, "gunicorn to answer", [web])

            bad = http.post(API + "/jobs", json={"kind": "analysis"})
            assert bad.status_code == 400 and "query is required" in bad.json()["error"]
            # Over the contract's header limit (16 KiB): the contract's JSON 431, not gunicorn's plain-text 400.
            big = http.get(API + "/alive", headers={"X-Padding": "x" * 20_000})
            assert big.status_code == 431 and big.json()["error"] == "Request header fields too large"

            # Submitted before any worker runs: the job waits in the queue, and its events stream once it runs.
            submitted = http.post(API + "/jobs", json={"query": QUERY, "depth": "deep", "thread_id": "http-job"})
            assert submitted.status_code == 202, submitted.text
            body = submitted.json()
            assert body["job_id"] == "http-job" and body["state"] == "queued"
            assert submitted.headers["Location"] == f"{API}/jobs/http-job"
            assert len(submitted.headers["X-Trace-Id"]) == 32
            assert http.get(API + "/jobs/http-job").json()["state"] == "queued"
            assert http.get(API + "/jobs/nobody").status_code == 404

            with http.stream("GET", API + "/jobs/http-job/events", timeout=WAIT_S) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                worker = run.worker("w1")
                seen = []
                for event in sse_events(stream):
                    seen.append(event)
                    if event["event"] == "job":
                        break
            kinds = [e["event"] for e in seen]
            assert "attempt_start" in kinds and "attempt_end" in kinds and "complete" in kinds, kinds
            assert seen[-1]["state"] == "done" and seen[-1]["result"]["provider"] == "gemini"
            assert all(e.get("thread_id") in ("http-job", None) for e in seen)

            done = http.get(API + "/jobs/http-job").json()
            assert done["state"] == "done" and done["result"]["thread_id"] == "http-job"
            # The worker ran the job in the trace of the request that submitted it.
            assert done["trace_id"] == submitted.headers["X-Trace-Id"] and done["deliveries"] == 1
            again = http.post(API + "/jobs", json={"query": QUERY, "thread_id": "http-job"})
            assert again.status_code == 200 and again.json()["state"] == "done"
            assert (gemini.request_count, perplexity.request_count) == (1, 1)

            scraped = http.get("/metrics")
            assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
            text = scraped.text
            assert worker.popen.poll() is None
        requests = dict(samples(text, "strategist_http_requests_total"))
        assert requests['{method="POST",route="/api/v1/strategist/jobs",status="202"}'] == 1.0
        assert requests['{method="POST",route="/api/v1/strategist/jobs",status="400"}'] == 1.0
        analyses = dict(samples(text, "strategist_analyses_total"))
        assert analyses['{kind="analysis",outcome="answered",provider="gemini",tier="premium"}'] == 1.0
        calls = dict(samples(text, "strategist_provider_calls_total"))
        assert calls['{outcome="ok",provider="gemini",role="answer",tier="premium"}'] == 1.0
        assert calls['{outcome="ok",provider="perplexity",role="cross_check",tier="realtime"}'] == 1.0
        assert sum(v for _, v in samples(text, "strategist_spend_usd_total")) > 0
        assert dict(samples(text, "strategist_queue_wait_seconds_count"))['{kind="analysis"}'] == 1.0
        assert dict(samples(text, "strategist_jobs_submitted_total"))['{kind="analysis"}'] == 1.0
        circuits = dict(samples(text, "strategist_circuit_state"))
        assert circuits['{provider="gemini",state="closed"}'] == 1.0
        assert samples(text, "strategist_queue_depth") == [("", 0.0)]
        # No failover, hedge or retry happened (in multiprocess mode a family appears with its first sample).
        assert not samples(text, "strategist_failovers_total") and not samples(text, "strategist_retries_total")
