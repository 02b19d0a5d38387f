"""The analysis graph with fake chat models: routing, failover, validation cascade, cross-check, score."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from graphs.analysis import build_analysis_graph
from graphs.context import Context
from graphs.result import AnalysisResult
from graphs.state import AnalysisInput
from nodes.policy.query_classifier import QueryNeeds
from providers.errors import AuthError, BadRequest, RateLimited, ServerError
from providers.resilience.board import HealthBoard
from providers.testing import fake_registry, reply
from providers.testing.checker import verdict_text

FRESH = QueryNeeds.confident(0.92, "moderate", "fact_lookup")
COMPLEX = QueryNeeds.confident(0.04, "complex", "scenario")
SIMPLE = QueryNeeds.confident(0.03, "simple", "summary")
CITED = reply(
    "The rally at Nizam College grounds is on for 5 pm. Police granted permission on Tuesday.\nConfidence: 0.9",
    citations=["https://epaper.thehindu.com/news/rally", "https://ghmc.gov.in/notice"],
)


def run(registry: Any, classified: QueryNeeds, query: str = "q", **state: Any) -> AnalysisResult:
    graph = build_analysis_graph().compile(checkpointer=InMemorySaver())
    ctx = Context(registry=registry, classifier=lambda _q: classified)
    graph_input = cast(AnalysisInput, {"query": query, **state})
    out = graph.invoke(graph_input, {"configurable": {"thread_id": str(uuid.uuid4())}}, context=ctx)
    return AnalysisResult.model_validate(out["result"])


def outcomes(result: AnalysisResult) -> list[tuple[str, str, str | None]]:
    return [(a.provider, a.outcome, a.error_class) for a in result.attempts]


def test_each_need_goes_to_its_tier() -> None:
    scripts = {
        "gemini": [reply("Premium plan. Week one: map booths.\nConfidence: 0.9")],
        "perplexity": [CITED],
        "local": [reply("Short summary of the speech.\nConfidence: 0.8")],
    }
    assert run(fake_registry(scripts), FRESH).provider == "perplexity"
    assert run(fake_registry(scripts), COMPLEX).provider == "gemini"
    assert run(fake_registry(scripts), SIMPLE).provider == "local"


@pytest.mark.parametrize(
    "failure, error_class",
    [
        (ServerError("500 INTERNAL"), "server_error"),
        (RateLimited("429", retry_after_s=3.0), "rate_limited"),
        (AuthError("403 PERMISSION_DENIED"), "auth_error"),
    ],
)
def test_failed_premium_falls_over_and_is_recorded(failure: Exception, error_class: str) -> None:
    registry = fake_registry({"gemini": [failure], "perplexity": [CITED], "local": [reply("Local answer here.")]})
    result = run(registry, COMPLEX)
    assert outcomes(result)[0] == ("gemini", "error", error_class)
    assert result.provider != "gemini" and result.answer
    assert result.fallback_mode is True
    assert result.error is None


def test_bad_request_stops_instead_of_failing_over() -> None:
    registry = fake_registry(
        {"gemini": [BadRequest("400 INVALID_ARGUMENT")], "perplexity": [CITED], "local": [reply("x y")]}
    )
    result = run(registry, COMPLEX)
    assert outcomes(result) == [("gemini", "error", "bad_request")]
    assert result.answer is None and result.error and "refused" in result.error


def test_uncited_fresh_answer_is_rejected_and_not_replaced_by_an_answer_from_memory() -> None:
    registry = fake_registry(
        {
            "perplexity": [reply("It is probably on, I think, as usual.")],
            "gemini": [reply("Premium says: check the police notice.")],
            "local": [reply("Local says something.")],
        }
    )
    result = run(registry, FRESH)
    assert outcomes(result)[0] == ("perplexity", "invalid", "invalid_answer")
    # Premium and local cannot serve fresh facts: they are only last resorts for when realtime fails, and realtime
    # answered (without sources), so they are not asked (issue 11 item 5).
    assert [a.provider for a in result.attempts if a.outcome != "skipped"] == ["perplexity"]
    assert all(s.last_resort for s in result.routing.chain[1:])
    assert result.answer is None and result.fallback_mode is True


def test_fresh_facts_without_a_usable_search_provider_are_served_degraded_and_say_so() -> None:
    health = HealthBoard(clock=lambda: 1000.0)
    for _ in range(health.policy.failure_threshold):
        health.record("perplexity", ok=False, latency_ms=10.0)
    registry = fake_registry(
        {"perplexity": [CITED], "gemini": [reply("Premium says: check the police notice.")]}, health=health
    )
    result = run(registry, FRESH)
    assert result.provider == "gemini"
    assert result.fallback_mode is True
    assert result.fallback_reason and "without sources" in result.fallback_reason
    assert result.answer and result.answer.startswith("[Degraded answer: fresh facts were needed")
    # Fresh facts without sources: the source-quality factor is measured, and it is zero.
    factors = {f.name: f for f in result.confidence.factors}
    assert factors["source_quality"].value == 0.0


def test_complex_analysis_from_the_local_model_is_marked_degraded() -> None:
    result = run(fake_registry({"local": [reply("Local answer to a complex question.")]}), COMPLEX)
    assert result.provider == "local" and result.fallback_mode is True
    assert result.fallback_reason and "local model" in result.fallback_reason
    # A light job from the local model is not degraded.
    light = run(fake_registry({"local": [reply("Short summary of the speech.")]}), SIMPLE)
    assert light.provider == "local" and light.fallback_reason is None


def test_research_then_reason_runs_research_first_and_the_answer_cites_its_sources() -> None:
    scripts = {
        "perplexity": [CITED],
        "gemini": [reply("Focus on the rally [1]: it is confirmed for 5 pm.\nConfidence: 0.8")],
        "local": [reply("x y")],
    }
    registry = fake_registry(scripts)
    both = QueryNeeds.confident(0.95, "complex", "scenario")
    result = run(registry, both, "What should be our campaign focus for next week in Jubilee Hills?")
    assert [(a.provider, a.role) for a in result.attempts][:2] == [("perplexity", "research"), ("gemini", "answer")]
    assert result.provider == "gemini" and result.fallback_reason is None
    assert [c.url for c in result.citations] == ["https://epaper.thehindu.com/news/rally", "https://ghmc.gov.in/notice"]
    assert result.cost_usd == pytest.approx(sum(a.cost_usd for a in result.attempts))


def test_exhausted_chain_reports_error_instead_of_raising() -> None:
    registry = fake_registry(
        {"gemini": [ServerError("boom")], "perplexity": [ServerError("boom")], "local": [ServerError("boom")]}
    )
    result = run(registry, COMPLEX)
    assert result.answer is None and result.fallback_mode is True
    # Local is only the last resort of a complex analysis, asked once premium and realtime have failed; realtime,
    # the last adequate step, gets one retry first (the retry budget of a provider that never answered is empty).
    # With the chain spent and time left, each step is asked again (nodes/policy/ask_again.py): the adequate ones
    # up to the retry policy's three calls, the last resort once more; then the analysis ends unanswered.
    first_pass = ["gemini", "perplexity", "perplexity", "local"]
    assert [a.provider for a in result.attempts] == [*first_pass, "gemini", "gemini", "perplexity", "local"]
    assert all(a.outcome == "error" for a in result.attempts)
    assert result.error and "every provider in the chain failed" in result.error


def test_no_keys_means_only_local_is_routed() -> None:
    registry = fake_registry({"local": [reply("Local answer to a complex question.")]})
    result = run(registry, COMPLEX)
    assert result.provider == "local"
    assert any("gemini" in r and "no API key" in r for r in result.routing.reasons)
    assert [s.provider for s in result.routing.chain] == ["local"]


def test_deep_depth_cross_checks_with_another_vendor_and_measures_agreement() -> None:
    same = "Booth committees in Jubilee Hills need reinforcement. Youth turnout is the swing factor."
    registry = fake_registry(
        {
            "gemini": [reply(same)],
            # The checker answers in the verdict schema: its own answer and a verdict on each of the two claims.
            "perplexity": [reply(verdict_text(same, ["supports", "supports"]), citations=["https://mobile.x.com/a"])],
            "local": [reply("Unrelated words about cricket scores entirely.")],
        }
    )
    result = run(registry, COMPLEX, depth="deep")
    assert result.cross_check is not None and result.cross_check["provider"] == "perplexity"
    assert result.cross_check["agreement"] > 0.9
    roles = [(a.provider, a.role) for a in result.attempts]
    assert roles == [("gemini", "answer"), ("perplexity", "cross_check")]
    assert result.cost_usd == pytest.approx(sum(a.cost_usd for a in result.attempts))


def test_confidence_renormalises_over_measured_factors() -> None:
    registry = fake_registry({"local": [reply("A short summary.\nConfidence: 0.6")]})
    result = run(registry, SIMPLE)
    assert [(f.name, f.value, f.weight) for f in result.confidence.factors] == [("model_certainty", 0.6, 1.0)]
    assert result.confidence.value == pytest.approx(0.6)


def test_no_factor_is_uninformative_not_invented() -> None:
    registry = fake_registry({"local": [reply("A summary without any stated confidence.")]})
    result = run(registry, SIMPLE)
    assert result.confidence.factors == []
    assert result.confidence.value == 0.5 and "uninformative" in result.confidence.method


def test_costs_and_baseline() -> None:
    registry = fake_registry({"gemini": [reply("The plan: map every booth first.", tokens=(1500, 1800))]})
    result = run(registry, COMPLEX)
    # gemini-3.8-flash list price today: 0.75 in / 3.75 out per 1M tokens.
    assert result.cost_usd == pytest.approx((1500 * 0.75 + 1800 * 3.75) / 1e6)
    assert result.baseline_cost_usd == pytest.approx(result.cost_usd)

    local = run(fake_registry({"local": [reply("A short summary.", tokens=(400, 200))]}), SIMPLE)
    assert local.cost_usd == 0.0
    assert local.baseline_cost_usd == pytest.approx((400 * 0.75 + 200 * 3.75) / 1e6)
