"""Chaos benchmark: analyses through the HTTP app while the providers misbehave on a schedule.

What runs is what a deployment runs: ``create_app()`` over an ``Orchestrator`` with the embedded SQLite
checkpointer and ledger, served by a threaded WSGI server on a free port, and each analysis is one
``POST /api/v1/strategist/analyze``; latencies are end to end (request out -> response in, at the client).
Gemini and Perplexity are the real LangChain clients (``ChatGoogleGenerativeAI``, ``ChatPerplexity``) pointed at
the fake servers of providers/testing/servers.py, whose ``behaviour`` hook injects faults by schedule. Answers
state no confidence, so low-confidence answers are cross-checked (the fake servers answer a check in the verdict
schema). A hang is a true one: the server accepts the request and never answers. The local tier is a fake with the
real model's serialisation (one call at a time, a bounded queue, stoppable between "tokens"), because the real
model takes seconds a call; its latency is the schedule's.

Scenarios (``--scenarios``, comma-separated):

- ``healthy``: the reference for the two below: the same complex queries and latencies, no fault. A hang can cost
  no less than the answer and check a healthy request makes; the hung rows read against this one, in the same run.
- ``hung-primary-cold``: complex queries only (Gemini first); Gemini hangs on every call from the first request
  of a fresh process (no latency samples, no circuit history). Target: p95 <= 1.0 s.
- ``hung-primary``: the same after a warm start: Gemini answers for the first quarter, then hangs. Target: p95
  <= 1.0 s in steady state (the analyses started after the hang's onset: the first ``concurrency`` analyses
  started in it were in flight before any call could show it). The onset has its own row.
- ``random-20pct-hang``: every provider fails 20% of calls at random (500, 503, 429 with Retry-After, true hangs,
  dropped connections, malformed bodies, empty answers), latencies are log-normal with a long tail, and Gemini
  hangs on every call during the middle third. Target: 100% answered, p99 <= 3 s.
- ``429-storms``: Perplexity answers 429 with Retry-After 0.5-3 s during two storms, Gemini during one.
- ``skip-open-circuit``: Gemini's circuit is open; what skipping it costs (graph only, no HTTP). Target: < 10 ms.
- ``cli-exit``: ``strategist analyze --deadline 5`` in a fresh process with Gemini hanging: the time from the
  answer's last line on stdout to the process's exit. Target: < 1 s.

Each scenario prints one table: answered share and HTTP statuses, end-to-end p50/p95/p99, failover time, what
the calls did (hedges, aborted losers, cross-checks), the extra spend from hedging, circuits at the end.

Run: ``.venv/bin/python bench/chaos.py [--analyses 300] [--concurrency 8] [--scenarios ...] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

if __package__ in (None, ""):
    # Run as a script: make the repo root importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from werkzeug.serving import make_server

from app import create_app
from graphs.analysis import build_analysis_graph
from graphs.context import Context
from graphs.result import AnalysisResult
from graphs.service import Orchestrator
from graphs.stores import open_stores
from nodes.classify import classification_of
from nodes.policy.hedging import wait_for_settlements
from nodes.policy.query_classifier import QueryNeeds
from nodes.route import plan
from providers.base import ProviderAdapter
from providers.config import Settings, load_settings
from providers.errors import Overloaded, ProviderTimeout, ServerError
from providers.local.llamacpp import UNKNOWN_CALL_S
from providers.registry import ProviderRegistry
from providers.resilience.board import HealthBoard
from providers.resilience.breaker_store import BreakerPolicy, RedisBreakerStore
from providers.testing.servers import (
    Action,
    Delay,
    Drop,
    Empty,
    Fail,
    FakeGemini,
    FakePerplexity,
    Hang,
    Malformed,
    RecordedRequest,
    Reply,
    Source,
)

# The run is compressed into tens of seconds, so a circuit's open period is shortened from the default 30 s; the
# local fake answers in about 0.15 s, not the real model's seconds, so its "slow" (hedge_after_s) says so.
BENCH_CONFIG = """
[resilience.breaker]
open_s = 5.0
[providers.local]
hedge_after_s = 1.0
"""
QUERY_KINDS: dict[str, QueryNeeds] = {
    "complex": QueryNeeds.confident(0.04, "complex", "scenario"),  # chain: gemini -> perplexity -> local
    "fresh": QueryNeeds.confident(0.92, "moderate", "fact_lookup"),  # chain: perplexity -> gemini -> local
    "simple": QueryNeeds.confident(0.03, "simple", "summary"),  # chain: local -> gemini -> perplexity
}
# No stated confidence: the confidence cascade decides, and low-confidence answers are cross-checked.
ANSWER = "Booth-level turnout fell four points. Focus volunteers on the swing wards first."
VERDICT = json.dumps(
    {
        "answer": "Turnout fell about four points; the swing wards matter most.",
        "verdicts": [
            {"claim": 1, "verdict": "supports", "reason": "booth data"},
            {"claim": 2, "verdict": "supports", "reason": "the usual advice"},
        ],
    }
)
CHECK_MARKER = "checking another analyst's answer"
GEMINI_TOKENS = (300, 700, 700)  # a thinking model: thinking is billed as output
SOURCES = [Source(url="https://eci.gov.in/turnout-2024", title="ECI turnout", date="2026-11-20")]


# --- fault schedules -------------------------------------------------------------------------------------------


class Progress:
    """The share of the run's analyses started so far: fault windows are defined on it, not on wall time."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.started = 0
        self._lock = threading.Lock()

    def start_one(self) -> None:
        with self._lock:
            self.started += 1

    def __call__(self) -> float:
        return self.started / self.total


def lognormal_s(rng: random.Random, median_s: float, p99_s: float) -> float:
    """Draw a latency from a log-normal with the given median and 99th percentile."""
    sigma = math.log(p99_s / median_s) / 2.326
    return rng.lognormvariate(math.log(median_s), sigma)


def random_fault(rng: random.Random) -> Action:
    """Pick one failure of the mixed kinds a provider really produces."""
    kind = rng.random()
    if kind < 0.20:
        return Fail(status=500)
    if kind < 0.40:
        return Fail(status=503)
    if kind < 0.55:
        return Fail(status=429, retry_after=1)
    if kind < 0.65:
        return Hang()  # a true hang: the request is accepted and never answered
    if kind < 0.80:
        return Drop()
    if kind < 0.90:
        return Malformed()
    return Empty()


@dataclass
class Schedule:
    """What one provider does with each call, as a function of the run's progress."""

    median_s: float
    p99_s: float
    error_rate: float = 0.0
    down: tuple[float, float] | None = None  # progress window in which every call fails (503)
    hang_from: float | None = None  # progress from which every call hangs
    hang_window: tuple[float, float] | None = None  # progress window in which every call hangs
    storms: tuple[tuple[float, float], ...] = ()  # progress windows of 429 with Retry-After
    cites: bool = False
    in_process: bool = False  # the local tier: no network to hang on
    # Billed tokens of an answer (input, visible output, thinking), about what route estimates: the hedge budget
    # weighs estimated hedge costs against real spend, so toy token counts would starve it.
    tokens: tuple[int, int, int] = (300, 500, 0)
    rng: random.Random = field(default_factory=random.Random)

    def action(self, progress: float, check: bool = False) -> Action:
        if self.hang_from is not None and progress >= self.hang_from:
            return Hang()
        if self.hang_window is not None and self.hang_window[0] <= progress < self.hang_window[1]:
            return Hang()
        if self.down is not None and self.down[0] <= progress < self.down[1]:
            return Fail(status=503, message="The model is overloaded. Please try again later.")
        if any(start <= progress < end for start, end in self.storms):
            return Fail(status=429, retry_after=round(self.rng.uniform(0.5, 3.0), 1))
        latency = lognormal_s(self.rng, self.median_s, self.p99_s)
        if self.rng.random() < self.error_rate:
            fault = random_fault(self.rng)
            if isinstance(fault, Hang) and self.in_process:
                # An in-process model has no connection to hang on: its stall is a slow generation.
                return Delay(self.p99_s * 3, Reply(text=VERDICT if check else ANSWER))
            return fault if isinstance(fault, Hang) else Delay(latency / 3, fault)
        tokens_in, tokens_out, thinking = self.tokens
        answer = Reply(
            text=VERDICT if check else ANSWER,
            citations=SOURCES if self.cites else (),
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            thinking_tokens=thinking,
        )
        return Delay(latency, answer)

    def behaviour(self, progress: Progress) -> Callable[[int, RecordedRequest], Action]:
        return lambda _index, request: self.action(progress(), CHECK_MARKER in json.dumps(request.body))


class ChaosChat(BaseChatModel):
    """The local tier's stand-in: the schedule's latency and faults, with the real model's serialisation.

    One call at a time (the process has one llama.cpp context), at most ``queue_limit`` waiting (more are refused
    at once, as providers/local/llamacpp.py does), and a call stops between "tokens" (every 20 ms) once its
    caller is gone or its deadline passed.
    """

    schedule: Any
    progress: Any
    released: Any  # an Event set at shutdown, so hung calls end
    queue_limit: int = 4
    lock: Any = None
    state: Any = None  # [waiting, busy, latency_s]

    def model_post_init(self, __context: Any) -> None:
        self.lock = threading.Lock()
        self.state = [0, False, None]

    @property
    def _llm_type(self) -> str:
        return "chaos-local"

    def expected_wait_s(self) -> float:
        waiting, busy, latency = self.state
        return float((waiting + (1 if busy else 0)) * (latency if latency is not None else UNKNOWN_CALL_S))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        cancel: threading.Event = kwargs.get("cancel") or threading.Event()
        deadline: float = kwargs.get("deadline") or time.monotonic() + 3600
        if self.state[1] and self.state[0] >= self.queue_limit:
            raise Overloaded("local model queue full", retry_after_s=max(1.0, self.expected_wait_s()))
        self.state[0] += 1
        try:
            while not self.lock.acquire(timeout=0.02):
                if cancel.is_set() or time.monotonic() > deadline or self.released.is_set():
                    raise ProviderTimeout("left the local queue: caller gone or deadline passed")
        finally:
            self.state[0] -= 1
        self.state[1] = True
        started = time.monotonic()
        try:
            action = self.schedule.action(self.progress(), any(CHECK_MARKER in str(m.content) for m in messages))
            while isinstance(action, Delay):
                ends = time.monotonic() + action.seconds
                while time.monotonic() < ends:  # "tokens": stoppable every 20 ms
                    if cancel.is_set() or time.monotonic() > deadline or self.released.wait(0.02):
                        raise ProviderTimeout("local generation stopped between tokens")
                action = action.then
            if isinstance(action, Hang):
                while not (cancel.is_set() or time.monotonic() > deadline or self.released.wait(0.02)):
                    pass
                raise ProviderTimeout("local generation stopped between tokens")
            if isinstance(action, Fail):
                raise ServerError(f"HTTP {action.status}", retry_after_s=action.retry_after)
            if isinstance(action, Drop):
                raise ConnectionError("connection reset by peer")
            if isinstance(action, Malformed):
                raise ValueError("invalid JSON from the local server")
            text = "" if isinstance(action, Empty) else action.text if isinstance(action, Reply) else ANSWER
            message = AIMessage(
                content=text,
                usage_metadata={"input_tokens": 300, "output_tokens": 120, "total_tokens": 420},
                response_metadata={"finish_reason": "stop"},
            )
            return ChatResult(generations=[ChatGeneration(message=message)])
        finally:
            took = time.monotonic() - started
            latency = self.state[2]
            self.state[2] = took if latency is None else latency + 0.3 * (took - latency)
            self.state[1] = False
            self.lock.release()


class ChaosLocalAdapter(ProviderAdapter):
    """The local adapter over :class:`ChaosChat`: hands it the stop event and deadline, reports its queue."""

    def call_kwargs(self, stop: threading.Event, deadline: float) -> dict[str, Any]:
        return {"cancel": stop, "deadline": deadline}

    def expected_wait_s(self) -> float:
        chat = self.chat_model()
        return chat.expected_wait_s() if isinstance(chat, ChaosChat) else 0.0


# --- one scenario --------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    description: str
    gemini: Schedule
    perplexity: Schedule
    local: Schedule
    mix: dict[str, float]  # query kind -> share
    # Progress windows in which a fault is active, for the row "latency of analyses started during a fault".
    fault_windows: tuple[tuple[float, float], ...] = ()
    cloud: bool = True  # False: no cloud keys, only the local model can answer


@dataclass
class Outcome:
    kind: str
    progress: float  # share of the run started before this analysis
    result: AnalysisResult | None
    started: float  # wall clock
    ended: float
    status: int = 0  # HTTP status
    crash: str | None = None


class BenchOrchestrator(Orchestrator):
    """The service as deployed, except that the query's kind is read from its text (the bench's mix), not
    guessed by the classifier, so every scenario gets the chains it is about."""

    def _context(self, deadline_s: float | None = None, caller_key: str | None = None) -> Context:
        ctx = super()._context(deadline_s, caller_key)
        ctx.classifier = lambda text: QUERY_KINDS[next(k for k in QUERY_KINDS if f"{k} query" in text)]
        return ctx


@contextlib.contextmanager
def environment(
    scenario: Scenario, progress: Progress, data_dir: Path
) -> Iterator[tuple[ProviderRegistry, str, dict[str, str], Orchestrator]]:
    """Start the fake servers and the HTTP app (embedded SQLite checkpointer and ledger) on free ports; yield the
    registry, the app's base URL, the environment a CLI process would need and the app's orchestrator."""
    released = threading.Event()
    with (
        FakeGemini(behaviour=scenario.gemini.behaviour(progress)) as gemini,
        FakePerplexity(behaviour=scenario.perplexity.behaviour(progress)) as perplexity,
    ):
        config = data_dir / "bench.toml"
        config.write_text(BENCH_CONFIG)
        env = {
            "STRATEGIST_DATA_DIR": str(data_dir),
            "STRATEGIST_CONFIG": str(config),
            "GEMINI_API_KEY": "chaos",
            "GEMINI_BASE_URL": gemini.base_url,
            "PERPLEXITY_API_KEY": "chaos",
            "PERPLEXITY_BASE_URL": perplexity.base_url,
        }
        if not scenario.cloud:
            env = {k: v for k, v in env.items() if not k.endswith("_API_KEY")}
        settings = load_settings(env)
        local = local_adapter(settings, scenario.local, progress, released)
        registry = ProviderRegistry(settings, adapters={"local": local})
        with open_stores(settings) as stores:
            orchestrator = BenchOrchestrator(registry, stores.checkpointer, stores.ledger, stores.feedback)
            server = make_server("127.0.0.1", 0, create_app(orchestrator), threaded=True)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            try:
                yield registry, f"http://127.0.0.1:{server.server_port}", env, orchestrator
            finally:
                # Losers still settling write their real cost to the ledger: before it closes, not after.
                wait_for_settlements(SETTLE_WAIT_S)
                released.set()
                server.shutdown()
                server.server_close()


def local_adapter(settings: Settings, schedule: Schedule, progress: Progress, released: threading.Event) -> Any:
    ps = settings.providers["local"]
    chat = ChaosChat(schedule=schedule, progress=progress, released=released, queue_limit=ps.queue_limit)
    return ChaosLocalAdapter(
        name="local", tier="local", vendor="local", model=ps.model, chat_factory=lambda: chat, timeout_s=ps.timeout_s
    )


SETTLE_WAIT_S = 5.0  # at a scenario's end, for losers still settling (their provider's usual latency + the grace)
SHOW_SLOWEST = 0  # --show-slowest: print the attempts of the slowest analyses
OUTLIER_S = 3.0  # analyses slower than this are always printed (up to five)
_EXTRA_KEYS = ("analysis_type", "text_length", "analyzed_at", "ward")


def run_scenario(scenario: Scenario, analyses: int, concurrency: int, seed: int) -> list[str]:
    progress = Progress(analyses)
    rng = random.Random(seed)
    kinds = rng.choices(list(scenario.mix), weights=list(scenario.mix.values()), k=analyses)
    outcomes: list[Outcome] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        environment(scenario, progress, Path(tmp)) as (registry, base_url, _env, orchestrator),
        httpx.Client(base_url=base_url, timeout=300) as client,
    ):
        warm_up(registry)

        def one(index: int) -> Outcome:
            kind = kinds[index]
            progress.start_one()
            body = {
                "text": f"{kind} query {index}: what should the campaign do in Malakpet this week?",
                "query": "Answer the question.",
                "depth": "standard",
            }
            started = time.time()
            try:
                response = client.post("/api/v1/strategist/analyze", json=body)
                ended = time.time()
                payload = response.json()
                if response.status_code != 200:
                    error = f"HTTP {response.status_code}: {str(payload.get('error'))[:160]}"
                    # An overload's 503 names its thread: its attempts (skipped ones too) say why nothing answered.
                    unanswered = result_of(orchestrator, payload.get("thread_id"))
                    return Outcome(kind, index / analyses, unanswered, started, ended, response.status_code, error)
                for key in _EXTRA_KEYS:
                    payload.pop(key, None)
                result = AnalysisResult.model_validate(payload)
                return Outcome(kind, index / analyses, result, started, ended, response.status_code)
            except Exception as exc:  # a crash is an unanswered analysis, and the table says so
                return Outcome(kind, index / analyses, None, started, time.time(), crash=f"{type(exc).__name__}: {exc}")

        wall = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            outcomes = list(pool.map(one, range(analyses)))
        wall = time.perf_counter() - wall
        health: dict[str, str] = {name: registry.health.breaker(name).snapshot().state for name in registry.names()}
    return table(scenario, outcomes, concurrency, wall, health)


def result_of(orchestrator: Orchestrator, thread_id: object) -> AnalysisResult | None:
    """Return the result an analysis's last checkpoint holds (None without a thread id or a result)."""
    if not isinstance(thread_id, str):
        return None
    values = orchestrator.graph.get_state({"configurable": {"thread_id": thread_id}}).values
    return AnalysisResult.model_validate(values["result"]) if values.get("result") else None


def warm_up(registry: ProviderRegistry) -> None:
    """Build the clients (import the SDKs) before the clock starts. Nothing else: a cold scenario starts with no
    latency samples and no circuit history, and a warm one earns its history from its own first requests."""
    for name in ("gemini", "perplexity"):
        with contextlib.suppress(Exception):
            registry.adapter(name).chat_model()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def ms_row(values: list[float]) -> str:
    if not values:
        return "-"
    return (
        f"n={len(values)}  p50 {pct(values, 0.5) * 1000:.0f} ms  p95 {pct(values, 0.95) * 1000:.0f} ms  "
        f"p99 {pct(values, 0.99) * 1000:.0f} ms  max {max(values) * 1000:.0f} ms"
    )


def answered_row(outcomes: list[Outcome]) -> str:
    done = [o.ended - o.started for o in outcomes if o.result and o.result.answer]
    return f"{ms_row(done)}; answered {len(done)} / {len(outcomes)}"


def table(
    scenario: Scenario, outcomes: list[Outcome], concurrency: int, wall: float, health: dict[str, str]
) -> list[str]:
    answered = [o for o in outcomes if o.result is not None and o.result.answer is not None]
    latencies = [o.ended - o.started for o in outcomes]
    failover: list[float] = []
    failover_other: list[float] = []
    retries = hedges = cancelled = checks = skipped = silent_routes = 0
    spend = extra = 0.0
    by_provider: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for o in outcomes:
        if o.result is None:
            errors[o.crash or "?"] += 1
            continue
        r = o.result
        answers = [a for a in r.attempts if a.role == "answer"]
        checks += sum(1 for a in r.attempts if a.role == "cross_check")
        cancelled += sum(1 for a in answers if a.outcome == "cancelled")
        hedges += sum(1 for a in answers if a.hedge)
        # A duplicate hedge (the same provider again) is a hedge, not a retry.
        retries += sum(
            1 for a, b in itertools.pairwise(answers) if a.provider == b.provider and not (a.hedge or b.hedge)
        )
        skipped += any("circuit open" in reason for reason in r.routing.reasons)
        # With no fault (the healthy row), each of these is a false positive of the stall watch.
        silent_routes += any(step.silent for step in r.routing.chain)
        # What hedging added is the hedge calls' cost (see nodes/call_model.py: _record_group).
        extra += sum(a.cost_usd for a in r.attempts if a.hedge)
        spend += sum(a.cost_usd for a in r.attempts if not a.hedge)
        if r.answer is None:
            errors[(o.crash or r.error or "?")[:200]] += 1
            continue
        by_provider[r.provider or "?"] += 1
        failed = [a.started_at for a in answers if a.outcome != "ok" and a.started_at is not None]
        if failed:
            failover.append(o.ended - min(failed))
            if r.provider != answers[0].provider:
                failover_other.append(o.ended - min(failed))
    n = len(outcomes)
    in_fault = [o for o in outcomes if any(a <= o.progress < b for a, b in scenario.fault_windows)]
    # A fault's onset: the first `concurrency` analyses started in each window were in flight before any of them
    # could show the fault (a hang shows only once calls run past their usual latency). The rest is its steady
    # state, which issue 11's "in steady state" target reads.
    onset: list[Outcome] = []
    for start, end in scenario.fault_windows:
        onset += sorted((o for o in in_fault if start <= o.progress < end), key=lambda o: o.progress)[:concurrency]
    steady = [o for o in in_fault if o not in onset]
    statuses = Counter(o.status for o in outcomes)
    # When the served answer's call ended: the failover's share of the latency, before the cross-check's.
    ready = [
        max(a.started_at + a.latency_ms / 1000 for a in o.result.attempts if a.role == "answer" and a.started_at)
        - o.started
        for o in answered
        if o.result and any(a.role == "answer" and a.started_at for a in o.result.attempts)
    ]
    rows = [
        ("answered", f"{len(answered)} / {n} = {len(answered) / n:.2%}"),
        ("HTTP statuses", ", ".join(f"{k or 'no response'}: {v}" for k, v in sorted(statuses.items()))),
        ("end to end (request -> response), all", ms_row(latencies)),
        ("end to end, answered", ms_row([o.ended - o.started for o in answered])),
        ("request in -> answer's call ended (before any cross-check)", ms_row(ready)),
        ("end to end, analyses started during the fault", answered_row(in_fault)),
        *(
            [
                (f"  of which its onset (the first {concurrency} started in it)", answered_row(onset)),
                ("  of which its steady state (started after the onset)", answered_row(steady)),
            ]
            if scenario.fault_windows
            else []
        ),
        ("failover: first failure -> answer", ms_row(failover)),
        ("  of which answered by another provider", ms_row(failover_other)),
        ("answered by", ", ".join(f"{k} {v}" for k, v in by_provider.most_common())),
        (
            "answer attempts",
            f"{sum(len([a for a in o.result.attempts if a.role == 'answer']) for o in outcomes if o.result)} "
            f"({retries} same-provider retries, {hedges} hedges started, {cancelled} losers cancelled); "
            f"{checks} cross-checks",
        ),
        ("routes that skipped an open circuit", str(skipped)),
        ("routes that put a provider gone silent behind the others", str(silent_routes)),
        ("spend", f"${spend:.4f} + hedge calls ${extra:.4f} = {extra / spend if spend else 0:.2%} extra from hedging"),
        ("circuits at the end", ", ".join(f"{k} {v}" for k, v in health.items())),
        ("throughput", f"{n / wall:.1f} analyses/s ({wall:.1f} s wall, concurrency {concurrency})"),
    ]
    for error, count in errors.most_common(3):
        rows.append(("unanswered", f"{count} x {error}"))

    def calls_of(o: Outcome) -> str:
        calls = "; ".join(
            f"{a.role} {a.provider} {a.outcome}{'(hedge)' if a.hedge else ''} {a.latency_ms:.0f}ms {a.error or ''}"[:90]
            for a in (o.result.attempts if o.result else [])
        )
        return calls or str(o.crash)

    slowest = sorted(outcomes, key=lambda o: o.started - o.ended)
    # Always shown: an outlier past the 3 s of the random-errors target is the one worth reading.
    shown = max(SHOW_SLOWEST, min(5, sum(1 for o in outcomes if o.ended - o.started > OUTLIER_S)))
    for o in slowest[:shown]:
        rows.append((f"slow: {(o.ended - o.started) * 1000:.0f} ms", calls_of(o)))
    # Always shown (up to five): one unanswered analysis of hundreds is the one worth reading.
    for o in [o for o in outcomes if o not in answered][:5]:
        routed = ""
        if o.result is not None:  # what was left out of its chain, and why
            chain = ", ".join(step.provider for step in o.result.routing.chain)
            left_out = "; ".join(reason for reason in o.result.routing.reasons if "skipped" in reason)
            routed = f" || chain: {chain}" + (f"; {left_out}" if left_out else "")
        rows.append((f"unanswered: {(o.ended - o.started) * 1000:.0f} ms", calls_of(o) + routed))
    return render(f"{scenario.name}: {scenario.description}", rows)


def render(title: str, rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 3 + max(len(v) for _, v in rows))
    return ["", f"== {title}", line, *(f"{k:<{width}} | {v}" for k, v in rows), line]


# --- skipping an open circuit --------------------------------------------------------------------------------


def skip_table(runs: int) -> list[str]:
    """Measure what an open circuit costs a request: the availability check, route, and the graph up to the
    call on the next provider, with the circuit in process memory and (if redis-server exists) in Redis."""
    rows: list[tuple[str, str]] = []
    stores: list[tuple[str, Callable[[BreakerPolicy], Any] | None]] = [("memory", None)]
    redis_ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    try:
        from providers.testing.redis_servers import running

        tmp = tempfile.TemporaryDirectory()
        redis_ctx = running("redis", Path(tmp.name))
    except Exception as exc:  # no redis-server: measure memory only and say so
        rows.append(("redis", f"not measured: {exc}"))
    with redis_ctx as server:
        if server is not None:
            stores.append(("redis", lambda policy: RedisBreakerStore.from_url(server.url, policy)))
        for store_name, make_store in stores:
            rows += skip_rows(store_name, make_store, runs)
    return render("skip-open-circuit: gemini's circuit is open; what skipping it costs (target < 10 ms)", rows)


def skip_rows(store_name: str, make_store: Callable[[BreakerPolicy], Any] | None, runs: int) -> list[tuple[str, str]]:
    progress = Progress(1)
    healthy = Schedule(median_s=0.005, p99_s=0.02)
    scenario = Scenario("skip", "", healthy, Schedule(0.005, 0.02, cites=True), Schedule(0.005, 0.02), {})
    with tempfile.TemporaryDirectory() as tmp, environment(scenario, progress, Path(tmp)) as (registry, _url, _env, _o):
        policy = registry.health.policy
        if make_store is not None:
            registry.health = HealthBoard(policy, time.time, make_store(policy))
        registry.health.reset(registry.names())

        def trip() -> None:
            # The bench's circuits half-open after open_s (5 s): a long run re-opens it before each analysis.
            registry.health.reset(["gemini"])
            for _ in range(policy.failure_threshold):
                registry.health.record("gemini", ok=False, latency_ms=1, error_class="server_error")
            assert not registry.availability("gemini").available

        trip()
        check: list[float] = []
        route: list[float] = []
        first_call: list[float] = []
        complex_ = classification_of(QUERY_KINDS["complex"], 0.5)
        graph = build_analysis_graph().compile()
        for i in range(runs):
            trip()
            t = time.perf_counter()
            registry.availability("gemini")
            check.append(time.perf_counter() - t)
            t = time.perf_counter()
            chain = plan(registry, complex_, "complex query", {})["chain"]
            route.append(time.perf_counter() - t)
            assert chain[0]["provider"] != "gemini"
            ctx = Context(registry=registry, classifier=lambda _q: QUERY_KINDS["complex"])
            started = time.time()
            out = graph.invoke({"query": f"complex query {i}"}, {"configurable": {"thread_id": str(i)}}, context=ctx)
            result = AnalysisResult.model_validate(out["result"])
            first = result.attempts[0]
            assert first.provider != "gemini" and first.started_at is not None
            first_call.append(first.started_at - started)
        registry.health.reset(registry.names())
    return [
        (f"{store_name}: availability check", ms_row_fine(check)),
        (f"{store_name}: route (all providers)", ms_row_fine(route)),
        (f"{store_name}: analysis start -> next provider called", ms_row_fine(first_call)),
    ]


def ms_row_fine(values: list[float]) -> str:
    return (
        f"n={len(values)}  p50 {pct(values, 0.5) * 1000:.3f} ms  p99 {pct(values, 0.99) * 1000:.3f} ms  "
        f"max {max(values) * 1000:.3f} ms"
    )


# --- main ----------------------------------------------------------------------------------------------------


def scenarios(seed: int) -> dict[str, Scenario]:
    def rng(offset: int) -> random.Random:
        return random.Random(seed * 100 + offset)

    mixed = {"complex": 0.4, "fresh": 0.4, "simple": 0.2}
    return {
        "healthy": Scenario(
            "healthy",
            "the reference for the hung-primary rows: the same queries and latencies, no fault (a complex analysis is "
            "Gemini's answer and a check, so its p95 is about two calls' tails)",
            gemini=Schedule(0.25, 1.0, tokens=GEMINI_TOKENS, rng=rng(14)),
            perplexity=Schedule(0.20, 0.8, cites=True, rng=rng(15)),
            local=Schedule(0.15, 0.6, rng=rng(16)),
            mix={"complex": 1.0},
        ),
        "hung-primary-cold": Scenario(
            "hung-primary-cold",
            "complex queries only (gemini first); gemini hangs on every call from the first request of a fresh "
            "process (no latency samples, no circuit history)",
            gemini=Schedule(0.25, 1.0, hang_from=0.0, tokens=GEMINI_TOKENS, rng=rng(10)),
            perplexity=Schedule(0.20, 0.8, cites=True, rng=rng(11)),
            local=Schedule(0.15, 0.6, rng=rng(12)),
            mix={"complex": 1.0},
            fault_windows=((0.0, 1.0),),
        ),
        "hung-primary": Scenario(
            "hung-primary",
            "complex queries only (gemini first); gemini answers for the first quarter (warm), then hangs on every "
            "call",
            gemini=Schedule(0.25, 1.0, hang_from=0.25, tokens=GEMINI_TOKENS, rng=rng(4)),
            perplexity=Schedule(0.20, 0.8, cites=True, rng=rng(5)),
            local=Schedule(0.15, 0.6, rng=rng(6)),
            mix={"complex": 1.0},
            fault_windows=((0.25, 1.0),),
        ),
        "random-20pct-hang": Scenario(
            "random-20pct-hang",
            "every provider fails 20% at random (500/503/429/true hang/drop/malformed/empty), long-tailed latency, "
            "gemini hangs on every call for the middle third",
            gemini=Schedule(0.25, 1.5, error_rate=0.2, hang_window=(1 / 3, 2 / 3), tokens=GEMINI_TOKENS, rng=rng(1)),
            perplexity=Schedule(0.20, 1.2, error_rate=0.2, cites=True, rng=rng(2)),
            local=Schedule(0.15, 0.8, error_rate=0.2, in_process=True, rng=rng(3)),
            mix=mixed,
            fault_windows=((1 / 3, 2 / 3),),
        ),
        "local-overload": Scenario(
            "local-overload",
            "no cloud keys: only the local model (one call at a time, about 4 s a call like the real one on 2 "
            "cores), all requests arrive at once (issue 10 item 8: 20 concurrent requests)",
            gemini=Schedule(0.25, 1.0),
            perplexity=Schedule(0.2, 0.8),
            local=Schedule(4.0, 6.0, rng=rng(13)),
            mix={"simple": 1.0},
            cloud=False,
        ),
        "429-storms": Scenario(
            "429-storms",
            "perplexity answers 429 + Retry-After 0.5-3 s in two storms (20-35%, 60-75% of the run), "
            "gemini in one (40-50%)",
            gemini=Schedule(0.25, 1.0, storms=((0.40, 0.50),), tokens=GEMINI_TOKENS, rng=rng(7)),
            perplexity=Schedule(0.20, 0.8, storms=((0.20, 0.35), (0.60, 0.75)), cites=True, rng=rng(8)),
            local=Schedule(0.15, 0.6, rng=rng(9)),
            mix=mixed,
            fault_windows=((0.20, 0.35), (0.40, 0.50), (0.60, 0.75)),
        ),
    }


CLI_QUERY = "complex query: what should the campaign do in Malakpet this week?"


def cli_exit_table(runs: int) -> list[str]:
    """Run ``strategist analyze --deadline 5`` in fresh processes with Gemini hanging; time from the answer's
    last line on stdout to the process's exit (and the whole run), as the user sees it."""
    progress = Progress(1)
    hung = Scenario(
        "cli", "", Schedule(0.25, 1.0, hang_from=0.0), Schedule(0.2, 0.8, cites=True), Schedule(0.15, 0.6), {}
    )
    printed_to_exit: list[float] = []
    total: list[float] = []
    codes: Counter[int] = Counter()
    cli = Path(sys.executable).with_name("strategist")
    with tempfile.TemporaryDirectory() as tmp, environment(hung, progress, Path(tmp)) as (_registry, _url, env, _o):
        # The CLI classifies for itself: force the complex chain (gemini first) the same way the app does.
        env = {**os.environ, **env, "LOCAL_MODEL_PATH": str(Path(tmp) / "none.gguf")}
        for _ in range(runs):
            started = time.monotonic()
            proc = subprocess.Popen(
                [str(cli), "analyze", "--deadline", "5", "--depth", "deep", CLI_QUERY],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                text=True,
            )
            assert proc.stdout is not None
            last_line_at = started
            for _line in proc.stdout:
                last_line_at = time.monotonic()
            code = proc.wait()
            exited = time.monotonic()
            codes[code] += 1
            printed_to_exit.append(exited - last_line_at)
            total.append(exited - started)
    rows = [
        ("runs (exit codes)", f"{runs} ({', '.join(f'{k}: {v}' for k, v in sorted(codes.items()))})"),
        ("last line printed -> process exit", ms_row(printed_to_exit)),
        ("process start -> exit", ms_row(total)),
    ]
    return render(
        "cli-exit: strategist analyze --deadline 5 --depth deep, gemini hanging (target: exit < 1 s after printing)",
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--analyses", type=int, default=300, help="analyses per scenario")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-runs", type=int, default=200, help="analyses for the skip-open-circuit table")
    parser.add_argument("--cli-runs", type=int, default=5, help="processes for the cli-exit table")
    parser.add_argument(
        "--scenarios",
        default="healthy,hung-primary-cold,hung-primary,random-20pct-hang,429-storms,skip-open-circuit,cli-exit",
        help="comma-separated names",
    )
    parser.add_argument("--show-slowest", type=int, default=0, help="print the calls of the N slowest analyses")
    args = parser.parse_args(argv)
    global SHOW_SLOWEST
    SHOW_SLOWEST = args.show_slowest
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    known = scenarios(args.seed)
    print(
        f"chaos benchmark: {args.analyses} analyses per scenario, concurrency {args.concurrency}, seed {args.seed}, "
        f"{os.cpu_count()} CPUs (other work on the machine is not controlled: numbers vary with load). "
        "HTTP app (create_app, threaded WSGI server) with the embedded SQLite checkpointer and ledger; "
        "gemini/perplexity: real LangChain clients against the fake servers; local: a serialised fake "
        "(one call at a time, bounded queue, the schedule's latency; the real model takes seconds a call); "
        f"default configuration except {BENCH_CONFIG.strip().replace(chr(10), ' ')}"
    )
    for name in [n.strip() for n in args.scenarios.split(",") if n.strip()]:
        if name == "skip-open-circuit":
            lines = skip_table(args.skip_runs)
        elif name == "cli-exit":
            lines = cli_exit_table(args.cli_runs)
        elif name in known:
            lines = run_scenario(known[name], args.analyses, args.concurrency, args.seed)
        else:
            print(f"unknown scenario {name!r}; known: {', '.join([*known, 'skip-open-circuit', 'cli-exit'])}")
            continue
        print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
