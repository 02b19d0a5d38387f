"""Failover that holds end to end (issue 11): one test per cause of a hung provider costing tens of seconds.

- cause 1: a provider that failed or hung in this analysis is not asked again (cross-check included), and
  checkers are ordered by health and latency;
- cause 2: each call has a sub-deadline from its provider's observed latency, the cross-check a share;
- cause 3: hedging keeps working when traffic is low (token bucket) and a slow tail cannot switch it off
  (robust threshold);
- cause 4: abandoned calls are aborted (the connection is closed; the local model stops between tokens),
  and a loser's cost is settled from its real usage, or counted in full;
- the local model's bounded queue (issue 14 item 4, issue 10 item 8): a job whose wait would blow its deadline
  goes to the next tier, and an overload with nothing else to answer is a 503 with Retry-After.

No assertion is about elapsed time: clocks are injected, waits are events, and a hung call is one that the
fake server holds until the test ends.
"""

from __future__ import annotations

import queue
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver

from graphs.analysis import build_analysis_graph
from graphs.context import Context
from graphs.events import RateLimitWait, events_of
from graphs.result import AnalysisResult
from graphs.state import AnalysisInput, AnalysisState, Candidate, ChainStep
from graphs.stores.ledger import SqliteLedger
from nodes.classify import classification_of
from nodes.policy.checkers import checker_chain
from nodes.policy.deadlines import call_deadline_s, cross_check_deadline_s
from nodes.policy.exclusion import failed_providers
from nodes.policy.hedging import Call, settle_abandoned, wait_for_settlements
from nodes.policy.query_classifier import QueryNeeds
from nodes.route import plan
from providers.base import Prompt, ProviderAdapter
from providers.config import Settings, load_settings
from providers.errors import (
    CallAborted,
    MalformedResponse,
    ProviderConnectionError,
    ProviderTimeout,
    RateLimited,
    ServerError,
)
from providers.registry import ProviderRegistry
from providers.resilience.board import HealthBoard
from providers.resilience.breaker import CircuitBreaker, LatencyView
from providers.resilience.breaker_store import BreakerPolicy
from providers.resilience.hedge_budget import HedgeBudget
from providers.resilience.stall import StallWatch
from providers.testing import fake_registry, reply
from providers.testing.servers import FakeGemini, FakePerplexity, Hang, Reply, Source
from strategist import open_orchestrator

COMPLEX = QueryNeeds.confident(0.04, "complex", "scenario")  # chain: gemini -> perplexity -> local
SIMPLE = QueryNeeds.confident(0.03, "simple", "summary")  # chain: local -> gemini -> perplexity
CITED = reply(
    "Turnout in Malakpet fell four points since 2019. The commission published booth data.",
    citations=["https://eci.gov.in/turnout"],
)
VERDICT = reply(
    '{"answer": "Turnout fell four points in Malakpet.", "confidence": 0.7, '
    '"verdicts": [{"claim": 1, "verdict": "supported", "reason": "booth data"}]}'
)
PROMPT = Prompt(system="Answer briefly.", user="Say hello.")


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def settings_with(**resilience: dict[str, Any]) -> Settings:
    settings = load_settings({"STRATEGIST_DATA_DIR": "/nonexistent", "LOCAL_MODEL_PATH": "/nonexistent/m.gguf"})
    sections = settings.resilience
    changed = {name: getattr(sections, name).model_copy(update=fields) for name, fields in resilience.items()}
    return settings.model_copy(update={"resilience": sections.model_copy(update=changed)})


def run(
    registry: ProviderRegistry,
    classified: QueryNeeds,
    correct_cost: Callable[[str, int, float], None] | None = None,
    **state: Any,
) -> AnalysisResult:
    graph = build_analysis_graph().compile(checkpointer=InMemorySaver())
    clock = FakeClock()
    ctx = Context(
        registry=registry,
        classifier=lambda _q: classified,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(7),
        correct_cost=correct_cost,
    )
    graph_input = cast(AnalysisInput, {"query": "q", **state})
    out = graph.invoke(graph_input, {"configurable": {"thread_id": str(uuid.uuid4())}}, context=ctx)
    return AnalysisResult.model_validate(out["result"])


def calls(registry: ProviderRegistry, name: str) -> int:
    return int(registry.adapter(name).chat_model().calls)  # type: ignore[attr-defined]  # ScriptedChat


# --- cause 1: not asked again; checkers by health ----------------------------------------------------------------


def test_a_provider_that_timed_out_is_not_asked_again_by_the_cross_check() -> None:
    """Gemini times out, Perplexity answers, the cross-check is requested: before, premium came first among
    checkers, so Gemini was asked again (and waited out); now the local model checks."""
    registry = fake_registry(
        {"gemini": [ProviderTimeout("no answer within 18s")], "perplexity": [CITED], "local": [VERDICT]},
        settings=settings_with(hedge={"enabled": False}),
    )
    for _ in range(10):  # known to answer fast: a check by it fits the time the answer took
        registry.health.record("local", ok=True, latency_ms=100.0)
    result = run(registry, COMPLEX, cross_check=True)
    checks = [a for a in result.attempts if a.role == "cross_check"]
    assert [a.provider for a in checks] == ["local"]
    assert calls(registry, "gemini") == 1


def test_a_failed_provider_is_not_asked_to_check_even_when_it_is_the_only_checker() -> None:
    state = cast(AnalysisState, {"attempts": [attempt("gemini", "error", "timeout")], "query": "q"})
    registry = fake_registry({"gemini": [CITED], "perplexity": [CITED]})  # local unavailable
    chain, notes = checker_chain(candidate("perplexity", "perplexity"), state, registry)
    assert chain == [] and notes == ["gemini not asked: it failed earlier in this analysis"]


def test_checkers_are_ordered_by_health_then_tier() -> None:
    registry = fake_registry({"gemini": [CITED], "perplexity": [CITED], "local": [CITED]})
    state = cast(AnalysisState, {"attempts": [], "query": "q"})
    answer = candidate("perplexity", "perplexity")
    healthy, _ = checker_chain(answer, state, registry)
    assert [s["provider"] for s in healthy] == ["gemini", "local"]
    registry.health.record("gemini", ok=False, latency_ms=100.0, error_class="server_error")  # suspect now
    suspect, _ = checker_chain(answer, state, registry)
    assert [s["provider"] for s in suspect] == ["local", "gemini"]


def test_a_busy_or_slow_checker_is_not_asked() -> None:
    """The local model under load: before, it was only ordered last and, being the only checker left, was asked
    and waited for (its queue filled with checks, so a last-resort answer found it full). Now a busy queue, or a
    checker that usually takes longer than the check may hold the answer back, is left out."""
    registry = fake_registry({"gemini": [CITED], "perplexity": [CITED], "local": [VERDICT]})
    inner = registry.adapter("local")
    local = QueuedLocal(
        name="local", tier="local", vendor="local", model=inner.model, chat_factory=inner.chat_model, timeout_s=60
    )
    registry._injected["local"] = local
    state = cast(AnalysisState, {"attempts": [attempt("gemini", "error", "timeout")], "query": "q"})
    answer = candidate("perplexity", "perplexity")
    idle, _ = checker_chain(answer, state, registry, remaining_s=80.0)
    assert [s["provider"] for s in idle] == ["local"]
    local.wait_s = 0.5  # one call ahead of it
    loaded, notes = checker_chain(answer, state, registry, remaining_s=80.0)
    assert loaded == [] and any(n.startswith("local not asked: it is busy") for n in notes)
    local.wait_s = 0.0  # idle, but usually 15 s (its hedge_after_s, before any sample): the answer took 2 s
    slow, notes = checker_chain(answer, state, registry, remaining_s=80.0, answer_s=2.0)
    assert slow == [] and any(n.startswith("local not asked: it usually takes 15.0 s") for n in notes)


def test_a_provider_that_has_gone_silent_is_not_asked_to_check() -> None:
    clock = FakeClock(0.0)
    registry = fake_registry({"gemini": [CITED], "perplexity": [CITED]}, health=HealthBoard(stalls=StallWatch(clock)))
    state = cast(AnalysisState, {"attempts": [], "query": "q"})
    for _ in range(2):
        registry.health.stalls.start("gemini", 1.0)
    clock.advance(2.0)
    chain, notes = checker_chain(candidate("perplexity", "perplexity"), state, registry)
    assert chain == [] and notes == ["gemini not asked: it has stopped answering (calls overdue, none answered since)"]


def test_a_provider_the_route_found_silent_is_not_asked_to_check_once_the_watch_forgets_it() -> None:
    """Routed while Gemini was silent, the analysis answered from Perplexity, so Gemini never failed in it; by the
    check its overdue calls had been aborted (the stall watch shows nothing), and the check waited out its bound on
    a Gemini still hung (bench/chaos.py, warm hang). The chain's mark keeps it out."""
    clock = FakeClock(0.0)
    registry = fake_registry({"gemini": [CITED], "perplexity": [CITED]}, health=HealthBoard(stalls=StallWatch(clock)))
    tickets = [registry.health.stalls.start("gemini", 1.0) for _ in range(2)]
    clock.advance(2.0)
    state = cast(AnalysisState, {"attempts": [], "query": "q", "chain": plan_chain(registry)})
    assert [(s["provider"], s.get("silent", False)) for s in state["chain"]][:2] == [
        ("perplexity", False),
        ("gemini", True),
    ]
    for ticket in tickets:
        registry.health.stalls.end("gemini", ticket, answered=False)
    chain, notes = checker_chain(candidate("perplexity", "perplexity"), state, registry)
    assert chain == [] and notes == ["gemini not asked: it had stopped answering when this analysis was routed"]


def plan_chain(registry: ProviderRegistry) -> list[ChainStep]:
    return plan(registry, classification_of(COMPLEX, 0.5), "q", {})["chain"]


def test_a_check_in_flight_is_evidence_of_a_silent_checker() -> None:
    """A cross-check call is noted in its provider's stall watch while it runs, as answer calls are: once the
    router puts a silent provider behind the ones that answer, its checks are the calls that show it silent."""
    seen: list[int] = []

    def checking(_messages: Any) -> Any:
        seen.append(registry.health.stalls.in_flight("perplexity"))
        return reply(str(VERDICT.text), citations=["https://eci.gov.in/turnout"])

    registry = fake_registry({"gemini": [reply("Gemini answer.")], "perplexity": [checking], "local": [reply("x")]})
    result = run(registry, COMPLEX, cross_check=True)
    assert [a.provider for a in result.attempts if a.role == "cross_check"] == ["perplexity"]
    assert seen == [1] and registry.health.stalls.in_flight("perplexity") == 0


def test_a_fresh_fact_question_waits_out_its_only_providers_rate_limit_instead_of_answering_from_memory() -> None:
    """Perplexity answered 429 twice with Retry-After 2 s: a fresh-fact question (only web search serves it) used to
    be routed to the local model alone and answered from memory (or refused when its queue was full: 1 to 53 of 100
    analyses in bench/chaos.py's 429 storms). It is asked once its 2 s are over, on the injected clock."""
    clock = FakeClock()
    registry = fake_registry({"gemini": [reply("x")], "perplexity": [CITED], "local": [reply("From memory.")]})
    registry.health = HealthBoard(clock=clock)
    for _ in range(2):
        registry.health.record("perplexity", ok=False, latency_ms=30.0, error_class="rate_limited", retry_after_s=2.0)
    graph = build_analysis_graph().compile(checkpointer=InMemorySaver())
    ctx = Context(
        registry=registry,
        classifier=lambda _q: QueryNeeds.confident(0.95, "moderate", "fact_lookup"),
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(7),
    )
    config: RunnableConfig = {"configurable": {"thread_id": str(uuid.uuid4())}}
    graph_input = cast(AnalysisInput, {"query": "q"})
    events = list(events_of(graph.stream(graph_input, config, context=ctx, stream_mode=["custom", "updates"])))
    out = graph.get_state(config).values
    result = AnalysisResult.model_validate(out["result"])
    assert result.provider == "perplexity" and [a.provider for a in result.attempts if a.role == "answer"] == [
        "perplexity"
    ]
    assert calls(registry, "local") == 0 and not result.fallback_mode
    assert [e for e in events if isinstance(e, RateLimitWait)] == [RateLimitWait(provider="perplexity", wait_s=2.0)]
    assert registry.health.cooldowns.left_s("perplexity") == 0.0  # the clock moved by the wait


def test_the_checks_of_one_answer_share_one_bound() -> None:
    """The first checker's reply is unusable after 0.6 s; the answer took no time on the analysis's clock, so the
    checks may hold it back min_s (1 s) in all. Before, the next checker got the whole allowance again (two
    checks of 2 s each behind a 2 s answer in the chaos run); now it is not asked."""

    def slow_unusable(_messages: Any) -> Any:
        threading.Event().wait(0.6)  # a latency of at least 0.6 s, however loaded the machine
        return reply("not a verdict at all", citations=["https://eci.gov.in/a"])

    registry = fake_registry(
        {"gemini": [reply("Gemini answer.")], "perplexity": [slow_unusable], "local": [VERDICT]},
        settings=settings_with(hedge={"enabled": False}),
    )
    for _ in range(10):  # fast and idle: only the shared bound keeps it out
        registry.health.record("local", ok=True, latency_ms=10.0)
    result = run(registry, COMPLEX, cross_check=True)
    assert [a.provider for a in result.attempts if a.role == "cross_check"] == ["perplexity"]
    assert calls(registry, "local") == 0 and result.cross_check is None


def test_an_overtaken_primary_counts_as_failed_and_an_overtaken_hedge_does_not() -> None:
    primary = attempt("gemini", "cancelled", "cancelled")
    hedge = attempt("perplexity", "cancelled", "cancelled") | {"hedge": True}
    refused = attempt("local", "error", "bad_request")
    assert failed_providers([primary, hedge, refused]) == {"gemini"}


# --- cause 2: sub-deadlines --------------------------------------------------------------------------------------


class RecordingAdapter(ProviderAdapter):
    """Records the timeout each call was given, then answers through the scripted chat model."""

    timeouts: list[float]

    def invoke(self, prompt: Prompt, *, timeout_s: float | None = None, abort: threading.Event | None = None) -> Any:
        self.timeouts.append(float("inf") if timeout_s is None else timeout_s)
        return super().invoke(prompt, timeout_s=timeout_s, abort=abort)


def recording(registry: ProviderRegistry, name: str) -> RecordingAdapter:
    inner = registry.adapter(name)
    adapter = RecordingAdapter(
        name=name, tier=inner.tier, vendor=inner.vendor, model=inner.model, chat_factory=inner.chat_model, timeout_s=60
    )
    adapter.timeouts = []
    registry._injected[name] = adapter
    return adapter


def test_a_call_with_fallbacks_left_gets_its_providers_sub_deadline_not_the_requests_share() -> None:
    """Before: the first call of a standard analysis could take 60% of 90 s; now a multiple of its p95."""
    registry = fake_registry(
        {"gemini": [reply("Gemini answer.")], "perplexity": [CITED], "local": [reply("x")]},
        settings=settings_with(hedge={"enabled": False}),
    )
    for _ in range(10):
        registry.health.record("gemini", ok=True, latency_ms=400.0)
    gemini = recording(registry, "gemini")
    run(registry, COMPLEX, depth="standard")
    d = registry.settings.resilience.deadlines
    assert gemini.timeouts == [pytest.approx(max(d.min_s, d.p95_multiple * 0.4))]


def test_sub_deadline_is_floored_cold_and_the_last_step_keeps_the_time_left() -> None:
    resilience = settings_with().resilience
    cold = LatencyView(median_s=None, robust_p95_s=None, samples=0, suspect=False, state="closed")
    fast = LatencyView(median_s=0.05, robust_p95_s=0.1, samples=50, suspect=False, state="closed")
    assert call_deadline_s(90.0, True, cold, resilience) == resilience.deadlines.cold_s
    assert call_deadline_s(90.0, True, fast, resilience) == resilience.deadlines.min_s
    assert call_deadline_s(1.0, True, fast, resilience) == pytest.approx(0.6)  # the share of what is left
    assert call_deadline_s(90.0, False, fast, resilience) == 90.0  # nothing comes after the last step
    assert cross_check_deadline_s(4.0, cold, resilience) == pytest.approx(1.0)  # a share of the time left
    # ... and no more than half the time the answer took, at least the checker's usual latency (min_s cold): a
    # fast failover answer is not held back seconds.
    assert cross_check_deadline_s(80.0, cold, resilience, answer_s=0.4) == resilience.deadlines.min_s
    assert cross_check_deadline_s(80.0, fast, resilience, answer_s=0.4) == pytest.approx(0.2)
    assert cross_check_deadline_s(80.0, fast, resilience, answer_s=0.1) == pytest.approx(0.1)  # its robust p95
    assert cross_check_deadline_s(80.0, cold, resilience, answer_s=6.0) == pytest.approx(3.0)
    # ... for all checks of one answer together: a second checker gets what the first one left, if anything.
    assert cross_check_deadline_s(80.0, cold, resilience, answer_s=6.0, held_s=2.0) == pytest.approx(1.0)
    assert cross_check_deadline_s(80.0, cold, resilience, answer_s=6.0, held_s=4.0) == 0.0
    assert cross_check_deadline_s(80.0, cold, resilience) == resilience.deadlines.cold_s  # its own limit


# --- cause 3: hedging at low traffic, robust threshold -----------------------------------------------------------


def test_token_bucket_grants_a_cold_process_a_burst_of_hedges_then_refills() -> None:
    clock = FakeClock(0.0)
    budget = HedgeBudget(max_extra_ratio=0.1, burst_usd=0.0, burst_hedges=2, burst_refill_s=10.0, clock=clock)
    assert budget.try_reserve(0.01) is not None
    assert budget.try_reserve(0.01) is not None
    assert budget.try_reserve(0.01) is None  # no spend yet to take a share of, and the burst is used
    clock.advance(10.0)
    assert budget.try_reserve(0.01) is not None  # one token back
    assert budget.try_reserve(0.01) is None


def test_a_hedge_over_a_provider_that_never_answered_needs_no_budget() -> None:
    """A cold server meets a hung primary with an empty hedge budget. Before, the hedge was refused and the call
    waited for its cold sub-deadline; until a provider has answered once, a hedge over it is a failover."""
    release = threading.Event()

    def hung(_messages: Any) -> Any:
        release.wait(120)
        return reply("Gemini, much too late.")

    registry = fake_registry(
        {"gemini": [hung], "perplexity": [CITED], "local": [reply("x")]},
        settings=settings_with(hedge={"min_after_s": 0.0, "default_after_s": 0.01}, deadlines={"cold_s": 600.0}),
    )
    registry.hedge_budget = HedgeBudget(max_extra_ratio=0.0, burst_usd=0.0)
    try:
        result = run(registry, COMPLEX, depth="quick")
    finally:
        release.set()
    answers = [(a.provider, a.outcome, a.hedge) for a in result.attempts if a.role == "answer"]
    assert answers == [("gemini", "cancelled", False), ("perplexity", "ok", True)]


def test_slow_answers_cannot_push_the_hedge_threshold_to_the_tail() -> None:
    """20 answers at 100 ms and 5 that stalled 4 s then answered: the p95 is 4 s (hedging would wait 4 s on
    every hang); the robust threshold stays near the typical latency, and is capped in any case."""
    settings = settings_with()
    breaker = CircuitBreaker("gemini", BreakerPolicy(), FakeClock())
    for latency in [100.0] * 20 + [4000.0] * 5:
        breaker.record(True, latency)
    assert breaker.snapshot().p95_ms == 4000.0
    timing = breaker.hedge_timing(settings)
    assert timing.hedge_after_s < 0.5
    for _ in range(200):
        breaker.record(True, 60_000.0)
    assert breaker.hedge_timing(settings).hedge_after_s == settings.resilience.hedge.max_after_s


# --- cause 4: abandoned calls are aborted and settled ------------------------------------------------------------


@pytest.fixture
def servers() -> Iterator[tuple[FakeGemini, FakePerplexity]]:
    with FakeGemini() as gemini, FakePerplexity() as perplexity:
        yield gemini, perplexity


def real_registry(gemini: FakeGemini, perplexity: FakePerplexity, settings: Settings) -> ProviderRegistry:
    env = {
        "STRATEGIST_DATA_DIR": "/nonexistent",
        "LOCAL_MODEL_PATH": "/nonexistent/m.gguf",
        "GEMINI_API_KEY": "dummy",
        "GEMINI_BASE_URL": gemini.base_url,
        "PERPLEXITY_API_KEY": "dummy",
        "PERPLEXITY_BASE_URL": perplexity.base_url,
    }
    loaded = load_settings(env)
    # A client timeout far beyond the tests' waits: a connection closed in time was closed by the abort.
    providers = {name: ps.model_copy(update={"timeout_s": CLIENT_TIMEOUT_S}) for name, ps in loaded.providers.items()}
    return ProviderRegistry(loaded.model_copy(update={"resilience": settings.resilience, "providers": providers}))


CLIENT_TIMEOUT_S = 600.0
CLOSED_WITHIN_S = 60.0  # generous, and still a tenth of the client's own timeout


def test_an_aborted_call_closes_its_connection(servers: tuple[FakeGemini, FakePerplexity]) -> None:
    """Before, an abandoned call kept its connection (and a pool thread the interpreter joins at exit) until the
    client's own 30 s timeout; now setting the abort event closes the request."""
    gemini, perplexity = servers
    gemini.behaviour = Hang()
    registry = real_registry(gemini, perplexity, settings_with())
    abort = threading.Event()
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            registry.adapter("gemini").invoke(PROMPT, timeout_s=60, abort=abort)
        except BaseException as exc:  # the outcome is what the test checks
            outcome.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    assert wait_for(lambda: gemini.request_count == 1)
    abort.set()
    thread.join(30)
    assert outcome and isinstance(outcome[0], CallAborted)
    assert gemini.requests[0].client_gone.wait(CLOSED_WITHIN_S)


def test_a_call_past_its_sub_deadline_closes_its_connection(servers: tuple[FakeGemini, FakePerplexity]) -> None:
    gemini, perplexity = servers
    gemini.behaviour = Hang()
    registry = real_registry(gemini, perplexity, settings_with())
    with pytest.raises(ProviderTimeout):
        registry.adapter("gemini").invoke(PROMPT, timeout_s=0.2)
    assert gemini.requests[0].client_gone.wait(CLOSED_WITHIN_S)


def test_hung_primary_is_aborted_and_the_cross_check_does_not_ask_it_again(
    servers: tuple[FakeGemini, FakePerplexity],
) -> None:
    gemini, perplexity = servers
    gemini.behaviour = Hang()
    perplexity.behaviour = Reply(text="Booth data shows turnout fell.", citations=[Source(url="https://eci.gov.in/a")])
    settings = settings_with(hedge={"default_after_s": 0.2}, deadlines={"loser_grace_s": 0.0})
    registry = real_registry(gemini, perplexity, settings)
    result = run(registry, COMPLEX, cross_check=True)
    assert result.provider == "perplexity"
    assert gemini.request_count == 1  # not asked again by the cross-check
    assert gemini.requests[0].client_gone.wait(CLOSED_WITHIN_S)  # and the hung call was closed, not left to its timeout


def test_a_failed_duplicate_hedge_uses_one_step_and_the_next_step_is_asked() -> None:
    """A fresh-fact question: Perplexity is slow, so it is hedged with a duplicate of itself (no other adequate step),
    and both calls fail. The pair used one step of the chain; counted by calls, it moved the cursor past the next
    step, and the first last resort was never asked."""
    second = threading.Event()

    def slow_fail(_messages: Any) -> Any:
        second.wait(10)
        raise ServerError("503 slow")

    def fast_fail(_messages: Any) -> Any:
        second.set()
        raise ServerError("503")

    registry = fake_registry(
        {"perplexity": [slow_fail, fast_fail], "gemini": [reply("Gemini, from memory.")], "local": [reply("Local.")]},
        settings=settings_with(hedge={"min_after_s": 0.0, "default_after_s": 0.0}),
    )
    result = run(registry, QueryNeeds.confident(0.95, "moderate", "fact_lookup"), depth="quick")
    chain = [s.provider for s in result.routing.chain]
    assert chain[0] == "perplexity" and result.routing.chain[1].last_resort
    assert any(a.provider == "perplexity" and a.hedge for a in result.attempts)  # the duplicate was made
    assert result.provider == chain[1] and calls(registry, chain[1]) == 1


def run_with_gemini_silent(
    scripts: dict[str, list[Any]], release: threading.Event, warm: str | None = None
) -> tuple[ProviderRegistry, AnalysisResult]:
    """Run a complex quick analysis, hedged at once, while two calls to Gemini are overdue on the stall watch's own
    (fake) clock: the route puts Perplexity first and marks Gemini silent. ``warm`` has five answers on record."""
    clock = FakeClock(0.0)
    registry = fake_registry(
        {**scripts, "local": [reply("x")]},
        settings=settings_with(hedge={"min_after_s": 0.0, "default_after_s": 0.0}),
        health=HealthBoard(stalls=StallWatch(clock)),
    )
    for _ in range(5 if warm else 0):
        registry.health.record(str(warm), ok=True, latency_ms=10.0)
    for _ in range(2):
        registry.health.stalls.start("gemini", 1.0)
    clock.advance(2.0)
    try:
        result = run(registry, COMPLEX, depth="quick")
    finally:
        release.set()
    assert [(s.provider, s.silent) for s in result.routing.chain][:2] == [("perplexity", False), ("gemini", True)]
    return registry, result


def test_a_slow_call_is_hedged_with_a_duplicate_not_with_the_silent_provider_the_route_put_next() -> None:
    """Gemini was silent when the complex question was routed, so Perplexity, known to answer, leads and Gemini comes
    second. Before, Perplexity's slow call was hedged with Gemini, which hung as well, and the analysis waited out
    Perplexity's tail (1.3 s in bench/chaos.py's cold hung row); now the hedge is a second Perplexity request."""
    release, second = threading.Event(), threading.Event()

    def hung(_messages: Any) -> Any:
        release.wait(120)
        return reply("Gemini, much too late.")

    def slow(_messages: Any) -> Any:
        second.wait(120)
        return CITED

    def fast(_messages: Any) -> Any:
        second.set()
        return CITED

    registry, result = run_with_gemini_silent({"gemini": [hung], "perplexity": [slow, fast]}, release, "perplexity")
    assert result.provider == "perplexity" and calls(registry, "gemini") == 0
    answers = [a for a in result.attempts if a.role == "answer"]
    # Which of the two requests meets the slow reply depends on which thread reaches the fake first.
    assert sorted((a.provider, a.hedge) for a in answers) == [("perplexity", False), ("perplexity", True)]
    assert sorted(a.outcome for a in answers) == ["cancelled", "ok"]


def test_over_a_primary_with_no_answers_on_record_the_silent_next_step_is_still_the_hedge() -> None:
    """The same route, but Perplexity has not answered yet (a cold start): a duplicate of it could hang beside it,
    and the silent mark may be a false alarm (bench/chaos.py's cold hung row once took 14.5 s, most likely by a hedge
    that went to a second request to a hung provider with nothing on record). Here Gemini's silence was a false
    alarm, and it answers the hedge."""
    release = threading.Event()

    def slow(_messages: Any) -> Any:
        release.wait(120)
        return CITED

    registry, result = run_with_gemini_silent({"gemini": [reply("Gemini, after all.")], "perplexity": [slow]}, release)
    assert (result.provider, calls(registry, "perplexity")) == ("gemini", 1)
    assert next(a for a in result.attempts if a.hedge).provider == "gemini"


def test_a_question_whose_every_provider_failed_once_is_asked_again_while_time_is_left() -> None:
    """bench/chaos.py, 20% random errors: Perplexity answered 503 and then a garbled body, Gemini dropped the
    connection and the local model answered 500, all within 0.75 s of a 90 s deadline, and the fresh-fact question
    went unanswered. Now its adequate provider is asked a third time, after a backoff on the injected clock."""
    registry = fake_registry(
        {
            "perplexity": [ServerError("503"), MalformedResponse("garbled"), CITED],
            "gemini": [ProviderConnectionError("reset")],
            "local": [ServerError("500")],
        }
    )
    result = run(registry, QueryNeeds.confident(0.95, "moderate", "fact_lookup"))
    assert [(a.provider, a.outcome) for a in result.attempts if a.role == "answer"] == [
        ("perplexity", "error"),
        ("perplexity", "error"),
        ("gemini", "error"),
        ("local", "error"),
        ("perplexity", "ok"),
    ]
    assert result.provider == "perplexity" and not result.fallback_mode


def test_past_the_retry_bound_a_provider_with_retry_budget_is_asked_again() -> None:
    """bench/chaos.py seed 27: a fresh-fact question's Perplexity failed three times in a row while the other
    providers could not answer, and the analysis ended unanswered after half a second of its 90 s deadline. Now a
    provider whose retry budget has room (answers on record) is asked up to five times; one without answers on
    record is not (the exhausted-chain test in tests/unit/test_graph.py)."""
    registry = fake_registry({"perplexity": [ServerError("503"), ServerError("503"), RateLimited("429"), CITED]})
    for _ in range(10):
        registry.health.record("perplexity", ok=True, latency_ms=100.0)
    result = run(registry, QueryNeeds.confident(0.95, "moderate", "fact_lookup"))
    assert [(a.provider, a.outcome) for a in result.attempts if a.role == "answer"] == [
        ("perplexity", "error"),
        ("perplexity", "error"),
        ("perplexity", "error"),
        ("perplexity", "ok"),
    ]
    assert result.provider == "perplexity" and not result.fallback_mode


def test_a_retry_of_the_last_step_gets_its_providers_own_limit_not_all_the_time_left() -> None:
    """A retry has something after it even on the chain's last step (another retry, the chain asked again): a hung
    retry is cut at its provider's own limit (min_s here), not held to the deadline as the last step's first call
    would be. The limit is in the timeout's message: computed, not measured."""
    release = threading.Event()

    def hung(_messages: Any) -> Any:
        release.wait(120)
        return CITED

    registry = fake_registry(
        {"perplexity": [ServerError("503"), hung, CITED]},
        settings=settings_with(hedge={"enabled": False}, deadlines={"min_s": 0.05, "p95_multiple": 1.0}),
    )
    for _ in range(10):
        registry.health.record("perplexity", ok=True, latency_ms=10.0)
    try:
        result = run(registry, QueryNeeds.confident(0.95, "moderate", "fact_lookup"))
    finally:
        release.set()
    answers = [a for a in result.attempts if a.role == "answer"]
    assert [(a.provider, a.outcome, a.error_class) for a in answers] == [
        ("perplexity", "error", "server_error"),
        ("perplexity", "error", "timeout"),
        ("perplexity", "ok", None),
    ]
    assert answers[1].error and "no answer within 0.05s" in answers[1].error


def loser(registry: ProviderRegistry, *, hedge: bool) -> Call:
    call = Call(
        step={"provider": "perplexity", "tier": "realtime", "model": "perplexity/sonar", "reason": "test"},
        started_at=0.0,
        started=0.0,
        hedge=hedge,
        slow_after_s=1.0,
    )
    return call


def test_a_loser_that_never_answers_is_aborted_counted_as_a_timeout_and_costed_in_full() -> None:
    registry = fake_registry({"perplexity": [CITED]})
    call = loser(registry, hedge=False)
    settle_abandoned(registry, call, 0.02, None, grace_s=1.0, wait=lambda _e, _t: False, background=False)
    assert call.abort.is_set()
    snapshot = registry.health.breaker("perplexity").snapshot()
    assert snapshot.calls == 1 and snapshot.consecutive_failures == 1
    assert registry.hedge_budget.totals()["spend_usd"] == pytest.approx(0.02)


def test_settlements_still_running_can_be_waited_for_before_the_stores_close() -> None:
    """A host that closes its stores while its process goes on (bench/chaos.py between scenarios) waits for the
    losers still settling, so their real cost reaches the ledger: before, it came after the ledger had closed."""
    registry = fake_registry({"perplexity": [CITED]})
    call, finish = loser(registry, hedge=False), threading.Event()
    costs: list[float] = []

    def wait(_event: threading.Event, _timeout_s: float) -> bool:
        finish.wait(10)
        return True  # the call completed within its grace

    call.reply = registry.adapter("perplexity").invoke(PROMPT)
    call.done.set()
    settle_abandoned(registry, call, 0.02, None, grace_s=1.0, wait=wait, on_cost=costs.append)
    assert wait_for_settlements(0.0) == 1 and costs == []
    finish.set()
    assert wait_for_settlements(10.0) == 0 and len(costs) == 1


def test_an_orchestrator_block_waits_for_losers_still_settling_before_its_ledger_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Python host's ``with open_orchestrator()`` block closes its stores while the process goes on: a loser that
    completes after the block has ended still corrects its cost, because the block waits for it first."""
    registry = fake_registry({"perplexity": [CITED]})
    call, finish = loser(registry, hedge=False), threading.Event()
    call.reply = registry.adapter("perplexity").invoke(PROMPT)
    call.done.set()
    corrected: list[float] = []

    def block_ended(timeout_s: float) -> int:  # only now does the loser complete
        finish.set()
        return wait_for_settlements(timeout_s)

    def completes_once_the_block_ended(_event: threading.Event, _timeout_s: float) -> bool:
        finish.wait(10)
        return True

    monkeypatch.setattr("strategist.api.wait_for_settlements", block_ended)
    with open_orchestrator(load_settings({"STRATEGIST_DATA_DIR": str(tmp_path)})) as orchestrator:
        ledger = orchestrator.ledger
        assert isinstance(ledger, SqliteLedger)  # no REDIS_URL: the embedded store, under the data directory

        def correct(usd: float) -> None:
            ledger.correct("t-1", 0, usd)  # raises once the ledger is closed
            corrected.append(usd)

        settle_abandoned(registry, call, 0.02, None, grace_s=1.0, wait=completes_once_the_block_ended, on_cost=correct)
    assert finish.is_set() and len(corrected) == 1 and corrected[0] != 0.02  # the real usage, not the estimate


def test_a_loser_that_answers_is_settled_from_its_real_usage() -> None:
    registry = fake_registry({"perplexity": [CITED]})
    call = loser(registry, hedge=True)
    reservation = registry.hedge_budget.try_reserve(0.02)
    assert reservation is not None and registry.hedge_budget.totals()["extra_usd"] == pytest.approx(0.02)
    call.reply = registry.adapter("perplexity").invoke(PROMPT)
    call.done.set()
    settle_abandoned(registry, call, 0.02, reservation, grace_s=1.0, background=False)
    real = registry.price_of("perplexity", call.reply.model).cost_usd(call.reply.input_tokens, call.reply.output_tokens)
    assert not call.abort.is_set()
    assert registry.hedge_budget.totals()["extra_usd"] == pytest.approx(real, rel=1e-3)
    assert registry.health.breaker("perplexity").snapshot().consecutive_failures == 0


def test_a_loser_that_completes_after_the_analysis_corrects_its_cost_in_the_ledger() -> None:
    """Before, the ledger kept a hedge loser's estimate even when the loser completed and was billed for less."""
    release = threading.Event()

    def slow_gemini(_messages: Any) -> Any:
        release.wait(60)
        return reply("Gemini, after all.", tokens=(40, 10))

    registry = fake_registry(
        {"gemini": [slow_gemini], "perplexity": [CITED], "local": [reply("x")]},
        settings=settings_with(hedge={"min_after_s": 0.0, "default_after_s": 0.01}, deadlines={"loser_grace_s": 600.0}),
    )
    corrections: queue.Queue[tuple[str, int, float]] = queue.Queue()
    try:
        result = run(registry, COMPLEX, lambda *c: corrections.put(c), depth="quick")
        assert corrections.empty()  # still running: the estimate stands for now
    finally:
        release.set()
    loser_attempt = result.attempts[0]
    assert (loser_attempt.provider, loser_attempt.outcome) == ("gemini", "cancelled")
    _thread_id, index, usd = corrections.get(timeout=60)
    real = registry.price_of("gemini", None).cost_usd(40, 10)
    assert index == 0 and usd == pytest.approx(real) and real < loser_attempt.cost_usd


# --- the last resort: an inadequate tier only once every adequate one has failed ----------------------------------


def test_when_every_adequate_provider_fails_the_last_resort_answers_marked_degraded() -> None:
    """Before, a complex analysis whose premium and realtime calls both failed got no answer at all (3 in 100
    under 20% random errors); now the local model answers last, and the answer says it is degraded. Perplexity,
    the last adequate step, gets its one retry first (it has earned no retry budget: one is made regardless)."""
    registry = fake_registry(
        {
            "gemini": [ProviderTimeout("hung")],
            "perplexity": [ServerError("500")],
            "local": [reply("Local answer to a complex question.")],
        },
        settings=settings_with(hedge={"enabled": False}),
    )
    result = run(registry, COMPLEX, depth="quick")
    assert [s.provider for s in result.routing.chain] == ["gemini", "perplexity", "local"]
    assert [s.last_resort for s in result.routing.chain] == [False, False, True]
    assert [a.provider for a in result.attempts if a.role == "answer"] == [
        "gemini",
        "perplexity",
        "perplexity",
        "local",
    ]
    assert result.provider == "local" and result.fallback_mode is True
    assert result.fallback_reason and "local model" in result.fallback_reason
    assert result.answer and result.answer.startswith("[Degraded answer:")


def test_a_slow_adequate_call_is_not_hedged_onto_a_last_resort_and_its_sub_deadline_is_bounded() -> None:
    """Perplexity alone serves fresh facts; the local model is only its last resort. A slow Perplexity call is not
    raced against it (that would serve a degraded answer while an adequate one may come), and it gets its own
    sub-deadline, not the request's whole share (a hung Perplexity cost 20 s when it was the chain's last step)."""
    registry = fake_registry(
        {"perplexity": [CITED], "local": [reply("Local answer.")]},
        settings=settings_with(hedge={"min_after_s": 0.0, "default_after_s": 0.0}),
    )
    for _ in range(10):
        registry.health.record("perplexity", ok=True, latency_ms=300.0)
    adapter = registry.adapter("perplexity")
    invoke, timeouts = adapter.invoke, []

    def recorded(prompt: Prompt, *, timeout_s: float | None = None, abort: threading.Event | None = None) -> Any:
        timeouts.append(timeout_s)
        return invoke(prompt, timeout_s=timeout_s, abort=abort)

    adapter.invoke = recorded  # type: ignore[method-assign]  # the Perplexity adapter itself reads citations
    fresh = QueryNeeds.confident(0.95, "moderate", "fact_lookup")
    result = run(registry, fresh, depth="quick")
    assert [s.provider for s in result.routing.chain] == ["perplexity", "local"]
    assert result.provider == "perplexity" and calls(registry, "local") == 0
    d = registry.settings.resilience.deadlines
    assert timeouts == [pytest.approx(max(d.min_s, d.p95_multiple * 0.3))]


# --- the local model's queue --------------------------------------------------------------------------------------


class QueuedLocal(ProviderAdapter):
    """A local adapter whose queue says a new call would wait ``wait_s``."""

    wait_s: float = 0.0

    def expected_wait_s(self) -> float:
        return self.wait_s


def test_a_light_job_whose_local_wait_would_blow_its_deadline_goes_to_the_next_tier() -> None:
    registry = fake_registry(
        {"local": [reply("Local summary.")], "gemini": [reply("Gemini summary.")], "perplexity": [CITED]},
        settings=settings_with(hedge={"enabled": False}),
    )
    inner = registry.adapter("local")
    local = QueuedLocal(
        name="local", tier="local", vendor="local", model=inner.model, chat_factory=inner.chat_model, timeout_s=60
    )
    local.wait_s = 500.0
    registry._injected["local"] = local
    result = run(registry, SIMPLE, depth="quick")
    assert result.provider == "gemini"
    skipped = [a for a in result.attempts if a.outcome == "skipped"]
    assert [a.provider for a in skipped] == ["local"] and skipped[0].error and "local queue" in skipped[0].error
    assert calls(registry, "local") == 0


def test_health_board_is_what_the_route_reads() -> None:
    """The queue wait is a value the router can read without calling anything (0 before the model is built)."""
    registry = ProviderRegistry(settings_with(), health=HealthBoard())
    assert registry.expected_wait_s("local") == 0.0


# --- helpers ------------------------------------------------------------------------------------------------------


def wait_for(predicate: Any, timeout_s: float = 30.0) -> bool:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return True
        done.wait(0.02)
    return bool(predicate())


def attempt(provider: str, outcome: str, error_class: str | None) -> Any:
    return {
        "provider": provider,
        "model": "m",
        "configured_model": "m",
        "tier": "premium",
        "role": "answer",
        "outcome": outcome,
        "error_class": error_class,
        "error": None,
        "latency_ms": 1.0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
    }


def candidate(provider: str, vendor: str) -> Candidate:
    return cast(Candidate, {"provider": provider, "vendor": vendor, "text": "t", "model": "m"})


# --- overload over HTTP -------------------------------------------------------------------------------------------


def test_an_overloaded_local_model_with_nothing_else_is_a_503_with_retry_after_not_200_without_an_answer() -> None:
    import app as app_module
    from graphs.service import Orchestrator
    from providers.errors import Overloaded

    registry = fake_registry({"local": [Overloaded("local model queue full (4 waiting, limit 4)", retry_after_s=9)]})
    client = app_module.create_app(Orchestrator(registry, None)).test_client()
    response = client.post("/api/v1/strategist/analyze", json={"text": "Summarise: turnout fell.", "depth": "quick"})
    assert response.status_code == 503, response.get_json()
    assert response.headers["Retry-After"] == "1"
    body = response.get_json()
    assert body["status"] == "overloaded" and "queue full" in body["error"]


# --- the real local model: stoppable between tokens, a bounded queue ------------------------------------------------


@pytest.fixture(scope="module")
def local_chat() -> Any:
    from providers.local.llamacpp import ChatLlamaCppLocal
    from providers.local.model_file import default_model_path

    chat = ChatLlamaCppLocal(model_path=str(default_model_path()), max_tokens=200, timeout_s=600, queue_limit=1)
    chat.load()
    return chat


def test_a_local_generation_stops_between_tokens_once_its_caller_is_gone(local_chat: Any) -> None:
    """Before, an abandoned local generation ran to its end (or its 120 s timeout), holding the one model."""
    from langchain_core.messages import HumanMessage

    from providers.local.llamacpp import LocalGenerationCancelled

    gone = threading.Event()
    gone.set()
    with pytest.raises(LocalGenerationCancelled):
        local_chat.invoke([HumanMessage(content="Write a long story about a river.")], cancel=gone)
    handle = local_chat.load()
    assert handle.lock.acquire(blocking=False)  # the model is free again
    handle.lock.release()


def test_a_full_local_queue_refuses_at_once_with_a_retry_hint(local_chat: Any) -> None:
    from langchain_core.messages import HumanMessage

    from providers.local.llamacpp import LocalOverloaded

    handle = local_chat.load()
    assert handle.lock.acquire(timeout=60)  # a call in progress
    previous = handle.latency_s
    try:
        with handle.queue_lock:
            handle.busy, handle.waiting, handle.latency_s = True, 1, 5.0  # and one waiting: the limit
        with pytest.raises(LocalOverloaded) as full:
            local_chat.invoke([HumanMessage(content="Hi")])
        assert full.value.retry_after_s == pytest.approx(10.0)  # two calls ahead x 5 s
        with handle.queue_lock:
            handle.waiting = 0
        deadline = float(local_chat_deadline())
        with pytest.raises(LocalOverloaded) as late:  # one ahead (5 s) does not fit a 1 s deadline
            local_chat.invoke([HumanMessage(content="Hi")], deadline=deadline)
        assert "expected wait 5.0 s" in str(late.value)
    finally:
        with handle.queue_lock:
            handle.busy, handle.waiting, handle.latency_s = False, 0, previous
        handle.lock.release()


def local_chat_deadline() -> float:
    import time

    return time.monotonic() + 1.0


# --- a refused hedge does not mean waiting out a failing provider ---------------------------------------------------


def test_a_call_to_a_failing_provider_is_given_up_when_its_hedge_is_refused() -> None:
    """No hedge budget at all; while this call to Gemini hangs, another request's call to Gemini fails. Before,
    the analysis waited for the hung call (its timeout, fixed when it started); now it fails over at the short
    leash a failing provider gets."""
    release = threading.Event()
    registries: list[ProviderRegistry] = []

    def hung(_messages: Any) -> Any:
        registries[0].health.record("gemini", ok=False, latency_ms=5.0, error_class="server_error")
        release.wait(60)
        return reply("Gemini, much too late.")

    registry = fake_registry(
        {"gemini": [hung], "perplexity": [CITED], "local": [reply("x")]},
        settings=settings_with(deadlines={"min_s": 0.01, "cold_s": 60.0}),
    )
    registries.append(registry)
    registry.hedge_budget = HedgeBudget(max_extra_ratio=0.0, burst_usd=0.0)
    for _ in range(2):  # it has answered before (a hedge over it is a duplicate, which this budget refuses), too
        registry.health.record("gemini", ok=True, latency_ms=5.0)  # rarely for its latency to be known: cold_s
    try:
        result = run(registry, COMPLEX)
    finally:
        release.set()
    assert result.provider == "perplexity"
    first = result.attempts[0]
    assert (first.provider, first.outcome) == ("gemini", "cancelled")
    assert first.error and "its provider is failing" in first.error


def test_a_call_to_a_silent_provider_is_hedged_at_once_outside_the_budget() -> None:
    """No hedge budget at all and Gemini known to answer (a hedge over it would be a duplicate); two other calls to
    it are overdue and nothing made after them was answered. Before, the call waited for its sub-deadline (2.2 s
    at a hang's onset in the chaos run; 60 s here) with every hedge refused; now the hedge is a failover.
    The other calls turn overdue once this one has started: a provider already silent when the request is routed
    is put behind Perplexity by the router (test_routing), and this call would not be made first."""
    release = threading.Event()
    clock = FakeClock(0.0)

    def hung(_messages: Any) -> Any:
        clock.advance(2.0)
        release.wait(120)
        return reply("Gemini, much too late.")

    registry = fake_registry(
        {"gemini": [hung], "perplexity": [CITED], "local": [reply("x")]},
        settings=settings_with(deadlines={"min_s": 60.0, "cold_s": 60.0}, hedge={"max_after_s": 60.0}),
    )
    registry.health = HealthBoard(stalls=StallWatch(clock))
    registry.hedge_budget = HedgeBudget(max_extra_ratio=0.0, burst_usd=0.0)
    for latency_ms in (10_000.0, 20_000.0, 30_000.0, 40_000.0, 50_000.0):  # its usual hedge delay: tens of seconds
        registry.health.record("gemini", ok=True, latency_ms=latency_ms)
    for _ in range(2):
        registry.health.stalls.start("gemini", 1.0)
    assert not registry.health.stalls.stalled("gemini")
    try:
        result = run(registry, COMPLEX, depth="quick")
    finally:
        release.set()
    assert result.provider == "perplexity"
    first, hedge = result.attempts[0], result.attempts[1]
    assert (first.provider, first.outcome) == ("gemini", "cancelled")
    assert (hedge.provider, hedge.hedge, hedge.outcome) == ("perplexity", True, "ok")


def test_a_call_far_past_its_providers_usual_latency_is_hedged_outside_a_spent_budget() -> None:
    """The hedge budget is spent (as 20% random errors spend it within seconds) and Gemini is warm and healthy by
    the record; this one call hangs. Before, it waited out its sub-deadline (5 s here) and then failed over; now,
    past twice its hedge threshold (tens of milliseconds here), its hedge is granted and answers."""
    release = threading.Event()

    def hung(_messages: Any) -> Any:
        release.wait(120)
        return reply("Gemini, much too late.")

    registry = fake_registry(
        {"gemini": [hung], "perplexity": [CITED], "local": [reply("x")]},
        settings=settings_with(deadlines={"min_s": 5.0}, hedge={"min_after_s": 0.0}),
    )
    registry.hedge_budget = HedgeBudget(max_extra_ratio=0.0, burst_usd=0.0)
    for latency_ms in (20.0, 25.0, 30.0, 35.0, 40.0, 30.0, 25.0):
        registry.health.record("gemini", ok=True, latency_ms=latency_ms)
    try:
        result = run(registry, COMPLEX, depth="quick")
    finally:
        release.set()
    first, hedge = result.attempts[0], result.attempts[1]
    assert (first.provider, first.outcome) == ("gemini", "cancelled")
    assert (hedge.provider, hedge.hedge, hedge.outcome) == ("perplexity", True, "ok")


def test_with_nothing_else_adequate_a_slow_call_is_hedged_by_a_second_request_to_its_own_provider() -> None:
    """Fresh facts: only Perplexity serves them (the local model is a last resort, never raced). Before, a hung
    Perplexity call waited out its sub-deadline; now a second request to Perplexity answers."""
    release = threading.Event()

    def hung(_messages: Any) -> Any:
        release.wait(120)
        return CITED

    registry = fake_registry(
        {"perplexity": [hung, CITED], "local": [reply("Local answer.")]},
        settings=settings_with(hedge={"min_after_s": 0.0, "default_after_s": 0.01}),
    )
    fresh = QueryNeeds.confident(0.95, "moderate", "fact_lookup")
    try:
        result = run(registry, fresh, depth="quick")
    finally:
        release.set()
    answers = [(a.provider, a.outcome, a.hedge) for a in result.attempts if a.role == "answer"]
    assert answers == [("perplexity", "cancelled", False), ("perplexity", "ok", True)]
    assert result.provider == "perplexity" and calls(registry, "local") == 0
    assert "perplexity" not in failed_providers([a.model_dump() for a in result.attempts])  # type: ignore[misc]


def test_a_hedge_that_fails_with_a_retryable_error_is_asked_again_while_the_primary_hangs() -> None:
    """Gemini hangs, its hedge (Perplexity) answers 500 once. Before, the analysis waited for Gemini (its usual
    latency plus the grace) and only then retried Perplexity; now the hedge is asked again at once."""
    release = threading.Event()

    def hung(_messages: Any) -> Any:
        release.wait(120)
        return reply("Gemini, much too late.")

    registry = fake_registry(
        {"gemini": [hung], "perplexity": [ServerError("500"), CITED], "local": [reply("x")]},
        settings=settings_with(hedge={"min_after_s": 0.0, "default_after_s": 0.01}, deadlines={"loser_grace_s": 60.0}),
    )
    for _ in range(10):  # Perplexity has answered before: it has earned a retry
        registry.health.record("perplexity", ok=True, latency_ms=50.0)
    try:
        result = run(registry, COMPLEX, depth="quick")
    finally:
        release.set()
    answers = [(a.provider, a.outcome, a.hedge) for a in result.attempts if a.role == "answer"]
    assert answers[-1] == ("perplexity", "ok", True)
    assert ("perplexity", "error", True) in answers and ("gemini", "cancelled", False) in answers


def test_a_hedge_over_a_primary_that_never_answers_is_a_failover_not_extra_spend() -> None:
    registry = fake_registry({"gemini": [CITED], "perplexity": [CITED]})
    reservation = registry.hedge_budget.try_reserve(0.01)
    assert reservation is not None and registry.hedge_budget.totals()["extra_usd"] == pytest.approx(0.01)
    registry.hedge_budget.settle(reservation, 0.007)  # what record_group does when the hedge wins
    settle_never_answered_primary(registry, reservation)
    totals = registry.hedge_budget.totals()
    assert totals["extra_usd"] == 0.0 and totals["spend_usd"] == pytest.approx(0.027)


def test_a_hedge_over_a_primary_that_never_answers_gives_its_bucket_token_back() -> None:
    """Before, the failover's token stayed spent: a cold process met a hung primary with 3 tokens, failed over its
    first 3 requests and waited out the next ones' hangs until the bucket refilled."""
    registry = fake_registry({"gemini": [CITED], "perplexity": [CITED]})
    clock = FakeClock(0.0)
    registry.hedge_budget = HedgeBudget(burst_usd=0.0, burst_hedges=1, burst_refill_s=1e9, clock=clock)
    reservation = registry.hedge_budget.try_reserve(0.01)
    assert reservation is not None and registry.hedge_budget.try_reserve(0.01) is None  # the one token is taken
    registry.hedge_budget.settle(reservation, 0.007)
    settle_never_answered_primary(registry, reservation)
    assert registry.hedge_budget.try_reserve(0.01) is not None  # the failover gave it back


def settle_never_answered_primary(registry: ProviderRegistry, reservation: list[float]) -> None:
    """Settle a primary that never answered (estimate $0.02) after its hedge won at $0.007, as record_group does."""
    settle_abandoned(
        registry,
        loser(registry, hedge=False),
        0.02,
        None,
        grace_s=1.0,
        wait=lambda _e, _t: False,
        background=False,
        hedge_won=(reservation, 0.007),
    )


def run_hedged_pair(scripts: dict[str, list[Any]], warm: str, release: threading.Event) -> AnalysisResult:
    """A complex quick analysis hedged at once, with sub-deadlines of 60 s, no loser grace and ``warm``'s usual
    latency known (10 ms): the call still running once the other has failed is given up at once."""
    registry = fake_registry(
        {**scripts, "local": [reply("Local answer to a complex question.")]},
        settings=settings_with(
            hedge={"min_after_s": 0.0, "default_after_s": 0.01},
            deadlines={"min_s": 60.0, "loser_grace_s": 0.0},
        ),
    )
    for _ in range(10):
        registry.health.record(warm, ok=True, latency_ms=10.0)
    try:
        return run(registry, COMPLEX, depth="quick")
    finally:
        release.set()


def test_when_the_hedge_fails_a_slow_primary_is_given_up_at_its_usual_latency_not_its_sub_deadline() -> None:
    """Gemini hangs, its hedge (Perplexity) fails at once. Before, the analysis then waited for Gemini's whole
    sub-deadline (3.5 s in the chaos run; 60 s here); now it waits as long as a loser would be given."""
    release = threading.Event()

    def hung(_messages: Any) -> Any:
        release.wait(120)
        return reply("Gemini, much too late.")

    result = run_hedged_pair({"gemini": [hung], "perplexity": [ServerError("503")]}, "gemini", release)
    first = result.attempts[0]
    assert (first.provider, first.outcome) == ("gemini", "cancelled")
    assert first.error and "its hedge failed" in first.error
    assert result.provider == "local" and result.fallback_mode is True


def fails_once_its_hedge_started(release: threading.Event) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """Scripts of a pair: the primary fails with a 503 once its hedge has started; the hedge hangs until ``release``."""
    hedged = threading.Event()

    def fails_once_hedged(_messages: Any) -> Any:
        hedged.wait(10)
        raise ServerError("503")

    def hung(_messages: Any) -> Any:
        hedged.set()
        release.wait(120)
        return CITED

    return fails_once_hedged, hung


def test_when_the_primary_fails_a_slow_hedge_is_given_up_at_its_usual_latency_not_its_sub_deadline() -> None:
    """The mirror case: Gemini fails once its hedge (Perplexity) has started, and the hedge hangs. Before, the
    analysis waited for the hedge's whole sub-deadline (20 s in the chaos run: a last step's hedge has all the time
    left); now it waits as long as a loser would be given, and the chain goes on."""
    release = threading.Event()
    fails_once_hedged, hung = fails_once_its_hedge_started(release)
    result = run_hedged_pair({"gemini": [fails_once_hedged], "perplexity": [hung]}, "perplexity", release)
    hedge = next(a for a in result.attempts if a.hedge)
    assert (hedge.provider, hedge.outcome, hedge.error_class) == ("perplexity", "cancelled", "timeout")
    assert hedge.error and "the call it hedged failed" in hedge.error
    # Gemini's 503 decides what comes next: a retry on its own step before the last resort answers.
    assert [(a.provider, a.hedge) for a in result.attempts][:3] == [
        ("gemini", False),
        ("perplexity", True),
        ("gemini", False),
    ]
    assert result.provider == "local"


def test_a_hedge_whose_latency_is_not_known_is_given_up_at_its_cold_limit_not_all_the_time_left() -> None:
    """Chaos run, random errors (seed 12): a call failed once its hedge had started, and the hedge, the last step of
    the chain, to a provider with too few answers on record for a usual latency, kept its sub-deadline: all the time
    left. The analysis waited 29.7 s for it and ended unanswered. Now the hedge gets the limit its provider has
    before its latency is known (cold_s here), and the failed step is asked again."""
    release = threading.Event()
    fails_once_hedged, hung = fails_once_its_hedge_started(release)
    # No local model: Perplexity, the hedge, is the chain's last step. Gemini's usual latency is known; Perplexity
    # has never answered. A sub-deadline (min_s) of 60 s, a cold limit of 10 ms and no loser grace.
    registry = fake_registry(
        {"gemini": [fails_once_hedged, reply("Gemini, asked again.\nConfidence: 0.9")], "perplexity": [hung]},
        settings=settings_with(
            hedge={"min_after_s": 0.0, "default_after_s": 0.01},
            deadlines={"min_s": 60.0, "cold_s": 0.01, "loser_grace_s": 0.0},
        ),
    )
    for _ in range(10):
        registry.health.record("gemini", ok=True, latency_ms=10.0)
    try:
        result = run(registry, COMPLEX, depth="quick")
    finally:
        release.set()
    hedge = next(a for a in result.attempts if a.hedge)
    assert (hedge.provider, hedge.outcome, hedge.error_class) == ("perplexity", "cancelled", "timeout")
    assert hedge.error and "the limit its provider gets before its latency is known" in hedge.error
    # Gemini's 503 is retried on its own step, which answers (a hedge of that retry, if it started, lost).
    attempts = [(a.provider, a.outcome, a.hedge) for a in result.attempts]
    assert attempts[:2] == [("gemini", "error", False), ("perplexity", "cancelled", True)]
    assert attempts[-1] == ("gemini", "ok", False)
    assert all(a == ("perplexity", "cancelled", True) for a in attempts[2:-1])
    assert result.provider == "gemini" and not result.fallback_mode


# --- the CLI leaves once it has printed --------------------------------------------------------------------------


def test_the_cli_exits_after_printing_even_with_a_thread_left_waiting(tmp_path: Any) -> None:
    """A thread that never ends (an abandoned call's, in the worst case) used to be joined at exit: before, the CLI
    printed its answer and then waited for it (33 s for a hung Gemini); now the entry point leaves at once."""
    import os
    import subprocess
    import sys

    script = "import threading, cli\nthreading.Thread(target=threading.Event().wait, daemon=False).start()\ncli.run()\n"
    env = {**os.environ, "STRATEGIST_DATA_DIR": str(tmp_path), "LOCAL_MODEL_PATH": str(tmp_path / "none.gguf")}
    done = subprocess.run(
        [sys.executable, "-c", script, "health", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,  # generous: without the fix the process never exits at all
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert done.stdout.strip().startswith("{")


def test_at_exit_calls_still_running_are_aborted_and_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon thread still inside a C++ frame when the interpreter finalizes aborts the process (README's graph
    example exited with SIGABRT, "FATAL: exception not rethrown", in 3 runs of 4); the exit handler aborts the calls
    in flight and waits for them first."""
    from nodes.policy import hedging

    monkeypatch.setattr(hedging, "_EXIT_WAIT_S", 60.0)  # generous: the thread leaves as soon as it is aborted
    call = loser(fake_registry({"gemini": [reply("x")]}), hedge=False)
    left = threading.Event()

    def runs_until_aborted() -> None:
        call.abort.wait(60)
        left.set()
        hedging._IN_FLIGHT.discard(call)
        call.done.set()

    hedging._IN_FLIGHT.add(call)
    threading.Thread(target=runs_until_aborted, daemon=True).start()
    hedging._stop_calls_at_exit()
    assert call.abort.is_set() and left.is_set() and call not in hedging._IN_FLIGHT
