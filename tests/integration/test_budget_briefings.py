"""Ward briefings spend within the caps: plan holds the writer, each research question reserves its own call, a
question the caps refuse is skipped and named, and settled spend never passes a cap, also with many briefings of
different wards at once on SQLite and on a throwaway Redis."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.checkpoint.memory import InMemorySaver

from graphs.briefing import build_briefing_graph
from graphs.briefing_result import BriefingResult
from graphs.briefing_state import BriefingInput
from graphs.context import Context
from graphs.stores.budget import RedisBudget, SqliteBudget
from nodes.policy.briefing_budget import research_estimate, research_tokens, write_estimate
from nodes.policy.briefing_chains import gather_chain, write_chain
from nodes.policy.briefing_prompts import write_prompt
from nodes.policy.budget import OVER_DAILY, BudgetCaps, BudgetStore
from nodes.policy.research import ITEMS_BY_DEPTH, plan_questions
from providers.registry import ProviderRegistry
from providers.testing import billed, fake_registry, reply
from providers.testing.briefings import RESEARCH_SOURCES, draft_json
from providers.testing.redis_servers import RedisServer

AT = 1_764_633_600.0  # 2025-12-02 00:00 UTC: a fixed day, no wall clock


class Prices:
    """What plan and gather price a standard briefing's calls at (the same policy functions they use)."""

    def __init__(self, registry: ProviderRegistry, ward: str) -> None:
        asked = plan_questions(ward, "standard", "neutral")
        self.questions = len(asked)
        prompt = write_prompt(ward, "standard", "neutral", asked, [], [], ITEMS_BY_DEPTH["standard"], None)
        pending = research_tokens(registry, asked)
        steps = [s for s in write_chain(registry)[0] if s["mode"] == "structured"]
        # plan holds the first writer that fits; whichever it holds, a writer billing the cheapest hold fits it.
        self.holds = {s["provider"]: write_estimate(registry, s, prompt, pending) for s in steps}
        self.hold = min(self.holds.values())
        self.research = {
            step["provider"]: [research_estimate(registry, [step], ward, "neutral", q) for q in asked]
            for step in gather_chain(registry)[0]
        }


def registry_billing(prices: Prices) -> ProviderRegistry:
    """Perplexity researches, Gemini writes (and researches when asked): every call bills at most its estimate,
    so whatever passes the cap is the budget's fault, not an overrun the caps cannot hold."""
    probe = fake_registry({"gemini": [reply("x")], "perplexity": [reply("x")]})
    research = billed(
        probe,
        "perplexity",
        min(prices.research["perplexity"]),
        "Water supply is irregular.",
        citations=RESEARCH_SOURCES,
    )
    writer = billed(probe, "gemini", prices.hold, draft_json())
    premium_research = billed(probe, "gemini", min(prices.research["gemini"]), "Road works divide residents.")

    def gemini(messages: list[BaseMessage]) -> AIMessage:
        system = str(messages[0].content)
        return writer if "JSON Schema" in system else premium_research

    return fake_registry({"perplexity": [research], "gemini": [gemini]})


def brief(registry: ProviderRegistry, store: BudgetStore, ward: str) -> BriefingResult:
    graph = build_briefing_graph().compile(checkpointer=InMemorySaver())
    ctx = Context(registry=registry, caller_key="alice", budget=store)
    ctx.clock = lambda: AT
    graph_input = cast(BriefingInput, {"ward": ward, "depth": "standard"})
    out = graph.invoke(graph_input, {"configurable": {"thread_id": str(uuid.uuid4())}}, context=ctx)
    return BriefingResult.model_validate(out["result"])


def spent(store: BudgetStore) -> float:
    (daily,) = store.usage(AT)
    assert daily.reserved_usd == 0.0  # everything reserved was settled
    return daily.spent_usd


def calls(registry: ProviderRegistry, name: str) -> int:
    return int(registry.adapter(name).chat_model().calls)  # type: ignore[attr-defined]  # ScriptedChat


def test_a_briefing_whose_research_the_cap_holds_only_in_part_skips_the_rest_and_says_so(tmp_path: Path) -> None:
    """The cap holds the writer and two of the four research calls: plan holds those (the first two questions),
    the other two are not asked (on either research tier), the briefing is written from what was found and names
    what it did without, and the settled spend is the briefing's cost, within the cap. Before, all four were
    asked and nothing was reserved."""
    prices = Prices(fake_registry({"gemini": [reply("x")], "perplexity": [reply("x")]}), "Jubilee Hills")
    assert prices.questions == 4
    room = 2 * max(prices.research["perplexity"]) + 0.0005
    assert room - 2 * min(prices.research["perplexity"]) < min(prices.research["gemini"])  # no third call fits
    cap = max(prices.holds.values()) + room
    store = SqliteBudget(tmp_path / "budget.sqlite", BudgetCaps(daily_usd=cap))
    registry = registry_billing(prices)
    result = brief(registry, store, "Jubilee Hills")
    assert result.briefing is not None and result.error is None
    researched = [a for a in result.attempts if a.role == "gather" and a.outcome == "ok"]
    skipped = [a for a in result.attempts if a.role == "gather" and a.outcome == "skipped"]
    assert [a.provider for a in researched] == ["perplexity", "perplexity"] and calls(registry, "perplexity") == 2
    assert sorted(a.provider for a in skipped) == ["gemini", "gemini", "perplexity", "perplexity"]
    assert all(a.error is not None and a.error.startswith(OVER_DAILY) for a in skipped)
    questions = result.briefing.analysis.questions
    not_researched = result.briefing.analysis.not_researched
    assert [line.split(": over budget")[0] for line in not_researched] == questions[2:]
    assert all(f": {OVER_DAILY}" in line and "not made" in line for line in not_researched)
    writer = next(a for a in result.attempts if a.role == "write" and a.outcome == "ok")
    assert writer.provider == "gemini"
    assert result.cost_usd <= cap
    assert spent(store) == pytest.approx(result.cost_usd, abs=1e-5)


def test_a_briefing_no_writer_fits_spends_nothing_and_names_the_cap(tmp_path: Path) -> None:
    """Less left than the cheapest paid writer and no free one: nothing is researched (it could not be written up),
    and the error starts with the cap."""
    prices = Prices(fake_registry({"gemini": [reply("x")], "perplexity": [reply("x")]}), "Jubilee Hills")
    store = SqliteBudget(tmp_path / "budget.sqlite", BudgetCaps(daily_usd=prices.hold / 2))
    registry = registry_billing(prices)
    result = brief(registry, store, "Jubilee Hills")
    assert result.briefing is None and result.attempts == [] and result.cost_usd == 0.0
    assert result.error is not None and result.error.startswith(OVER_DAILY) and "no writer fits" in result.error
    assert calls(registry, "perplexity") == calls(registry, "gemini") == 0
    assert spent(store) == 0.0


def test_the_local_model_writes_when_no_paid_writer_fits(tmp_path: Path) -> None:
    """The local model is free: with nothing left for a paid writer, the briefing is still written, by it."""
    prices = Prices(fake_registry({"gemini": [reply("x")], "perplexity": [reply("x")]}), "Jubilee Hills")
    cap = min(prices.research["gemini"]) / 2  # not even the cheapest research call fits
    store = SqliteBudget(tmp_path / "budget.sqlite", BudgetCaps(daily_usd=cap))
    registry = fake_registry(
        {"gemini": [reply("x")], "perplexity": [reply("x")], "local": [reply(draft_json(), tokens=(100, 2000))]}
    )
    result = brief(registry, store, "Jubilee Hills")
    assert result.briefing is not None and result.briefing.fallback_mode
    written = [a for a in result.attempts if a.role == "write"]
    assert [(a.provider, a.outcome) for a in written][-1] == ("local", "ok")
    assert calls(registry, "gemini") == calls(registry, "perplexity") == 0 and result.cost_usd == 0.0
    assert len(result.briefing.analysis.not_researched) == 4  # no research call fit either
    assert spent(store) == pytest.approx(result.cost_usd, abs=1e-6)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_concurrent_briefings_of_different_wards_never_overshoot_the_cap(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """16 briefings of 16 wards at once against a cap that holds about five: the research branches of all of them
    race for the same money. Whatever the interleaving, settled spend is what the briefings cost and stays within
    the cap; a briefing is written (perhaps without some questions, which it names) or refused with the cap named.
    Before, briefings reserved nothing: all 16 were made in full past the cap."""
    wards = [f"Ward {i:02d}" for i in range(16)]  # one length: one price for all
    prices = Prices(fake_registry({"gemini": [reply("x")], "perplexity": [reply("x")]}), wards[0])
    full = max(prices.holds.values()) + sum(prices.research["perplexity"])
    cap = 5 * full
    store: BudgetStore
    if backend == "redis":
        server = cast(RedisServer, request.getfixturevalue("redis_server"))
        store = RedisBudget(redis.Redis.from_url(server.url), BudgetCaps(daily_usd=cap))
    else:
        store = SqliteBudget(tmp_path / "budget.sqlite", BudgetCaps(daily_usd=cap))
    registry = registry_billing(prices)
    barrier = threading.Barrier(len(wards))
    results: list[BriefingResult] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def one(ward: str) -> None:
        barrier.wait()
        try:
            result = brief(registry, store, ward)
        except BaseException as exc:  # reported below: a thread's exception would otherwise be lost
            with lock:
                failures.append(exc)
            return
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one, args=(w,)) for w in wards]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures and len(results) == len(wards)
    total = sum(r.cost_usd for r in results)
    assert spent(store) == pytest.approx(total, abs=1e-4)  # what was settled is what the briefings cost
    assert spent(store) <= cap  # zero overshoot
    written = [r for r in results if r.briefing is not None]
    refused = [r for r in results if r.briefing is None]
    assert written and refused
    assert all(r.error is not None and r.error.startswith(OVER_DAILY) for r in refused)
    skipped: list[Any] = [a for r in results for a in r.attempts if a.outcome == "skipped"]
    assert all(a.error and a.error.startswith(OVER_DAILY) for a in skipped)
    for r in written:
        assert r.briefing is not None
        assert all(f": {OVER_DAILY}" in line for line in r.briefing.analysis.not_researched)
