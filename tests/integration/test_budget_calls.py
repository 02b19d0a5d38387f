"""Every paid call of an analysis fits what it holds against the spend caps before it is made (nodes/policy/budget.py:
Cover): a fallback, a hedge or a check the reservations do not hold is reserved on top or not made, so settled spend
never passes a cap, also with 50 analyses at once on SQLite and on Redis."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver

from api.budget import over_budget_of
from graphs.analysis import build_analysis_graph
from graphs.context import Context
from graphs.result import AnalysisResult
from graphs.state import AnalysisInput
from graphs.stores.budget import RedisBudget, SqliteBudget
from nodes.classify import classification_of
from nodes.policy.budget import OVER_DAILY, BudgetCaps, BudgetStore, Refusal, Reservation, correct_spend
from nodes.policy.query_classifier import QueryNeeds
from nodes.route import plan
from providers.config import Settings, load_settings
from providers.registry import ProviderRegistry
from providers.resilience.hedge_budget import HedgeBudget
from providers.testing import billed, fake_registry, reply

AT = 1_764_633_600.0  # 2025-12-02 00:00 UTC: a fixed day, no wall clock
QUERY = "Plan our week"
COMPLEX = QueryNeeds.confident(0.02, "complex", "scenario")
SOURCES = ["https://eci.gov.in/turnout"]
UNUSABLE = "Understood."  # billed, but no usable text: validate rejects it and the chain falls back


def store_for(backend: str, tmp_path: Path, request: pytest.FixtureRequest, caps: BudgetCaps) -> BudgetStore:
    if backend == "redis":
        return RedisBudget(redis.Redis.from_url(request.getfixturevalue("redis_url")), caps)
    return SqliteBudget(tmp_path / "budget.sqlite", caps)


def planned(registry: ProviderRegistry, depth: str) -> tuple[float, float, float]:
    """Return route's estimates of Gemini and Perplexity for the query, and its reservation (the plan's ceiling)."""
    c = classification_of(COMPLEX, 0.5)
    update = plan(registry, c, QUERY, {}, checking=depth == "deep")
    assert [s["provider"] for s in update["chain"]] == ["gemini", "perplexity"]
    gemini, perplexity = update["step_costs_usd"]
    return gemini, perplexity, update["spend_ceiling_usd"]


def analyse(registry: ProviderRegistry, store: BudgetStore, depth: str = "quick") -> AnalysisResult:
    graph = build_analysis_graph().compile(checkpointer=InMemorySaver())
    ctx = Context(registry=registry, classifier=lambda _q: COMPLEX, caller_key="alice", budget=store)
    ctx.clock = lambda: AT
    config: RunnableConfig = {"configurable": {"thread_id": str(uuid.uuid4())}}
    out = graph.invoke(cast(AnalysisInput, {"query": QUERY, "depth": depth}), config, context=ctx)
    return AnalysisResult.model_validate(out["result"])


def spent(store: BudgetStore) -> float:
    (daily,) = store.usage(AT)
    assert daily.reserved_usd == 0.0  # everything reserved was settled
    return daily.spent_usd


def calls(registry: ProviderRegistry, name: str) -> int:
    return int(registry.adapter(name).chat_model().calls)  # type: ignore[attr-defined]  # ScriptedChat


def test_a_fallback_the_cap_cannot_hold_is_left_out_when_planning(tmp_path: Path) -> None:
    """The cap holds the primary's estimate but not the primary and its fallback: route plans the primary alone
    (it always did); when the primary fails, no fallback is paid, and the result says why, as a 402."""
    probe = fake_registry({"gemini": [reply("x")], "perplexity": [reply("x")]})
    gemini, perplexity, _ = planned(probe, "quick")
    store = SqliteBudget(tmp_path / "budget.sqlite", BudgetCaps(daily_usd=gemini + perplexity / 2))
    fallback = billed(probe, "perplexity", perplexity, "Book the halls and print the booth slips.", citations=SOURCES)
    registry = fake_registry({"gemini": [RuntimeError("boom")], "perplexity": [fallback]})
    result = analyse(registry, store)
    assert result.answer is None and calls(registry, "perplexity") == 0
    assert any("fallback(s) left out" in r for r in result.routing.reasons)
    refused = over_budget_of(result, AT)
    assert refused is not None and refused.status == 402
    assert spent(store) <= gemini + perplexity / 2


def test_a_fallback_after_a_primary_billed_past_its_estimate_is_not_made(tmp_path: Path) -> None:
    """The cap holds the whole plan, but the primary billed past its estimate (a thinking model that spent its tokens
    thinking and answered one word, which is rejected): the fallback no longer fits and is not made. Before, it was,
    and settled spend passed the cap by the fallback's cost."""
    probe = fake_registry({"gemini": [reply("x")], "perplexity": [reply("x")]})
    gemini, perplexity, ceiling = planned(probe, "quick")
    store = SqliteBudget(tmp_path / "budget.sqlite", BudgetCaps(daily_usd=ceiling))
    scripts = {
        "gemini": [billed(probe, "gemini", gemini + perplexity / 2, UNUSABLE)],
        "perplexity": [
            billed(probe, "perplexity", perplexity, "Book the halls and print the booth slips.", citations=SOURCES)
        ],
    }
    registry = fake_registry(scripts)
    result = analyse(registry, store)
    assert result.answer is None and calls(registry, "perplexity") == 0
    skipped = [a for a in result.attempts if a.outcome == "skipped"]
    assert [a.provider for a in skipped] == ["perplexity"]
    assert skipped[0].error is not None and skipped[0].error.startswith(OVER_DAILY)
    assert "the fallback to perplexity" in skipped[0].error
    assert result.error is not None and result.error.startswith(OVER_DAILY) and "no usable text" in result.error
    refused = over_budget_of(result, AT)
    assert refused is not None and refused.status == 402 and "the fallback to perplexity" in refused.message
    assert spent(store) == pytest.approx(gemini + perplexity / 2, abs=1e-5)
    assert spent(store) <= ceiling


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_fifty_concurrent_analyses_that_fall_back_never_overshoot_the_cap(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """50 deep analyses at once: each primary (Gemini) bills an unusable answer, Perplexity's fallback answers,
    and the second opinion must come from another vendor than the answer's, so Gemini is asked to check and bills
    an unusable check. The plan's reservation holds one check at Perplexity's price: the dearer Gemini check is
    reserved on top or not made. Before, every analysis spent past its reservation and the day passed its cap."""
    probe = fake_registry({"gemini": [reply("x")], "perplexity": [reply("x")]})
    gemini, perplexity, ceiling = planned(probe, "deep")
    assert gemini > perplexity  # the check by Gemini costs more than the plan holds for a check
    cap = 10 * ceiling
    store = store_for(backend, tmp_path, request, BudgetCaps(daily_usd=cap))
    scripts = {
        "gemini": [billed(probe, "gemini", gemini, UNUSABLE)],
        "perplexity": [
            billed(probe, "perplexity", perplexity, "Book the halls and print the booth slips.", citations=SOURCES)
        ],
    }
    registry = fake_registry(scripts)
    barrier = threading.Barrier(50)
    results: list[AnalysisResult] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        result = analyse(registry, store, depth="deep")
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 50
    total = sum(r.cost_usd for r in results)
    assert spent(store) == pytest.approx(total, abs=1e-4)  # what was settled is what the analyses cost
    assert spent(store) <= cap  # zero overshoot
    answered = [r for r in results if r.answer is not None]
    assert answered and all(r.provider == "perplexity" for r in answered)
    not_made = [a for r in results for a in r.attempts if a.outcome == "skipped"]
    assert not_made and all(a.error and a.error.startswith(OVER_DAILY) for a in not_made)


class Signalling:
    """A budget store that sets an event when it refuses a reservation, and otherwise passes through."""

    def __init__(self, inner: BudgetStore) -> None:
        self.inner, self.caps, self.refused = inner, inner.caps, threading.Event()

    def reserve(self, caller: str, amount_usd: float, at: float) -> Reservation | Refusal:
        outcome = self.inner.reserve(caller, amount_usd, at)
        if isinstance(outcome, Refusal):
            self.refused.set()
        return outcome

    def settle(self, reservation: Reservation, actual_usd: float) -> None:
        self.inner.settle(reservation, actual_usd)

    def usage(self, at: float, caller: str | None = None) -> Any:
        return self.inner.usage(at, caller)


def hedging_settings() -> Settings:
    settings = load_settings({"STRATEGIST_DATA_DIR": "/nonexistent", "LOCAL_MODEL_PATH": "/nonexistent/m.gguf"})
    hedge = settings.resilience.hedge.model_copy(update={"min_after_s": 0.0, "default_after_s": 0.01})
    return settings.model_copy(update={"resilience": settings.resilience.model_copy(update={"hedge": hedge})})


def test_a_duplicate_hedge_the_cap_cannot_hold_is_not_made(tmp_path: Path) -> None:
    """Gemini is the only provider and is slow: its hedge is a second request to Gemini, which the plan's
    reservation (one call) does not hold. The cap has nothing more, so the hedge is not made and the slow call
    answers. Before, the hedge was made and both calls were billed past the cap."""
    probe = fake_registry({"gemini": [reply("x")]})
    c = classification_of(COMPLEX, 0.5)
    gemini = plan(probe, c, QUERY, {}, checking=False)["spend_ceiling_usd"]
    store = Signalling(SqliteBudget(tmp_path / "budget.sqlite", BudgetCaps(daily_usd=gemini)))
    answer = billed(probe, "gemini", gemini, "Map the booths first, then the volunteers.")

    def slow(_messages: Any) -> AIMessage:
        store.refused.wait(10)  # answers once the hedge was refused (before: after 10 s, both calls billed)
        return answer

    registry = fake_registry({"gemini": [slow]}, settings=hedging_settings())
    registry.hedge_budget = HedgeBudget(max_extra_ratio=10.0, burst_usd=10.0)
    result = analyse(registry, store)
    assert result.provider == "gemini" and calls(registry, "gemini") == 1
    hedge = next(a for a in result.attempts if a.outcome == "skipped")
    assert hedge.hedge and hedge.error is not None and hedge.error.startswith(OVER_DAILY)
    assert "the hedge to gemini" in hedge.error
    assert spent(store) <= gemini


def test_an_abandoned_call_that_billed_past_its_estimate_adds_the_rest(tmp_path: Path) -> None:
    store = SqliteBudget(tmp_path / "budget.sqlite", BudgetCaps(daily_usd=1.0))
    held = store.reserve("alice", 0.05, AT)
    assert isinstance(held, Reservation)
    store.settle(held, 0.03)  # score settled the loser at its estimate
    mapping = {"id": held.id, "day": held.day, "caller": held.caller, "micros": held.micros}
    correct_spend(store, [mapping], estimated_usd=0.03, actual_usd=0.02)  # billed less: the estimate stays
    assert spent(store) == pytest.approx(0.03)
    correct_spend(store, [mapping], estimated_usd=0.03, actual_usd=0.045)
    assert spent(store) == pytest.approx(0.045)
