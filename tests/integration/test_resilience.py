"""Resilience: each error class's path through the graph, deadlines and Retry-After, circuit breakers (memory and
Redis) driven by a fake clock, hedged requests, and a hung primary with the real clients against the fake servers.

No assertion here is about elapsed time: waits go through the context's injected sleep and clock, and hedges are
ordered with events. The benchmark (bench/chaos.py) measures time.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from app import admin_token_ok
from cli import render_health
from graphs.analysis import build_analysis_graph
from graphs.context import Context
from graphs.ops import health_report, reset_circuits
from graphs.result import AnalysisResult
from graphs.state import AnalysisInput
from nodes.policy.attempts import attempt_timeout_s, retry_wait_s
from nodes.policy.costing import estimate_call_cost
from nodes.policy.query_classifier import QueryNeeds
from providers.config import RetrySettings, Settings, load_settings
from providers.errors import (
    AuthError,
    BadRequest,
    ContentBlocked,
    ContextTooLong,
    EmptyResponse,
    MalformedResponse,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    ServerError,
)
from providers.registry import ProviderRegistry
from providers.resilience.board import HealthBoard
from providers.resilience.breaker import CircuitBreaker, hedge_delay_s
from providers.resilience.breaker_store import BreakerPolicy, RedisBreakerStore
from providers.resilience.hedge_budget import HedgeBudget
from providers.testing import Step, fake_registry, reply
from providers.testing.servers import FakeGemini, FakePerplexity, Hang, Reply, Source

COMPLEX = QueryNeeds.confident(0.04, "complex", "scenario")  # chain: gemini -> perplexity -> local
CITED = reply(
    "Turnout in Malakpet fell four points since 2019. The commission published booth data.\nConfidence: 0.8",
    citations=["https://eci.gov.in/turnout"],
)
GEMINI_OK = reply("Map every booth first, then the swing wards.\nConfidence: 0.8")
LOCAL_OK = reply("Local answer: map booths.")


class FakeClock:
    """A wall clock that only moves when told to; ``sleep`` advances it and records the wait."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def blocking(gate: threading.Event, then: Any) -> Step:
    """Return a script step that waits for ``gate`` (at most 10 s), then answers (a message) or raises."""

    def step(_messages: Any) -> Any:
        gate.wait(10)
        if isinstance(then, Exception):
            raise then
        return then

    return step


def warm(registry: ProviderRegistry, provider: str, calls: int = 20, latency_ms: float = 50.0) -> None:
    """Record successful calls, so the provider has latency samples and has earned a retry budget."""
    for _ in range(calls):
        registry.health.record(provider, ok=True, latency_ms=latency_ms)


def with_resilience(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """Return settings whose resilience sections (retry, breaker, hedge) have the given fields changed."""
    resilience = settings.resilience
    changed = {name: getattr(resilience, name).model_copy(update=fields) for name, fields in sections.items()}
    return settings.model_copy(update={"resilience": resilience.model_copy(update=changed)})


def without_cascade(settings: Settings) -> Settings:
    """Turn off the confidence cascade (a second opinion on low-confidence answers): it makes calls of its own."""
    return settings.model_copy(update={"confidence": settings.confidence.model_copy(update={"escalate_below": 0.0})})


def hermetic_settings(**resilience: dict[str, Any]) -> Settings:
    """Return settings without real providers or the cascade; hedging only where a test asks for it, so the
    order of events in the other tests never depends on how fast a thread starts."""
    settings = load_settings({"STRATEGIST_DATA_DIR": "/nonexistent", "LOCAL_MODEL_PATH": "/nonexistent/m.gguf"})
    resilience.setdefault("hedge", {"enabled": False})
    return without_cascade(with_resilience(settings, **resilience))


def registry_of(
    scripts: dict[str, list[Any]],
    settings: Settings | None = None,
    health: HealthBoard | None = None,
    hedge_budget: HedgeBudget | None = None,
) -> ProviderRegistry:
    registry = fake_registry(scripts, settings=settings or hermetic_settings(), health=health)
    if hedge_budget is not None:
        registry.hedge_budget = hedge_budget
    return registry


def run(
    registry: ProviderRegistry,
    classified: QueryNeeds = COMPLEX,
    clock: FakeClock | None = None,
    **state: Any,
) -> AnalysisResult:
    graph = build_analysis_graph().compile(checkpointer=InMemorySaver())
    clock = clock or FakeClock()
    ctx = Context(
        registry=registry, classifier=lambda _q: classified, clock=clock, sleep=clock.sleep, rng=random.Random(7)
    )
    graph_input = cast(AnalysisInput, {"query": "q", **state})
    out = graph.invoke(graph_input, {"configurable": {"thread_id": str(uuid.uuid4())}}, context=ctx)
    return AnalysisResult.model_validate(out["result"])


def path(result: AnalysisResult) -> list[tuple[str, str, str | None]]:
    """Return the answer attempts (a low-confidence answer may also be cross-checked: not this file's concern)."""
    return [(a.provider, a.outcome, a.error_class) for a in result.attempts if a.role == "answer"]


# --- each error class's path through the graph -----------------------------------------------------------------

RETRIED: list[ProviderError] = [
    ProviderConnectionError("connection reset"),
    ServerError("503 UNAVAILABLE"),
    MalformedResponse("invalid JSON"),
    EmptyResponse("no text"),
    RateLimited("429", retry_after_s=0.5),
]
NEXT: list[ProviderError] = [
    ProviderTimeout("no answer within 18s"),
    ProviderUnavailable("404 model retired"),
    AuthError("403 PERMISSION_DENIED"),
    ContentBlocked("prompt blocked (SAFETY)"),
    ContextTooLong("input token count exceeds"),
]


@pytest.mark.parametrize("failure", RETRIED, ids=lambda e: e.error_class)
def test_retry_class_is_retried_on_the_same_provider(failure: ProviderError) -> None:
    registry = registry_of({"gemini": [failure, GEMINI_OK], "perplexity": [CITED], "local": [LOCAL_OK]})
    warm(registry, "gemini")  # a provider earns retries by answering
    clock = FakeClock()
    result = run(registry, clock=clock)
    assert path(result) == [("gemini", "error", failure.error_class), ("gemini", "ok", None)]
    assert result.provider == "gemini" and result.fallback_mode is False
    assert len(clock.sleeps) == 1  # the backoff (or Retry-After) wait happened, through the injected sleep


@pytest.mark.parametrize("failure", NEXT, ids=lambda e: e.error_class)
def test_next_class_moves_to_the_next_provider(failure: ProviderError) -> None:
    registry = registry_of({"gemini": [failure, GEMINI_OK], "perplexity": [CITED], "local": [LOCAL_OK]})
    warm(registry, "gemini")
    result = run(registry)
    assert path(result) == [("gemini", "error", failure.error_class), ("perplexity", "ok", None)]
    assert result.provider == "perplexity" and result.fallback_mode is True


def test_stop_class_ends_the_analysis() -> None:
    registry = registry_of({"gemini": [BadRequest("400 INVALID_ARGUMENT")], "perplexity": [CITED]})
    warm(registry, "gemini")
    result = run(registry)
    assert path(result) == [("gemini", "error", "bad_request")]
    assert result.answer is None and result.error and "refused" in result.error


def test_retries_are_bounded_by_policy_then_the_chain_moves_on() -> None:
    registry = registry_of({"gemini": [ServerError("500")], "perplexity": [CITED], "local": [LOCAL_OK]})
    warm(registry, "gemini")
    result = run(registry)
    # max_retries = 2: three attempts on gemini, each recorded, then the next provider.
    assert [p for p, _, _ in path(result)] == ["gemini", "gemini", "gemini", "perplexity"]
    assert result.provider == "perplexity"


def test_a_provider_without_recent_successes_gets_no_retry() -> None:
    # Cold provider: the retry budget (a share of its successes in the window) is empty, so failing over wins.
    registry = registry_of({"gemini": [ServerError("500"), GEMINI_OK], "perplexity": [CITED]})
    result = run(registry)
    assert path(result) == [("gemini", "error", "server_error"), ("perplexity", "ok", None)]


def test_the_only_adequate_provider_gets_one_retry_without_budget_before_the_last_resorts() -> None:
    """A fresh-fact question: Perplexity, cold (no budget earned), fails once; only last resorts follow (answers
    from memory, degraded). Before, they were asked at once; now Perplexity is asked once more, and only once."""
    fresh = QueryNeeds.confident(0.95, "moderate", "fact_lookup")
    registry = registry_of({"perplexity": [ServerError("503"), CITED], "local": [LOCAL_OK]})
    result = run(registry, fresh)
    assert path(result) == [("perplexity", "error", "server_error"), ("perplexity", "ok", None)]
    assert not result.fallback_mode
    failing = registry_of({"perplexity": [ServerError("503"), ServerError("503"), CITED], "local": [LOCAL_OK]})
    again = run(failing, fresh)
    assert [p for p, _, _ in path(again)] == ["perplexity", "perplexity", "local"]


def test_retry_budget_caps_retries_across_requests() -> None:
    settings = hermetic_settings(retry={"budget_ratio": 0.1})
    registry = registry_of({"gemini": [ServerError("500")], "perplexity": [CITED]}, settings=settings)
    warm(registry, "gemini", calls=20)  # 20 successes x 0.1 = 2 retries in the window
    first = run(registry)
    second = run(registry)
    assert [p for p, _, _ in path(first)] == ["gemini", "gemini", "gemini", "perplexity"]
    assert [p for p, _, _ in path(second)] == ["gemini", "perplexity"]


# --- deadlines and Retry-After -----------------------------------------------------------------------------


def test_retry_after_that_fits_the_deadline_is_honoured() -> None:
    registry = registry_of({"gemini": [RateLimited("429", retry_after_s=1.5), GEMINI_OK], "perplexity": [CITED]})
    warm(registry, "gemini")
    clock = FakeClock()
    result = run(registry, clock=clock, constraints={"deadline_s": 10.0})
    assert path(result) == [("gemini", "error", "rate_limited"), ("gemini", "ok", None)]
    # Never sooner than the server asked; at most 10% jitter on top.
    assert len(clock.sleeps) == 1 and 1.5 <= clock.sleeps[0] <= 1.65


def test_a_second_retry_after_moves_on_to_the_next_provider() -> None:
    """One Retry-After is waited out; a provider asking to wait again is rate limiting for longer than that."""
    registry = registry_of(
        {
            "gemini": [RateLimited("429", retry_after_s=1.0), RateLimited("429", retry_after_s=1.0), GEMINI_OK],
            "perplexity": [CITED],
        }
    )
    warm(registry, "gemini")
    clock = FakeClock()
    result = run(registry, clock=clock, constraints={"deadline_s": 30.0})
    assert path(result) == [
        ("gemini", "error", "rate_limited"),
        ("gemini", "error", "rate_limited"),
        ("perplexity", "ok", None),
    ]
    assert len(clock.sleeps) == 1


def test_a_second_retry_after_is_waited_out_when_only_a_last_resort_is_left() -> None:
    """Fresh facts: only Perplexity serves them; the local model after it is a last resort (a degraded answer).
    The health board runs on the same clock: the second 429 also starts a cooldown, which the retry's wait ends."""
    clock = FakeClock()
    registry = registry_of(
        {
            "perplexity": [RateLimited("429", retry_after_s=1.0), RateLimited("429", retry_after_s=1.0), CITED],
            "local": [reply("From memory.")],
        },
        health=HealthBoard(clock=clock),
    )
    warm(registry, "perplexity")
    result = run(registry, QueryNeeds.confident(0.95, "moderate", "fact_lookup"), clock=clock)
    assert [p for p, _, _ in path(result)] == ["perplexity", "perplexity", "perplexity"]
    assert result.provider == "perplexity" and len(clock.sleeps) == 2


def test_a_second_retry_after_is_waited_out_when_nothing_else_is_left() -> None:
    rate_limited = [RateLimited("429", retry_after_s=1.0), RateLimited("429", retry_after_s=1.0)]
    policy = RetrySettings(max_retries=2, max_wait_s=2.0)
    rng = random.Random(1)
    for error in rate_limited:
        assert retry_wait_s(error, made=1, remaining_s=30, policy=policy, rng=rng, fallback_left=True) is not None
    assert retry_wait_s(rate_limited[1], made=2, remaining_s=30, policy=policy, rng=rng, fallback_left=True) is None
    assert (
        retry_wait_s(rate_limited[1], made=2, remaining_s=30, policy=policy, rng=rng, fallback_left=False) is not None
    )
    # Backoff without a Retry-After is short and stays as it was.
    assert (
        retry_wait_s(ServerError("500"), made=2, remaining_s=30, policy=policy, rng=rng, fallback_left=True) is not None
    )


@pytest.mark.parametrize(
    "retry_after_s, deadline_s",
    [(1.5, 1.8), (5.0, 60.0)],
    ids=["does-not-fit-the-deadline", "longer-than-max-wait"],
)
def test_retry_after_that_does_not_fit_moves_on(retry_after_s: float, deadline_s: float) -> None:
    registry = registry_of(
        {"gemini": [RateLimited("429", retry_after_s=retry_after_s), GEMINI_OK], "perplexity": [CITED]}
    )
    warm(registry, "gemini")
    clock = FakeClock()
    result = run(registry, clock=clock, constraints={"deadline_s": deadline_s})
    assert path(result) == [("gemini", "error", "rate_limited"), ("perplexity", "ok", None)]
    assert clock.sleeps == []


def test_retry_wait_is_full_jitter_backoff_without_retry_after() -> None:
    policy = RetrySettings(base_backoff_s=0.2, max_backoff_s=2.0, max_retries=5, max_wait_s=10)
    rng = random.Random(1)
    waits = [
        retry_wait_s(ServerError("500"), made=made, remaining_s=60, policy=policy, rng=rng) for made in range(1, 6)
    ]
    caps = [0.2, 0.4, 0.8, 1.6, 2.0]
    assert all(w is not None and 0 <= w <= cap for w, cap in zip(waits, caps, strict=True))
    assert retry_wait_s(ServerError("500"), made=6, remaining_s=60, policy=policy, rng=rng) is None
    assert retry_wait_s(ProviderTimeout("slow"), made=1, remaining_s=60, policy=policy, rng=rng) is None


def test_attempt_timeout_leaves_time_for_fallbacks() -> None:
    policy = RetrySettings(attempt_share=0.6)
    assert attempt_timeout_s(10.0, True, policy) == pytest.approx(6.0)
    assert attempt_timeout_s(10.0, False, policy) == pytest.approx(10.0)


def test_passed_deadline_ends_the_chain_with_a_clear_error() -> None:
    clock = FakeClock()

    def slow_failure(_messages: Any) -> Any:
        clock.advance(5.0)  # the call used up the whole deadline
        raise ServerError("503")

    registry = registry_of({"gemini": [slow_failure], "perplexity": [CITED]})
    warm(registry, "gemini")
    result = run(registry, clock=clock, constraints={"deadline_s": 3.0})
    assert path(result) == [("gemini", "error", "server_error")]
    assert result.answer is None and result.error and "deadline passed" in result.error


# --- circuit breakers (fake clock, no sleeps) ---------------------------------------------------------------


def test_breaker_opens_on_consecutive_failures_probes_once_and_closes() -> None:
    clock = FakeClock(0.0)
    breaker = CircuitBreaker("gemini", BreakerPolicy(failure_threshold=3, open_s=30), clock)
    for _ in range(2):
        breaker.record(False, 10)
    assert breaker.state() == "closed"
    assert breaker.record(False, 10) == "open"
    assert not breaker.allow()
    clock.advance(29.9)
    assert breaker.state() == "open"
    clock.advance(0.1)
    assert breaker.state() == "half_open"
    assert breaker.allow() is True  # the probe
    assert breaker.allow() is False  # everyone else waits for its verdict
    assert breaker.record(True, 10) == "closed"
    snap = breaker.snapshot()
    assert (snap.state, snap.calls, snap.consecutive_failures) == ("closed", 0, 0)  # a recovered provider starts afresh


def test_failed_probe_reopens_for_another_open_period() -> None:
    clock = FakeClock(0.0)
    breaker = CircuitBreaker("gemini", BreakerPolicy(failure_threshold=1, open_s=10), clock)
    breaker.record(False, 10)
    clock.advance(10)
    assert breaker.allow()
    assert breaker.record(False, 10) == "open"
    clock.advance(9)
    assert breaker.state() == "open"
    clock.advance(1)
    assert breaker.state() == "half_open"


def test_breaker_opens_on_failure_rate_over_the_window_and_forgets_old_calls() -> None:
    clock = FakeClock(0.0)
    policy = BreakerPolicy(failure_threshold=100, failure_rate=0.5, min_calls=10, window_s=60)
    breaker = CircuitBreaker("perplexity", policy, clock)
    for i in range(9):
        breaker.record(i % 2 == 0, 10)  # 5 ok, 4 failed
    assert breaker.state() == "closed"
    clock.advance(120)  # the window moves on: the old calls no longer count
    for _ in range(5):
        breaker.record(True, 10)
    for _ in range(4):
        breaker.record(False, 10)
    assert breaker.state() == "closed"  # 4 of 9: under the rate and under min_calls
    assert breaker.record(False, 10) == "open"  # 5 of 10


def test_neutral_errors_do_not_count_against_a_provider() -> None:
    board = HealthBoard(BreakerPolicy(failure_threshold=2), clock=FakeClock(0.0))
    for error_class in ("bad_request", "content_blocked", "context_too_long", "unavailable", "cancelled"):
        board.record("gemini", ok=False, latency_ms=5, error_class=error_class)
    assert board.breaker("gemini").state() == "closed"
    board.record("gemini", ok=False, latency_ms=5, error_class="overtaken")
    board.record("gemini", ok=False, latency_ms=5, error_class="timeout")
    assert board.breaker("gemini").state() == "open"


def test_route_skips_an_open_circuit_and_says_so() -> None:
    board = HealthBoard(BreakerPolicy(failure_threshold=1), clock=FakeClock(0.0))
    registry = registry_of({"gemini": [GEMINI_OK], "perplexity": [CITED]}, health=board)
    board.record("gemini", ok=False, latency_ms=5, error_class="server_error")
    result = run(registry)
    assert path(result) == [("perplexity", "ok", None)]
    assert any("gemini" in r and "circuit open" in r for r in result.routing.reasons)


def test_redis_breaker_is_shared_across_processes(redis_url: str) -> None:
    clock = FakeClock()
    policy = BreakerPolicy(failure_threshold=2, open_s=30)
    # Two boards over two clients stand for two processes of one deployment.
    one = HealthBoard(policy, clock, RedisBreakerStore.from_url(redis_url, policy))
    two = HealthBoard(policy, clock, RedisBreakerStore.from_url(redis_url, policy))
    one.record("gemini", ok=False, latency_ms=5, error_class="server_error")
    two.record("gemini", ok=False, latency_ms=5, error_class="server_error")
    assert one.breaker("gemini").state() == two.breaker("gemini").state() == "open"
    clock.advance(30)
    assert two.breaker("gemini").state() == "half_open"
    assert one.breaker("gemini").allow() is True
    assert two.breaker("gemini").allow() is False  # one probe across all processes
    two.record("gemini", ok=True, latency_ms=120)
    assert one.breaker("gemini").state() == "closed"
    two.record("gemini", ok=True, latency_ms=80)
    snap = one.breaker("gemini").snapshot()
    assert snap.calls == 1 and snap.latency_samples == 2 and snap.p95_ms == 120.0
    one.record("perplexity", ok=False, latency_ms=5, error_class="timeout")
    one.record("perplexity", ok=False, latency_ms=5, error_class="timeout")
    assert two.breaker("perplexity").state() == "open"
    two.reset(["perplexity"])
    assert one.breaker("perplexity").state() == "closed"


def test_redis_breaker_falls_back_to_process_state_when_redis_is_down() -> None:
    policy = BreakerPolicy(failure_threshold=1)
    store = RedisBreakerStore.from_url("redis://127.0.0.1:1/0", policy)  # nothing listens on port 1
    board = HealthBoard(policy, FakeClock(), store)
    board.record("gemini", ok=False, latency_ms=5, error_class="server_error")
    assert board.breaker("gemini").state() == "open"


# --- hedged requests -----------------------------------------------------------------------------------------

FAST_HEDGE = {"min_after_s": 0.0, "default_after_s": 0.01}


def test_hedge_wins_and_the_primary_is_cancelled_and_costed() -> None:
    release = threading.Event()
    registry = registry_of(
        {"gemini": [blocking(release, GEMINI_OK)], "perplexity": [CITED], "local": [LOCAL_OK]},
        settings=hermetic_settings(hedge=FAST_HEDGE),
    )
    try:
        result = run(registry)
    finally:
        release.set()
    assert path(result) == [("gemini", "cancelled", "cancelled"), ("perplexity", "ok", None)]
    cancelled = result.attempts[0]
    estimate = estimate_call_cost(registry, "gemini", run_classification(), "q")
    assert cancelled.cost_usd == pytest.approx(estimate, rel=1e-6) and cancelled.cost_usd > 0
    assert cancelled.error and "perplexity answered first" in cancelled.error
    assert result.cost_usd == pytest.approx(sum(a.cost_usd for a in result.attempts))
    # What hedging added is the hedge's own cost (had gemini answered, perplexity is what we paid on top).
    assert result.attempts[1].hedge and not result.attempts[0].hedge
    assert registry.hedge_budget.totals()["extra_usd"] == pytest.approx(result.attempts[1].cost_usd, rel=1e-4)


def test_primary_wins_and_the_hedge_is_cancelled_without_hurting_its_provider() -> None:
    primary_go, hedge_go, hedge_started = threading.Event(), threading.Event(), threading.Event()

    def primary(_messages: Any) -> Any:
        hedge_started.wait(10)  # answer only once the hedge is in flight
        return GEMINI_OK

    def hedge(_messages: Any) -> Any:
        hedge_started.set()
        hedge_go.wait(10)
        return CITED

    registry = registry_of(
        {"gemini": [primary], "perplexity": [hedge], "local": [LOCAL_OK]},
        settings=hermetic_settings(hedge=FAST_HEDGE),
    )
    try:
        result = run(registry)
    finally:
        hedge_go.set()
        primary_go.set()
    assert path(result) == [("perplexity", "cancelled", "cancelled"), ("gemini", "ok", None)]
    assert result.provider == "gemini" and result.fallback_mode is False
    assert registry.health.breaker("perplexity").snapshot().calls == 0


def test_hedge_advances_the_cursor_past_both_providers() -> None:
    hedge_failed = threading.Event()

    def primary(_messages: Any) -> Any:
        hedge_failed.wait(10)
        raise ServerError("500 after the hedge failed")

    def hedge(_messages: Any) -> Any:
        hedge_failed.set()
        raise ServerError("503")

    registry = registry_of(
        {"gemini": [primary], "perplexity": [hedge], "local": [LOCAL_OK]},
        settings=hermetic_settings(hedge=FAST_HEDGE),
    )
    result = run(registry)
    providers = [p for p, _, _ in path(result)]
    # The chain is gemini, perplexity, then local as the last resort of a complex analysis: past both, the primary
    # is not called again; the hedge's step gets its one retry (nothing adequate is left after it, so it is made
    # without a retry budget; the fast hedge may duplicate it), then the last resort answers, marked degraded.
    assert sorted(providers[:2]) == ["gemini", "perplexity"] and providers[-1] == "local"
    assert set(providers[2:-1]) == {"perplexity"}
    assert registry.adapter("perplexity").fake.calls == len(providers) - 2  # type: ignore[attr-defined]
    assert registry.adapter("gemini").fake.calls == 1  # type: ignore[attr-defined]
    assert result.provider == "local" and result.fallback_mode is True


def test_exhausted_hedge_budget_means_no_hedge() -> None:
    release = threading.Event()
    registry = registry_of(
        {"gemini": [blocking(release, GEMINI_OK)], "perplexity": [CITED]},
        settings=hermetic_settings(hedge=FAST_HEDGE),
        hedge_budget=HedgeBudget(max_extra_ratio=0.0, burst_usd=0.0),
    )
    # It has answered before (a hedge over a provider that never answered is a failover, granted regardless), too
    # rarely for its latency to be known (its sub-deadline stays cold_s).
    warm(registry, "gemini", calls=2)
    timer = threading.Timer(0.2, release.set)  # the primary answers on its own, later than any hedge would start
    timer.start()
    try:
        result = run(registry)
    finally:
        timer.cancel()
        release.set()
    assert path(result) == [("gemini", "ok", None)]
    assert registry.adapter("perplexity").fake.calls == 0  # type: ignore[attr-defined]


def test_hedge_budget_reserves_and_settles() -> None:
    clock = FakeClock(0.0)
    budget = HedgeBudget(max_extra_ratio=0.1, window_s=100, burst_usd=0.0, clock=clock)
    assert budget.try_reserve(0.001) is None  # nothing spent yet: no room
    budget.record_spend(0.1)
    first = budget.try_reserve(0.006)
    # [when, usd, bucket token]: 10% of the 0.1 spent has room for it, so no token is spent
    assert first is not None and first[1:] == [0.006, 0.0]
    assert budget.try_reserve(0.006) is None  # the reservation already holds the room
    budget.settle(first, 0.0)  # the loser failed: nothing was duplicated
    assert budget.try_reserve(0.006) is not None
    clock.advance(101)
    assert budget.totals()["spend_usd"] == 0.0


def test_hedge_delay_is_the_observed_quantile_with_a_default_and_a_floor() -> None:
    settings = hermetic_settings(hedge={"min_samples": 20, "default_after_s": 2.0, "min_after_s": 0.25})
    assert hedge_delay_s(settings, 900.0, 5) == 2.0  # too few samples
    assert hedge_delay_s(settings, 900.0, 50) == 0.9
    assert hedge_delay_s(settings, 40.0, 50) == 0.25
    assert hedge_delay_s(settings, 900.0, 50, suspect=True) == 0.25  # its last call failed: hedge at the floor


def run_classification() -> Any:
    from nodes.classify import classification_of

    return classification_of(COMPLEX, 0.5)


# --- a hung primary with the real clients against the fake servers ---------------------------------------------


@pytest.fixture
def servers() -> Iterator[tuple[FakeGemini, FakePerplexity]]:
    with FakeGemini() as gemini, FakePerplexity() as perplexity:
        yield gemini, perplexity


def real_registry(gemini: FakeGemini, perplexity: FakePerplexity, **resilience: dict[str, Any]) -> ProviderRegistry:
    env = {
        "STRATEGIST_DATA_DIR": "/nonexistent",
        "LOCAL_MODEL_PATH": "/nonexistent/m.gguf",
        "GEMINI_API_KEY": "dummy",
        "GEMINI_BASE_URL": gemini.base_url,
        "PERPLEXITY_API_KEY": "dummy",
        "PERPLEXITY_BASE_URL": perplexity.base_url,
    }
    settings = without_cascade(load_settings(env))
    return ProviderRegistry(with_resilience(settings, **resilience) if resilience else settings)


def test_hung_primary_is_answered_by_the_next_provider(servers: tuple[FakeGemini, FakePerplexity]) -> None:
    gemini, perplexity = servers
    gemini.behaviour = Hang()
    perplexity.behaviour = Reply(text="Booth data shows turnout fell.", citations=[Source(url="https://eci.gov.in/a")])
    registry = real_registry(gemini, perplexity, hedge={"default_after_s": 0.3})
    result = run(registry)
    assert result.provider == "perplexity" and result.answer
    assert path(result) == [("gemini", "cancelled", "cancelled"), ("perplexity", "ok", None)]
    assert gemini.request_count == 1 and perplexity.request_count == 1


def test_retry_after_from_the_wire_is_honoured(servers: tuple[FakeGemini, FakePerplexity]) -> None:
    from providers.testing.servers import Fail

    gemini, perplexity = servers
    gemini.script([Fail(status=429, retry_after=1)])
    gemini.behaviour = Reply(text="Map every booth first.")
    registry = real_registry(gemini, perplexity, hedge={"enabled": False})
    warm(registry, "gemini")
    clock = FakeClock()
    result = run(registry, clock=clock)
    assert path(result) == [("gemini", "error", "rate_limited"), ("gemini", "ok", None)]
    assert len(clock.sleeps) == 1 and clock.sleeps[0] >= 1.0


# --- visibility and control ----------------------------------------------------------------------------------


def test_health_report_and_reset() -> None:
    board = HealthBoard(BreakerPolicy(failure_threshold=1), clock=FakeClock(0.0))
    registry = registry_of({"gemini": [GEMINI_OK], "perplexity": [CITED]}, health=board)
    warm(registry, "perplexity", calls=3, latency_ms=200)
    board.record("gemini", ok=False, latency_ms=5, error_class="server_error")
    report = health_report(registry)
    assert report["components"]["gemini"]["circuit"] == "open"
    assert report["components"]["gemini"]["available"] is False
    assert report["components"]["perplexity"]["p95_ms"] == 200.0
    assert report["system_status"] == "degraded" and report["circuit_store"] == "memory"
    assert "gemini" in render_health(report)
    body = reset_circuits(registry)
    assert {k: body[k] for k in ("status", "message", "action")} == {
        "status": "success",
        "message": "All circuit breakers have been reset",
        "action": "circuit_breaker_reset",
    }
    assert "timestamp" in body
    assert health_report(registry)["components"]["gemini"]["circuit"] == "closed"
    with pytest.raises(LookupError):
        reset_circuits(registry, "nope")


def test_admin_token() -> None:
    settings = load_settings({"STRATEGIST_DATA_DIR": "/nonexistent", "STRATEGIST_ADMIN_TOKEN": "s3cret"})
    assert admin_token_ok(settings, "s3cret")
    assert not admin_token_ok(settings, "wrong") and not admin_token_ok(settings, None)
    assert not admin_token_ok(hermetic_settings(), "anything")  # no token configured: nobody is admin


def test_a_failed_hedge_is_retried_like_any_step_and_the_primary_is_not_called_again() -> None:
    hedge_failed = threading.Event()

    def primary(_messages: Any) -> Any:
        hedge_failed.wait(10)
        raise ProviderTimeout("no answer")

    def hedge(_messages: Any) -> Any:
        hedge_failed.set()
        raise ServerError("503")

    registry = registry_of(
        {"gemini": [primary], "perplexity": [hedge, CITED], "local": [LOCAL_OK]},
        # The retry answers at once, well before its own hedge (after 0.2 s) would start.
        settings=hermetic_settings(hedge={"min_after_s": 0.2, "default_after_s": 0.2}),
    )
    warm(registry, "perplexity")  # it has earned a retry
    result = run(registry)
    assert sorted(path(result)[:2]) == [("gemini", "error", "timeout"), ("perplexity", "error", "server_error")]
    assert path(result)[2:] == [("perplexity", "ok", None)]
    assert registry.adapter("gemini").fake.calls == 1  # type: ignore[attr-defined]


def test_redis_url_in_the_configuration_shares_circuits(redis_url: str) -> None:
    env = {"STRATEGIST_DATA_DIR": "/nonexistent", "REDIS_URL": redis_url, "GEMINI_API_KEY": "dummy"}
    one, two = ProviderRegistry(load_settings(env)), ProviderRegistry(load_settings(env))
    assert one.health.store.name == "redis"
    for _ in range(one.health.policy.failure_threshold):
        one.health.record("gemini", ok=False, latency_ms=5, error_class="server_error")
    assert two.availability("gemini").reason == "circuit open after recent failures"
    assert health_report(two)["components"]["gemini"]["circuit"] == "open"
    reset_circuits(two)
    assert one.health.breaker("gemini").state() == "closed"


def test_a_provider_can_have_its_own_hedge_delay_before_samples() -> None:
    registry = registry_of({"local": [LOCAL_OK]})
    timing = registry.health.breaker("local").hedge_timing(registry.settings)
    assert timing.hedge_after_s == registry.settings.providers["local"].hedge_after_s == 15.0
    gemini = registry.health.breaker("gemini").hedge_timing(registry.settings)
    assert gemini.hedge_after_s == registry.settings.resilience.hedge.default_after_s
    assert gemini.slow_after_s == float("inf")  # its usual latency is not known yet: not a guess
