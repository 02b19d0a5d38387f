"""Prometheus metrics of the process: HTTP requests, analyses, provider calls, failovers, hedges, retries, spend,
briefing-cache hits and the job queue.

Safe under gunicorn and Celery (several processes): with ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus_client keeps
each process's values in files there and ``/metrics`` adds them up (``multiprocess`` mode). The client picks its
storage when it is first imported, so it is imported on first use here, never at import: `strategist serve` and
`strategist worker` set the directory (``prepare_multiprocess``) before anything is recorded.

Recording never raises: a metric must not stop an analysis.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("strategist.metrics")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: provider calls and analyses run from tens of milliseconds (local, cached) to minutes (deep briefings).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 90.0, 180.0, 300.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 90.0, 180.0)


def prepare_multiprocess(default_dir: Path, *, clean: bool = True) -> Path:
    """Point prometheus_client at a multiprocess directory (``PROMETHEUS_MULTIPROC_DIR`` or ``default_dir``).

    ``clean`` empties it: a new server or worker must not add up values left by processes of an earlier run.
    Call before anything records a metric, once per server or worker (not per forked child).
    """
    path = Path(os.environ.get(MULTIPROC_ENV) or default_dir)
    if clean and path.exists():
        for db in path.glob("*.db"):
            db.unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def multiprocess_dir() -> str | None:
    """Return the multiprocess directory in force, if any."""
    return os.environ.get(MULTIPROC_ENV) or None


def mark_process_dead(pid: int) -> None:
    """Drop a dead process's live gauges (gunicorn's child_exit, Celery's worker_process_shutdown)."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.http_requests = Counter(
            "strategist_http_requests", "HTTP requests answered", ["route", "method", "status"]
        )
        self.http_seconds = Histogram(
            "strategist_http_request_duration_seconds", "HTTP request latency", ["route"], buckets=HTTP_BUCKETS
        )
        self.analyses = Counter(
            "strategist_analyses", "Analyses and briefings run to their end", ["kind", "tier", "provider", "outcome"]
        )
        self.analysis_seconds = Histogram(
            "strategist_analysis_duration_seconds", "Analysis run time", ["kind", "tier"], buckets=LATENCY_BUCKETS
        )
        self.provider_calls = Counter(
            "strategist_provider_calls", "Provider calls", ["provider", "tier", "role", "outcome"]
        )
        self.provider_seconds = Histogram(
            "strategist_provider_call_duration_seconds",
            "Provider call latency",
            ["provider", "tier"],
            buckets=LATENCY_BUCKETS,
        )
        self.failovers = Counter("strategist_failovers", "Answers asked of the next provider after a failure", ["kind"])
        self.hedges = Counter("strategist_hedges", "Hedged calls started in parallel with a slow one", ["provider"])
        self.retries = Counter("strategist_retries", "Calls retried on the same provider", ["provider"])
        self.spend = Counter("strategist_spend_usd", "Provider spend in USD", ["provider", "tier"])
        self.cache = Counter("strategist_briefing_cache_requests", "Briefing cache look-ups", ["result"])
        self.jobs = Counter("strategist_jobs_submitted", "Jobs submitted to the workers", ["kind"])
        self.queue_wait = Histogram(
            "strategist_queue_wait_seconds",
            "Time a job waited in the queue before a worker took it",
            ["kind"],
            buckets=LATENCY_BUCKETS,
        )
        self.redeliveries = Counter(
            "strategist_job_redeliveries", "Jobs delivered again (their worker died, or a retry)", ["kind"]
        )


_CREATE_LOCK = threading.Lock()


@functools.cache
def _create() -> _Metrics:
    return _Metrics()


def _metrics() -> _Metrics:
    # Under a lock: functools.cache does not stop two threads that arrive first from both building the metrics,
    # and the second registration fails (a process's first concurrent requests lost their metrics; bench/chaos.py).
    with _CREATE_LOCK:
        return _create()


def _safely(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            log.warning("could not record a metric", exc_info=True)

    return wrapper


@_safely
def observe_http(route: str, method: str, status: int, seconds: float) -> None:
    """Count one HTTP request by route template (never the raw path: wards would explode the label set)."""
    m = _metrics()
    m.http_requests.labels(route, method, str(status)).inc()
    m.http_seconds.labels(route).observe(seconds)


@_safely
def observe_run(kind: str, result: Mapping[str, Any] | None, seconds: float, since: float | None = None) -> None:
    """Count a finished analysis or briefing (its result as JSON data) and the provider calls it made.

    ``since``: the wall-clock time this run started; attempts made before it (by the run a resume continues)
    were counted by that run and are skipped.
    """
    if not result:
        return
    m = _metrics()
    attempts = [a for a in result.get("attempts", []) if since is None or a.get("started_at", since) >= since]
    provider, tier = _answered_by(kind, result)
    answered = result.get("answer") is not None if kind == "analysis" else result.get("briefing") is not None
    m.analyses.labels(kind, tier, provider, "answered" if answered else "no_answer").inc()
    m.analysis_seconds.labels(kind, tier).observe(seconds)
    _observe_attempts(m, kind, attempts)


def _answered_by(kind: str, result: Mapping[str, Any]) -> tuple[str, str]:
    if kind == "analysis":
        return str(result.get("provider") or "none"), str(result.get("tier") or "none")
    writer = next(
        (a for a in reversed(result.get("attempts", [])) if a.get("role") == "write" and a.get("outcome") == "ok"),
        None,
    )
    return (str(writer["provider"]), str(writer["tier"])) if writer else ("none", "none")


def _observe_attempts(m: _Metrics, kind: str, attempts: Iterable[Mapping[str, Any]]) -> None:
    previous: str | None = None
    seen: set[tuple[str, str]] = set()
    for a in attempts:
        provider, tier, role = str(a.get("provider")), str(a.get("tier")), str(a.get("role"))
        m.provider_calls.labels(provider, tier, role, str(a.get("outcome"))).inc()
        m.provider_seconds.labels(provider, tier).observe(float(a.get("latency_ms") or 0.0) / 1000)
        m.spend.labels(provider, tier).inc(max(0.0, float(a.get("cost_usd") or 0.0)))
        if a.get("hedge"):
            m.hedges.labels(provider).inc()
        elif (provider, role) in seen:
            m.retries.labels(provider).inc()
        if role in ("answer", "write") and previous is not None and previous != provider and not a.get("hedge"):
            m.failovers.labels(kind).inc()
        if role in ("answer", "write"):
            previous = provider
        seen.add((provider, role))


@_safely
def observe_cache(hit: bool) -> None:
    """Count one briefing-cache look-up."""
    _metrics().cache.labels("hit" if hit else "miss").inc()


@_safely
def observe_job_submitted(kind: str) -> None:
    """Count one job handed to the queue."""
    _metrics().jobs.labels(kind).inc()


@_safely
def observe_queue_wait(kind: str, enqueued_at: float | None, retries: int, redelivered: bool) -> None:
    """Record how long a job waited for a worker (first delivery only) and count redeliveries."""
    import time

    m = _metrics()
    if redelivered or retries:
        m.redeliveries.labels(kind).inc()
    elif enqueued_at is not None:
        m.queue_wait.labels(kind).observe(max(0.0, time.time() - enqueued_at))


def exposition(extra: Iterable[Any] = ()) -> tuple[bytes, str]:
    """Return the text exposition of every process's metrics (multiprocess) or this one's, plus ``extra``
    collectors (read at scrape time: circuit states, queue depth)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client import multiprocess as mp

    _metrics()  # every family is known to the scrape, even before its first sample
    if multiprocess_dir():
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY

        registry = CollectorRegistry()
        registry.register(_Everything(REGISTRY))
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Everything:
    """The default registry's samples, adapted so a per-scrape registry can hold them with scrape-time extras."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Any]:
        return self.registry.collect()  # type: ignore[no-any-return]


def clear_dir(path: Path) -> None:
    """Remove a multiprocess directory (tests, benchmarks)."""
    shutil.rmtree(path, ignore_errors=True)
