"""Spend caps: atomic reservation in SQLite and Redis; 50 concurrent reservations never overshoot a cap."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
import redis
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver

from graphs.analysis import build_analysis_graph
from graphs.context import Context
from graphs.result import AnalysisResult
from graphs.stores.budget import RedisBudget, SqliteBudget
from nodes.policy.budget import BudgetCaps, BudgetStore, Refusal, Reservation
from nodes.policy.query_classifier import QueryNeeds
from providers.testing import fake_registry, reply

AT = 1_764_633_600.0  # 2025-12-02 00:00 UTC: a fixed day, no wall clock


def stores(tmp_path: Path, url: str | None, caps: BudgetCaps) -> BudgetStore:
    if url is None:
        return SqliteBudget(tmp_path / "budget.sqlite", caps)
    return RedisBudget(redis.Redis.from_url(url), caps)


def race(store: BudgetStore, n: int, amount: float, callers: int = 1) -> list[Reservation | Refusal]:
    """Start n reservations at once (a barrier releases them together) and return their outcomes."""
    barrier = threading.Barrier(n)
    results: list[Reservation | Refusal] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        barrier.wait()
        outcome = store.reserve(f"caller-{i % callers}", amount, AT)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_fifty_concurrent_reservations_never_overshoot_the_daily_cap(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_url") if backend == "redis" else None
    store = stores(tmp_path, url, BudgetCaps(daily_usd=1.0))
    results = race(store, 50, 0.03)
    granted = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, Refusal)]
    # $1.00 holds 33 reservations of $0.03: exactly that many, whatever the interleaving.
    assert len(granted) == 33 and len(refused) == 17
    assert all(r.scope == "daily" and "over budget" in r.message for r in refused)
    for r in granted:
        store.settle(r, 0.02)  # the calls cost less than estimated: the rest is released
    (daily,) = store.usage(AT)
    assert daily.reserved_usd == 0.0
    assert daily.spent_usd == pytest.approx(33 * 0.02)
    # What was released can be reserved again, up to the cap and no further.
    again = race(store, 20, 0.03)
    assert sum(isinstance(r, Reservation) for r in again) == 11  # 1.00 - 0.66 = 0.34 -> 11 x 0.03


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_per_caller_cap_limits_each_caller_separately(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_url") if backend == "redis" else None
    store = stores(tmp_path, url, BudgetCaps(daily_usd=10.0, per_caller_daily_usd=0.1))
    results = race(store, 50, 0.03, callers=5)  # 10 each; 0.1 holds 3 of 0.03
    granted = [r for r in results if isinstance(r, Reservation)]
    assert len(granted) == 15
    assert {r.caller for r in granted} == {f"caller-{i}" for i in range(5)}
    refused = [r for r in results if isinstance(r, Refusal)]
    assert all(r.scope == "caller" for r in refused)
    usage = store.usage(AT, caller="caller-0")
    assert usage[1].reserved_usd == pytest.approx(0.09) and usage[1].cap_usd == 0.1
    # Another day starts from zero.
    assert isinstance(store.reserve("caller-0", 0.09, AT + 86400), Reservation)


def test_caps_from_the_environment_are_validated() -> None:
    assert not BudgetCaps.from_env({}).any
    caps = BudgetCaps.from_env({"STRATEGIST_DAILY_BUDGET_USD": "25", "STRATEGIST_CALLER_DAILY_BUDGET_USD": "2.5"})
    assert (caps.daily_usd, caps.per_caller_daily_usd) == (25.0, 2.5)
    with pytest.raises(ValueError, match="expected a number"):
        BudgetCaps.from_env({"STRATEGIST_DAILY_BUDGET_USD": "lots"})
    with pytest.raises(ValueError, match="negative"):
        BudgetCaps.from_env({"STRATEGIST_DAILY_BUDGET_USD": "-1"})


def run_graph(store: BudgetStore, needs: QueryNeeds, caller: str = "alice", local: bool = True) -> AnalysisResult:
    scripts = {
        "gemini": [reply("Premium plan: map the booths first.")],
        "perplexity": [reply("Cited.", citations=["https://example.org/a"])],
    }
    if local:
        scripts["local"] = [reply("Local answer: a short summary.")]
    graph = build_analysis_graph().compile(checkpointer=InMemorySaver())
    ctx = Context(registry=fake_registry(scripts), classifier=lambda _q: needs, caller_key=caller, budget=store)
    ctx.clock = lambda: AT
    config: RunnableConfig = {"configurable": {"thread_id": str(uuid.uuid4())}}
    out = graph.invoke({"query": "Plan our week", "depth": "standard"}, config, context=ctx)
    return AnalysisResult.model_validate(out["result"])


def test_over_budget_the_router_falls_back_to_a_cheaper_tier_then_refuses(tmp_path: Path) -> None:
    complex_ = QueryNeeds.confident(0.02, "complex", "scenario")
    store = SqliteBudget(tmp_path / "budget.sqlite", BudgetCaps(per_caller_daily_usd=0.0001))
    result = run_graph(store, complex_)
    # Premium's estimate does not fit what is left; the local model (free) does, and says it is degraded.
    assert result.provider == "local"
    assert any(r.startswith("over budget: this caller's daily spend cap") for r in result.routing.reasons)
    assert result.fallback_reason is not None
    # Settled at the actual cost (zero): nothing stays reserved.
    assert store.usage(AT, caller="alice")[1].reserved_usd == 0.0
    # Another caller's cap is untouched, and with no free tier left the analysis is refused with the reason.
    no_local = SqliteBudget(tmp_path / "b2.sqlite", BudgetCaps(daily_usd=0.0))
    refused = run_graph(no_local, QueryNeeds.confident(0.95, "simple", "fact_lookup"), caller="bob", local=False)
    assert refused.answer is None and refused.error and "over budget" in refused.error
