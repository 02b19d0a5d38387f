"""Chaos benchmark: thousands of analyses through the real graph while the providers misbehave on a schedule.

Gemini and Perplexity are the real LangChain clients (``ChatGoogleGenerativeAI``, ``ChatPerplexity``) pointed at
the local fake servers of providers/testing/servers.py, whose ``behaviour`` hook injects faults by schedule. The local
tier is a fast fake adapter (a chat model in this file with the same fault schedule), because the real local model
model takes about 4 s per call. The graph is ``build_analysis_graph()`` compiled without a checkpointer (the
checkpoint cost is bench/checkpoint.py's subject), run with bounded concurrency; every analysis uses the default
configuration except where the header of a table says otherwise (the breaker's open period is shortened so a
run of tens of seconds sees circuits open, probe and close).

Scenarios (``--scenarios``, comma-separated):

- ``random-20pct-outage``: every provider fails 20% of calls at random (500, 503, 429 with Retry-After, stalls,
  dropped connections, malformed bodies, empty answers), latencies are log-normal with a long tail, and Gemini is
  fully down (503 on every call) during the middle third of the run. Target: >= 99.9% answered.
- ``hung-primary``: every query is a complex one (Gemini first); Gemini answers normally for the first quarter,
  then accepts requests and never answers. Target: answer from the next provider within 1.0 s at p95.
- ``429-storms``: Perplexity answers 429 with Retry-After 0.5-3 s during two storms, Gemini during one.
- ``skip-open-circuit``: Gemini's circuit is open; measures what skipping it costs (availability check, route,
  and the time from the start of the analysis to the call on the next provider), in memory and through Redis
  when ``redis-server`` is installed. Target: < 10 ms.

Each scenario prints one table: availability, latency percentiles, failover time (from the start of the first
failed call to the answer), and the extra spend caused by hedging (cancelled losers, at their estimated cost,
over all other spend). Exit status 0.

Run: ``/work/venv/bin/python bench/chaos.py [--analyses 1200] [--concurrency 16] [--scenarios ...] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

if __package__ in (None, ""):
    # Run as a script: make the repo root importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graphs.analysis import build_analysis_graph
from graphs.context import Context
from graphs.result import AnalysisResult
from nodes.classify import classification_of
from nodes.policy.query_classifier import QueryNeeds
from nodes.route import plan
from providers.base import ProviderAdapter
from providers.config import Settings, load_settings
from providers.errors import ProviderConnectionError, ServerError
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

# The run is compressed into tens of seconds, so a circuit's open period is shortened from the default 30 s.
BENCH_CONFIG = """
[resilience.breaker]
open_s = 5.0
"""
QUERY_KINDS: dict[str, QueryNeeds] = {
    "complex": QueryNeeds.confident(0.04, "complex", "scenario"),  # chain: gemini -> perplexity -> local
    "fresh": QueryNeeds.confident(0.92, "moderate", "fact_lookup"),  # chain: perplexity -> gemini -> local
    "simple": QueryNeeds.confident(0.03, "simple", "summary"),  # chain: local -> gemini -> perplexity
}
ANSWER = "Booth-level turnout fell four points; focus volunteers on the swing wards first.\nConfidence: 0.9"
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
        return Hang(seconds=4.0)  # a stall: the server drops the connection after 4 s
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
    storms: tuple[tuple[float, float], ...] = ()  # progress windows of 429 with Retry-After
    cites: bool = False
    # Billed tokens of an answer (input, visible output, thinking), about what route estimates: the hedge budget
    # weighs estimated hedge costs against real spend, so toy token counts would starve it.
    tokens: tuple[int, int, int] = (300, 500, 0)
    rng: random.Random = field(default_factory=random.Random)

    def action(self, progress: float) -> Action:
        if self.hang_from is not None and progress >= self.hang_from:
            return Hang()
        if self.down is not None and self.down[0] <= progress < self.down[1]:
            return Fail(status=503, message="The model is overloaded. Please try again later.")
        if any(start <= progress < end for start, end in self.storms):
            return Fail(status=429, retry_after=round(self.rng.uniform(0.5, 3.0), 1))
        latency = lognormal_s(self.rng, self.median_s, self.p99_s)
        if self.rng.random() < self.error_rate:
            fault = random_fault(self.rng)
            return fault if isinstance(fault, Hang) else Delay(latency / 3, fault)
        tokens_in, tokens_out, thinking = self.tokens
        answer = Reply(
            text=ANSWER,
            citations=SOURCES if self.cites else (),
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            thinking_tokens=thinking,
        )
        return Delay(latency, answer)

    def behaviour(self, progress: Progress) -> Callable[[int, RecordedRequest], Action]:
        return lambda _index, _request: self.action(progress())


class ChaosChat(BaseChatModel):
    """The local tier's stand-in: a chat model that follows a fault schedule (sleeps, answers or fails)."""

    schedule: Any
    progress: Any
    released: Any  # an Event set at shutdown, so hung calls end

    @property
    def _llm_type(self) -> str:
        return "chaos-local"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        action = self.schedule.action(self.progress())
        while isinstance(action, Delay):
            self.released.wait(action.seconds)
            action = action.then
        if isinstance(action, Hang):
            self.released.wait(action.seconds or 3600)
            raise ProviderConnectionError("local server dropped the connection")
        if isinstance(action, Fail):
            raise ServerError(f"HTTP {action.status}", retry_after_s=action.retry_after)
        if isinstance(action, Drop):
            raise ConnectionError("connection reset by peer")
        if isinstance(action, Malformed):
            raise ValueError("invalid JSON from the local server")
        text = "" if isinstance(action, Empty) else ANSWER
        message = AIMessage(
            content=text,
            usage_metadata={"input_tokens": 300, "output_tokens": 120, "total_tokens": 420},
            response_metadata={"finish_reason": "stop"},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


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


@dataclass
class Outcome:
    kind: str
    progress: float  # share of the run started before this analysis
    result: AnalysisResult | None
    started: float  # wall clock
    ended: float
    crash: str | None = None


@contextlib.contextmanager
def environment(scenario: Scenario, progress: Progress) -> Iterator[tuple[ProviderRegistry, threading.Event]]:
    """Start the fake servers and build a registry with the real cloud clients and the chaos local tier."""
    released = threading.Event()
    with (
        FakeGemini(behaviour=scenario.gemini.behaviour(progress)) as gemini,
        FakePerplexity(behaviour=scenario.perplexity.behaviour(progress)) as perplexity,
        tempfile.NamedTemporaryFile("w", suffix=".toml") as config,
    ):
        config.write(BENCH_CONFIG)
        config.flush()
        settings = load_settings(
            {
                "STRATEGIST_DATA_DIR": tempfile.gettempdir(),
                "STRATEGIST_CONFIG": config.name,
                "GEMINI_API_KEY": "chaos",
                "GEMINI_BASE_URL": gemini.base_url,
                "PERPLEXITY_API_KEY": "chaos",
                "PERPLEXITY_BASE_URL": perplexity.base_url,
            }
        )
        local = local_adapter(settings, scenario.local, progress, released)
        registry = ProviderRegistry(settings, adapters={"local": local})
        try:
            yield registry, released
        finally:
            released.set()


def local_adapter(settings: Settings, schedule: Schedule, progress: Progress, released: threading.Event) -> Any:
    ps = settings.providers["local"]
    chat = ChaosChat(schedule=schedule, progress=progress, released=released)
    return ProviderAdapter(
        name="local", tier="local", vendor="local", model=ps.model, chat_factory=lambda: chat, timeout_s=ps.timeout_s
    )


def run_scenario(scenario: Scenario, analyses: int, concurrency: int, seed: int) -> list[str]:
    progress = Progress(analyses)
    rng = random.Random(seed)
    kinds = rng.choices(list(scenario.mix), weights=list(scenario.mix.values()), k=analyses)
    graph = build_analysis_graph().compile()
    outcomes: list[Outcome] = []
    with environment(scenario, progress) as (registry, _released):
        warm_up(registry, graph)

        def one(index: int) -> Outcome:
            kind = kinds[index]
            progress.start_one()
            ctx = Context(registry=registry, classifier=lambda _q: QUERY_KINDS[kind])
            started = time.time()
            try:
                out = graph.invoke(
                    {"query": f"{kind} query {index}: what should the campaign do in Malakpet this week?"},
                    {"configurable": {"thread_id": str(uuid.uuid4())}},
                    context=ctx,
                )
                return Outcome(
                    kind, index / analyses, AnalysisResult.model_validate(out["result"]), started, time.time()
                )
            except Exception as exc:  # a crash is an unanswered analysis, and the table says so
                return Outcome(kind, index / analyses, None, started, time.time(), crash=f"{type(exc).__name__}: {exc}")

        wall = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            outcomes = list(pool.map(one, range(analyses)))
        wall = time.perf_counter() - wall
        health: dict[str, str] = {name: registry.health.breaker(name).snapshot().state for name in registry.names()}
    return table(scenario, outcomes, concurrency, wall, health)


def warm_up(registry: ProviderRegistry, graph: Any) -> None:
    """Import the SDKs and open connections before the clock starts (the first call of a process is slow)."""
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


def table(
    scenario: Scenario, outcomes: list[Outcome], concurrency: int, wall: float, health: dict[str, str]
) -> list[str]:
    answered = [o for o in outcomes if o.result is not None and o.result.answer is not None]
    latencies = [o.ended - o.started for o in outcomes]
    failover: list[float] = []
    failover_other: list[float] = []
    retries = hedges = cancelled = checks = skipped = 0
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
        retries += sum(1 for a, b in itertools.pairwise(answers) if a.provider == b.provider)
        skipped += any("circuit open" in reason for reason in r.routing.reasons)
        # What hedging added is the hedge calls' cost (see nodes/call_model.py: _record_group).
        extra += sum(a.cost_usd for a in r.attempts if a.hedge)
        spend += sum(a.cost_usd for a in r.attempts if not a.hedge)
        if r.answer is None:
            errors[(r.error or "?")[:200]] += 1
            continue
        by_provider[r.provider or "?"] += 1
        failed = [a.started_at for a in answers if a.outcome != "ok" and a.started_at is not None]
        if failed:
            failover.append(o.ended - min(failed))
            if r.provider != answers[0].provider:
                failover_other.append(o.ended - min(failed))
    n = len(outcomes)
    in_fault = [o for o in outcomes if any(a <= o.progress < b for a, b in scenario.fault_windows)]
    rows = [
        ("answered", f"{len(answered)} / {n} = {len(answered) / n:.2%}"),
        ("latency, all analyses", ms_row(latencies)),
        (
            "latency, analyses started during the fault",
            ms_row([o.ended - o.started for o in in_fault if o.result and o.result.answer])
            + f"; answered {sum(1 for o in in_fault if o.result and o.result.answer)} / {len(in_fault)}",
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
        ("spend", f"${spend:.4f} + hedge calls ${extra:.4f} = {extra / spend if spend else 0:.2%} extra from hedging"),
        ("circuits at the end", ", ".join(f"{k} {v}" for k, v in health.items())),
        ("throughput", f"{n / wall:.1f} analyses/s ({wall:.1f} s wall, concurrency {concurrency})"),
    ]
    for error, count in errors.most_common(3):
        rows.append(("unanswered", f"{count} x {error}"))
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
    with environment(scenario, progress) as (registry, _):
        policy = registry.health.policy
        if make_store is not None:
            registry.health = HealthBoard(policy, time.time, make_store(policy))
        registry.health.reset(registry.names())
        for _ in range(policy.failure_threshold):
            registry.health.record("gemini", ok=False, latency_ms=1, error_class="server_error")
        assert not registry.availability("gemini").available
        check: list[float] = []
        route: list[float] = []
        first_call: list[float] = []
        complex_ = classification_of(QUERY_KINDS["complex"], 0.5)
        graph = build_analysis_graph().compile()
        for i in range(runs):
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
        "random-20pct-outage": Scenario(
            "random-20pct-outage",
            "every provider fails 20% at random (500/503/429/stall/drop/malformed/empty), long-tailed latency, "
            "gemini down (503) for the middle third",
            gemini=Schedule(0.25, 1.5, error_rate=0.2, down=(1 / 3, 2 / 3), tokens=GEMINI_TOKENS, rng=rng(1)),
            perplexity=Schedule(0.20, 1.2, error_rate=0.2, cites=True, rng=rng(2)),
            local=Schedule(0.15, 0.8, error_rate=0.2, rng=rng(3)),
            mix=mixed,
            fault_windows=((1 / 3, 2 / 3),),
        ),
        "hung-primary": Scenario(
            "hung-primary",
            "complex queries only (gemini first); gemini answers for the first quarter, then hangs on every call",
            gemini=Schedule(0.25, 1.0, hang_from=0.25, tokens=GEMINI_TOKENS, rng=rng(4)),
            perplexity=Schedule(0.20, 0.8, cites=True, rng=rng(5)),
            local=Schedule(0.15, 0.6, rng=rng(6)),
            mix={"complex": 1.0},
            fault_windows=((0.25, 1.0),),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--analyses", type=int, default=1200, help="analyses per scenario")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-runs", type=int, default=200, help="analyses for the skip-open-circuit table")
    parser.add_argument(
        "--scenarios",
        default="random-20pct-outage,hung-primary,429-storms,skip-open-circuit",
        help="comma-separated names",
    )
    args = parser.parse_args(argv)
    known = scenarios(args.seed)
    print(
        f"chaos benchmark: {args.analyses} analyses per scenario, concurrency {args.concurrency}, seed {args.seed}. "
        "gemini/perplexity: real LangChain clients against the fake servers; local: fast fake adapter "
        "(same fault schedule; the real local model takes seconds a call); graph compiled without a checkpointer; "
        f"default configuration except {BENCH_CONFIG.strip().replace(chr(10), ' ')}"
    )
    for name in [n.strip() for n in args.scenarios.split(",") if n.strip()]:
        if name == "skip-open-circuit":
            lines = skip_table(args.skip_runs)
        elif name in known:
            lines = run_scenario(known[name], args.analyses, args.concurrency, args.seed)
        else:
            print(f"unknown scenario {name!r}; known: {', '.join([*known, 'skip-open-circuit'])}")
            continue
        print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
