"""The response cache: identical normalised requests served at zero cost, marked cached; fresh facts kept briefly."""

from __future__ import annotations

from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver

from graphs.request import AnalysisRequest
from graphs.service import Orchestrator
from graphs.stores.response_cache import SqliteResponseCache, open_response_cache
from nodes.policy.response_cache import CachePolicy, cache_key, normalise
from providers.testing import fake_registry, reply

QUERY = "Draft a 30-day campaign plan for Malakpet covering booths, messaging and volunteers."


def test_identical_normalised_requests_are_served_from_cache_at_zero_cost(tmp_path: Path) -> None:
    # One scripted answer per provider: a second paid call would have nothing to return.
    registry = fake_registry(
        {"gemini": [reply("Week one: map the booths.\nConfidence: 0.8")], "perplexity": [], "local": []}
    )
    cache = SqliteResponseCache(tmp_path / "responses.sqlite", CachePolicy(ttl_s=3600, fresh_ttl_s=120))
    orchestrator = Orchestrator(registry, None, response_cache=cache)
    orchestrator.graph = orchestrator.graph.builder.compile(checkpointer=InMemorySaver())
    first = orchestrator.analyze(AnalysisRequest(query=QUERY))
    assert not first.cached and first.cost_usd > 0 and first.provider == "gemini"
    again = orchestrator.analyze(
        AnalysisRequest(query="  draft a 30-day CAMPAIGN plan for Malakpet covering booths, messaging and volunteers")
    )
    assert again.cached and again.cost_usd == 0.0 and again.attempts == []
    assert again.answer == first.answer and again.thread_id != first.thread_id
    # Anything that changes the answer is another request.
    assert cache_key(QUERY, {"depth": "deep"}) != cache_key(QUERY, {"depth": "quick"})


def test_fresh_fact_answers_expire_after_the_short_ttl(tmp_path: Path) -> None:
    policy = CachePolicy(ttl_s=3600, fresh_ttl_s=120)
    assert policy.ttl_for(needs_fresh=True) == 120 and policy.ttl_for(needs_fresh=False) == 3600
    cache = SqliteResponseCache(tmp_path / "r.sqlite", policy)
    cache.put("k", "{}", now=1000.0, ttl_s=policy.ttl_for(True))
    assert cache.get("k", now=1119.0) == "{}"
    assert cache.get("k", now=1121.0) is None
    assert normalise("Who leads in Amberpet?? ") == normalise("who  leads in amberpet")


def test_the_cache_is_opt_in(tmp_path: Path) -> None:
    assert open_response_cache(None, tmp_path, {}) is None
    opened = open_response_cache(None, tmp_path, {"STRATEGIST_RESPONSE_CACHE_TTL_S": "600"})
    assert opened is not None and opened.policy == CachePolicy(600.0, 120.0)
