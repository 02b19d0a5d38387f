"""Ward briefings: latency by depth, cached and 304 answers server-side, single flight, cost against all-premium.

Fake providers answer with realistic latencies and token counts, scaled down by ``SCALE`` so the run takes a
minute (every target below is a ratio or a server-side time, which the scale does not change):

- research (Perplexity): lognormal around 2.0 s (sigma 0.35), 350 tokens in, 450 out, with citations;
- writer (Gemini): lognormal around 6.0 s (sigma 0.25), 3,500 tokens in, 1,800 out;
- checker (Perplexity, deep): lognormal around 3.0 s.

Measured:

1. briefing latency p50/p95 by depth (fresh analyses), and for each standard briefing the ratio of its latency
   to (its slowest single provider call + its writer call): the research runs in parallel, so the target is
   p95 <= 1.5;
2. a cached hit and a 304 answer, timed inside the WSGI app (the app's own handling, no network): target
   p95 <= 5 ms;
3. 100 concurrent requests for one uncached ward: how many analyses ran (must be 1);
4. cost per briefing against the all-premium path (every call at the premium price, plus search grounding).

Run: ``PYTHONPATH=. .venv/bin/python bench/briefing.py``. Prints one table and exits 0.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langgraph.checkpoint.memory import InMemorySaver

import app as app_module
from graphs.briefing_result import BriefingResult
from graphs.service import Orchestrator
from graphs.stores.briefing_cache import SqliteBriefingCache
from graphs.ward_reports import WardReports
from providers.registry import ProviderRegistry
from providers.testing import fake_registry, reply
from providers.testing.briefings import RESEARCH_SOURCES, draft_json, verdicts_json

SCALE = 0.1
RUNS = {"quick": 12, "standard": 20, "deep": 10}
HITS = 1000
CONCURRENT = 100


def _slow(median_s: float, sigma: float, text: Callable[[], str], tokens: tuple[int, int], **kw: Any) -> Any:
    rng = random.Random(7)
    lock = threading.Lock()

    def answer(_messages: list[BaseMessage]) -> AIMessage:
        with lock:
            wait = rng.lognormvariate(0, sigma) * median_s * SCALE
        time.sleep(wait)
        return reply(text(), tokens=tokens, **kw)

    return answer


def registry() -> ProviderRegistry:
    def research_or_check(messages: list[BaseMessage]) -> AIMessage:
        prompt = "\n".join(str(m.content) for m in messages)
        if "fact-check" in prompt:
            return checker(messages)  # type: ignore[no-any-return]
        return research(messages)  # type: ignore[no-any-return]

    research = _slow(
        2.0,
        0.35,
        lambda: "Residents report irregular water supply and delayed road works.",
        (350, 450),
        citations=RESEARCH_SOURCES,
    )
    checker = _slow(3.0, 0.25, lambda: verdicts_json(8), (2500, 300))
    writer = _slow(6.0, 0.25, lambda: draft_json(items=5), (3500, 1800))
    return fake_registry({"perplexity": [research_or_check], "gemini": [writer]})


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def briefing_latencies(reports: WardReports) -> tuple[dict[str, list[BriefingResult]], dict[str, list[float]]]:
    results: dict[str, list[BriefingResult]] = {}
    wall: dict[str, list[float]] = {}
    for depth, runs in RUNS.items():
        for i in range(runs):
            started = time.perf_counter()
            result = reports.run(f"Ward {depth} {i}", depth)  # type: ignore[arg-type]
            wall.setdefault(depth, []).append((time.perf_counter() - started) * 1000)
            results.setdefault(depth, []).append(result)
    return results, wall


def critical_path_ms(result: BriefingResult) -> float:
    gather = [a.latency_ms for a in result.attempts if a.role == "gather"]
    write = sum(a.latency_ms for a in result.attempts if a.role == "write")
    return max(gather, default=0.0) + write


class ServerTimer:
    """WSGI middleware that times the app's own handling of each request, body included (server-side)."""

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app
        self.times: list[float] = []
        self.cpu: list[float] = []  # the thread's CPU time: what the request costs, without waiting for a core

    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        started, cpu = time.perf_counter(), time.thread_time()
        body = list(self.wsgi_app(environ, start_response))
        self.times.append((time.perf_counter() - started) * 1000)
        self.cpu.append((time.thread_time() - cpu) * 1000)
        return body


def timed_requests(
    client: Any, timer: ServerTimer, path: str, headers: dict[str, str], n: int
) -> tuple[list[float], list[float], int]:
    timer.times.clear()
    timer.cpu.clear()
    status = 0
    for _ in range(n):
        status = client.get(path, headers=headers).status_code
    return list(timer.times), list(timer.cpu), status


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-briefing-"))
    reg = registry()
    reports = WardReports(reg, InMemorySaver(), SqliteBriefingCache(tmp / "briefings.sqlite"))
    results, wall = briefing_latencies(reports)

    orchestrator = Orchestrator(reg, None)
    flask_app = app_module.create_app(orchestrator, reports)
    timer = ServerTimer(flask_app.wsgi_app)
    flask_app.wsgi_app = timer  # type: ignore[method-assign]
    client = flask_app.test_client()
    path = "/api/v1/strategist/Jubilee Hills"
    first = client.get(path)
    etag = first.headers["ETag"]
    client.get(path)  # warm
    hit_ms, hit_cpu, hit_status = timed_requests(client, timer, path, {}, HITS)
    nm_ms, nm_cpu, nm_status = timed_requests(client, timer, path, {"If-None-Match": etag}, HITS)

    before = reports.analyses

    def one(_: int) -> str:
        return str(flask_app.test_client().get("/api/v1/strategist/Uncached Ward").headers.get("ETag"))

    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        etags = set(pool.map(one, range(CONCURRENT)))
    analyses = reports.analyses - before

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"ward briefings on fake providers (latencies x{SCALE}: research ~2.0 s, writer ~6.0 s, checker ~3.0 s); "
        f"load average {load:.1f} on {os.cpu_count()} cores"
    )
    print(f"{'measure':<52}{'p50':>10}{'p95':>10}{'target':>16}")
    for depth in RUNS:
        print(
            f"{'briefing ' + depth + f' ({RUNS[depth]} runs), ms':<52}"
            f"{statistics.median(wall[depth]):>10.0f}{pct(wall[depth], 0.95):>10.0f}{'':>16}"
        )
    ratios = [w / critical_path_ms(r) for w, r in zip(wall["standard"], results["standard"], strict=True)]
    path_ms = [critical_path_ms(r) for r in results["standard"]]
    label = "standard: slowest call + writer call, ms"
    print(f"{label:<52}{statistics.median(path_ms):>10.0f}{pct(path_ms, 0.95):>10.0f}")
    print(
        f"{'standard: latency / (slowest call + writer call)':<52}{statistics.median(ratios):>10.2f}"
        f"{pct(ratios, 0.95):>10.2f}{'p95 <= 1.5':>16}"
    )
    print(
        f"{'standard: p95 latency / p95 (slowest + writer)':<52}{'':>10}"
        f"{pct(wall['standard'], 0.95) / pct(path_ms, 0.95):>10.2f}{'<= 1.5':>16}"
    )
    print(
        f"{f'cached hit, server-side ms ({HITS}, status {hit_status})':<52}{statistics.median(hit_ms):>10.2f}"
        f"{pct(hit_ms, 0.95):>10.2f}{'p95 <= 5 ms':>16}"
    )
    print(
        f"{f'304 Not Modified, server-side ms ({HITS}, status {nm_status})':<52}{statistics.median(nm_ms):>10.2f}"
        f"{pct(nm_ms, 0.95):>10.2f}{'p95 <= 5 ms':>16}"
    )
    print(f"{'cached hit, server-side CPU ms':<52}{statistics.median(hit_cpu):>10.2f}{pct(hit_cpu, 0.95):>10.2f}")
    print(f"{'304 Not Modified, server-side CPU ms':<52}{statistics.median(nm_cpu):>10.2f}{pct(nm_cpu, 0.95):>10.2f}")
    print(
        f"{f'{CONCURRENT} concurrent requests, one uncached ward':<52}"
        f"{f'{analyses} analysis, {len(etags)} ETag':>20}{'1 analysis':>16}"
    )
    print()
    print(f"{'cost per briefing':<28}{'ours $':>10}{'all-premium $':>15}{'saved':>8}")
    for depth, rs in results.items():
        ours = statistics.mean(r.cost_usd for r in rs)
        premium = statistics.mean(r.baseline_cost_usd for r in rs)
        print(f"{depth:<28}{ours:>10.4f}{premium:>15.4f}{(1 - ours / premium) * 100:>7.0f}%")


if __name__ == "__main__":
    main()
