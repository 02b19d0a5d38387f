"""Routing: the adequacy model, expected-cost decisions, request constraints, and the rollout controls
(ROUTING_MODE=intelligent|legacy|shadow and the percentage rollout by a stable hash of the caller key)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from graphs.analysis import build_analysis_graph
from graphs.context import Context
from graphs.result import AnalysisResult
from graphs.state import Classification, Constraints
from graphs.stores.ledger import LedgerEntry, report
from nodes.classify import classification_of
from nodes.policy.calibration import Outcome
from nodes.policy.costing import estimate_call_cost
from nodes.policy.learned_adequacy import MIN_EVIDENCE, Learned
from nodes.policy.local_adequacy import ARTIFACT_FORMAT, Counts, LocalAdequacy, default_local_adequacy
from nodes.policy.query_classifier import TASK_LABELS, QueryNeeds
from nodes.route import (
    SERVES,
    caller_bucket,
    effective_mode,
    intelligent_chain,
    need_probabilities,
    plan,
    serves,
)
from providers.config import ConfigError, Settings, load_settings
from providers.errors import ServerError
from providers.registry import ProviderRegistry
from providers.resilience.board import HealthBoard
from providers.resilience.stall import StallWatch
from providers.testing import fake_registry, reply
from providers.testing.checker import verdict_text

ROOT = Path(__file__).resolve().parents[2]
CITED = reply("The rally is on at 5 pm, police confirmed.", citations=["https://epaper.thehindu.com/rally"])
ANSWERS: dict[str, list[Any]] = {
    "gemini": [reply("Premium answer: map the booths first.")],
    "perplexity": [CITED],
    "local": [reply("Local answer: a short summary.")],
}


def sure(fresh: float, complexity: str, task: str) -> QueryNeeds:
    """A classification as sharp as the trained classifier's on clear queries (P(complexity) 0.98)."""
    base = QueryNeeds.confident(fresh, complexity, task)
    complexity_p = {c: (0.98 if c == complexity else 0.01) for c in base.complexity_p}
    return QueryNeeds(fresh_p=fresh, complexity_p=complexity_p, task_p=base.task_p)


FRESH = sure(0.98, "simple", "fact_lookup")
COMPLEX = sure(0.02, "complex", "scenario")
SIMPLE = sure(0.02, "simple", "translation")


def make_needs(fresh: float, simple: float, moderate: float, complex_: float, task: str = "messaging") -> QueryNeeds:
    """Build classifier output with exact probabilities (the `needs` fake only makes confident ones)."""
    task_p = {t: (0.91 if t == task else 0.01) for t in TASK_LABELS}
    return QueryNeeds(
        fresh_p=fresh, complexity_p={"simple": simple, "moderate": moderate, "complex": complex_}, task_p=task_p
    )


def settings_with(**routing: Any) -> Settings:
    """The default settings with some routing policy changed; hermetic like tests.fakes.fake_registry."""
    base = load_settings({"STRATEGIST_DATA_DIR": "/nonexistent"})
    return base.model_copy(update={"routing": base.routing.model_copy(update=routing)})


def registry(scripts: dict[str, list[Any]] | None = None, health: HealthBoard | None = None, **routing: Any) -> Any:
    return fake_registry(ANSWERS if scripts is None else scripts, settings=settings_with(**routing), health=health)


def classify(n: QueryNeeds) -> Classification:
    return classification_of(n, 0.5)


def primary(reg: ProviderRegistry, n: QueryNeeds, constraints: Constraints | None = None, **kw: Any) -> str:
    chain = plan(reg, classify(n), "a query", constraints or {}, **kw)["chain"]
    return str(chain[0]["provider"]) if chain else ""


def run(reg: ProviderRegistry, n: QueryNeeds, caller_key: str | None = None) -> AnalysisResult:
    graph = build_analysis_graph().compile(checkpointer=InMemorySaver())
    ctx = Context(registry=reg, classifier=lambda _q: n, caller_key=caller_key)
    out = graph.invoke({"query": "a query"}, {"configurable": {"thread_id": str(uuid.uuid4())}}, context=ctx)
    return AnalysisResult.model_validate(out["result"])


# --- the adequacy model and the decision rule ---------------------------------------------------------------


def test_need_probabilities_spread_the_classifier_over_the_need_classes() -> None:
    routing = settings_with().routing
    p = need_probabilities(classify(make_needs(0.2, 0.5, 0.3, 0.2, task="summary")), routing)
    assert sum(p.values()) == pytest.approx(1.0)
    local_task = 0.91 + 3 * 0.01  # summary and the three other local tasks of the policy
    assert p["research"] == pytest.approx(0.2 * 0.2)
    assert p["fresh"] == pytest.approx(0.2 * 0.8)
    assert p["complex"] == pytest.approx(0.8 * 0.2)
    assert p["moderate"] == pytest.approx(0.8 * 0.3 * (1 - local_task), abs=1e-3)
    assert p["light"] == pytest.approx(0.8 * (0.5 + 0.3 * local_task), abs=1e-3)
    # The adequacy table: fresh facts only from web search, complex analysis only from premium.
    assert [t for t, served in SERVES.items() if "fresh" in served] == ["realtime", "research"]
    assert [t for t, served in SERVES.items() if "complex" in served] == ["premium", "research"]
    assert [t for t, served in SERVES.items() if "research" in served] == ["research"]
    assert all("light" in served for served in SERVES.values())
    # The router alone credits realtime with a share of complex jobs: it is the better stand-in for premium.
    assert serves("realtime", "complex", routing) == routing.realtime_complex_adequacy == 0.25
    assert serves("local", "complex", routing) == serves("premium", "fresh", routing) == 0.0


@pytest.mark.parametrize(
    "classified, expected",
    [
        (FRESH, "perplexity"),
        (COMPLEX, "gemini"),
        (SIMPLE, "local"),
        (sure(0.02, "moderate", "summary"), "local"),
    ],
    ids=["fresh->realtime", "complex->premium", "simple->local", "moderate-summary->local"],
)
def test_confident_needs_get_the_cheapest_adequate_tier(classified: QueryNeeds, expected: str) -> None:
    reg = registry()
    routing = plan(reg, classify(classified), "a query", {})
    assert routing["chain"][0]["provider"] == expected
    assert routing["reasons"][-1].startswith(f"primary {expected}")
    assert "cheapest tier that serves it" in routing["reasons"][-1]


def test_moderate_job_beyond_local_goes_to_the_cheaper_tier_that_can_do_it() -> None:
    reg = registry()
    c = classify(QueryNeeds.confident(0.02, "moderate", "messaging"))
    cheaper = min(("gemini", "perplexity"), key=lambda n: estimate_call_cost(reg, n, c, "a query"))
    assert plan(reg, c, "a query", {})["chain"][0]["provider"] == cheaper


def test_uncertain_classification_decides_by_expected_cost_and_says_so() -> None:
    reg = registry()
    torn = make_needs(0.3, 0.05, 0.05, 0.9, task="scenario")
    chain, reasons, options = intelligent_chain(reg, classify(torn), "a query", {})
    assert options[0].expected_cost_usd == min(o.expected_cost_usd for o in options)
    assert "uncertain classification" in reasons[-1] and "expected cost" in reasons[-1]
    assert chain[0]["provider"] == "gemini"  # 63% complex without fresh facts outweighs 30% fresh at equal losses
    # The wrong-answer costs drive the decision: make stale facts expensive and web search comes first (as the
    # research step before the premium reasoning, which the 63% complex part still needs).
    costly_stale = registry(wrong_answer_cost_usd={"fresh": 1.0, "complex": 0.02, "moderate": 0.02, "research": 1.0})
    research = plan(costly_stale, classify(torn), "a query", {})["research_step"]
    assert research is not None and research["provider"] == "perplexity"


def test_cost_sensitive_request_weighs_wrong_answers_down() -> None:
    reg = registry()
    borderline = make_needs(0.02, 0.85, 0.1, 0.05, task="summary")
    assert primary(reg, borderline) == "gemini"
    routing = plan(reg, classify(borderline), "a query", {"cost_sensitive": True})
    assert routing["chain"][0]["provider"] == "local"
    assert "cost-sensitive request: the cost of a wrong answer is weighted at 25%" in routing["reasons"]


def test_fallbacks_follow_adequacy_then_health_then_price() -> None:
    reg = registry()
    # Complex or moderate messaging: premium serves both, realtime the moderate part (and a quarter of the
    # complex one), local neither: it is not planned as a fallback while an adequate provider is usable (its answer
    # would be degraded), only as the last resort once every adequate one has failed.
    routing = plan(reg, classify(make_needs(0.05, 0.0, 0.4, 0.6)), "a query", {})
    assert [(s["provider"], s.get("last_resort", False)) for s in routing["chain"]] == [
        ("gemini", False),
        ("perplexity", False),
        ("local", True),
    ]
    assert any(r.startswith("local (local) not planned as a fallback") for r in routing["reasons"])
    # Surely complex: realtime is the better stand-in when premium fails.
    complex_chain = plan(reg, classify(COMPLEX), "q", {})["chain"]
    assert [s["provider"] for s in complex_chain if not s.get("last_resort")] == ["gemini", "perplexity"]
    # Surely fresh facts: only realtime serves them; premium and local answer from memory: last resorts only.
    surely_fresh = classify(make_needs(1.0, 1.0, 0.0, 0.0, task="fact_lookup"))
    fresh_chain = plan(reg, surely_fresh, "q", {})["chain"]
    assert [s["provider"] for s in fresh_chain if not s.get("last_resort")] == ["perplexity"]
    assert {s["provider"] for s in fresh_chain if s.get("last_resort")} == {"gemini", "local"}
    # With realtime's circuit open nothing adequate is usable: both stay, the cheaper inadequate one first.
    health = HealthBoard(clock=lambda: 1000.0)
    for _ in range(health.policy.failure_threshold):
        health.record("perplexity", ok=False, latency_ms=10.0)
    no_search = registry(health=health)
    assert [s["provider"] for s in plan(no_search, surely_fresh, "q", {})["chain"]] == ["local", "gemini"]
    # Among equally adequate fallbacks, a failing one goes last: moderate messaging, perplexity failing.
    sick = HealthBoard(clock=lambda: 1000.0)
    for ok in (False, True, False, True, False):
        sick.record("perplexity", ok=ok, latency_ms=50.0)
    moderate = classify(make_needs(0.0, 0.0, 1.0, 0.0, task="messaging"))
    healthy_order = [s["provider"] for s in plan(reg, moderate, "q", {})["chain"] if not s.get("last_resort")]
    sick_chain = plan(registry(health=sick), moderate, "q", {})["chain"]
    sick_order = [s["provider"] for s in sick_chain if not s.get("last_resort")]
    assert set(healthy_order) == set(sick_order) == {"gemini", "perplexity"}
    assert sick_order[-1] == "perplexity"


# --- request constraints and availability -----------------------------------------------------------------


def test_a_provider_cooling_down_after_a_429_goes_behind_those_that_can_answer_until_its_retry_after_passes() -> None:
    clock = [1000.0]
    health = HealthBoard(clock=lambda: clock[0])
    for _ in range(2):  # two in a row: a storm, not one request's bad luck
        health.record("gemini", ok=False, latency_ms=30.0, error_class="rate_limited", retry_after_s=3.0)
    reg = registry(health=health)
    routing = plan(reg, classify(COMPLEX), "a query", {})
    # Behind the adequate provider that can answer now, not out of the route: if Perplexity fails too, waiting
    # out three seconds for Gemini beats a degraded answer from the local model.
    assert [s["provider"] for s in routing["chain"]] == ["perplexity", "gemini", "local"]
    assert any("gemini is rate limited for 3.0 s more" in r for r in routing["reasons"])
    # A fresh-fact question: only web search serves it, so the rate-limited Perplexity stays first (call_model
    # waits out its Retry-After; test_failover); before, it was left out and the local model answered from memory.
    for _ in range(2):
        health.record("perplexity", ok=False, latency_ms=30.0, error_class="rate_limited", retry_after_s=2.0)
    assert primary(reg, FRESH) == "perplexity"
    # Over half the time left, it is left out with its reason.
    routing = plan(reg, classify(FRESH), "a query", {"deadline_s": 3.0})
    assert "perplexity" not in [s["provider"] for s in routing["chain"]]
    assert any("rate limited: it asked to wait 2.0 s more" in r for r in routing["reasons"])
    clock[0] += 3.0
    assert primary(reg, COMPLEX) == "gemini"


def test_a_provider_that_has_gone_silent_is_demoted_behind_an_adequate_one_until_it_answers_again() -> None:
    """Two calls to Gemini overdue and none answered since: a complex analysis goes to Perplexity first instead of
    waiting for Gemini's hedge (the cold hung-primary run of bench/chaos.py waited for it on every request);
    Gemini stays in the chain, and leads again once its overdue calls have ended. The clock is injected."""
    clock = [100.0]
    health = HealthBoard(stalls=StallWatch(lambda: clock[0]))
    reg = registry(health=health)
    tickets = [health.stalls.start("gemini", 0.5) for _ in range(2)]
    assert primary(reg, COMPLEX) == "gemini"  # in flight, not yet overdue: nothing is known
    clock[0] += 0.6
    routing = plan(reg, classify(COMPLEX), "a query", {})
    assert [s["provider"] for s in routing["chain"]] == ["perplexity", "gemini", "local"]
    assert routing["chain"][1]["reason"].startswith("fallback 1 gemini (premium)")
    assert (
        "gemini (premium) demoted behind perplexity (realtime), which can answer now: gemini stopped answering"
        in (routing["reasons"][-1])
    )
    # The research-then-reason pair is silent with its premium half: left out, the single providers remain.
    both = classify(sure(0.95, "complex", "scenario"))
    paired = plan(reg, both, "a query", {})
    assert paired["research_step"] is None and paired["chain"][0]["provider"] == "perplexity"
    # A query the silent provider does not lead is routed as before; with no adequate stand-in nothing moves.
    assert primary(reg, FRESH) == "perplexity"
    assert primary(registry({"gemini": [reply("x")], "local": [reply("y")]}, health=health), COMPLEX) == "gemini"
    for ticket in tickets:  # aborted at last: the evidence is gone, and Gemini leads again
        health.stalls.end("gemini", ticket, answered=False)
    assert primary(reg, COMPLEX) == "gemini"


def test_require_citations_keeps_only_providers_that_cite() -> None:
    routing = plan(registry(), classify(COMPLEX), "a query", {"require_citations": True})
    assert [s["provider"] for s in routing["chain"]] == ["perplexity"]
    assert any("citations required" in r for r in routing["reasons"])


def test_max_cost_skips_providers_estimated_above_it() -> None:
    routing = plan(registry(), classify(COMPLEX), "a query", {"max_cost_usd": 0.001})
    assert [s["provider"] for s in routing["chain"]] == ["local"]
    assert sum("exceeds max_cost_usd" in r for r in routing["reasons"]) == 2


def test_deadline_skips_providers_observed_to_be_slower_than_the_time_left() -> None:
    health = HealthBoard(clock=lambda: 1000.0)
    for _ in range(3):
        health.record("gemini", ok=True, latency_ms=40_000.0)
    reg = registry(health=health)
    assert primary(reg, COMPLEX) == "gemini"
    routing = plan(reg, classify(COMPLEX), "a query", {"deadline_s": 20.0})
    assert "gemini" not in [s["provider"] for s in routing["chain"]]
    assert any("median latency 40.0 s exceeds the 20.0 s left" in r for r in routing["reasons"])
    # The time actually left (the route node passes it) wins over the request's nominal deadline.
    assert primary(reg, COMPLEX, {"deadline_s": 20.0}, remaining_s=60.0) == "gemini"
    # Providers never observed keep their place: their configured timeout is a cap, not a latency.
    assert [s["provider"] for s in routing["chain"] if not s.get("last_resort")] == ["perplexity"]


def test_too_few_latency_samples_do_not_skip_a_provider() -> None:
    health = HealthBoard(clock=lambda: 1000.0)
    health.record("gemini", ok=True, latency_ms=40_000.0)
    assert primary(registry(health=health), COMPLEX, {"deadline_s": 5.0}) == "gemini"


def test_unavailable_providers_are_skipped_with_their_reason() -> None:
    reg = registry({"local": [reply("Only the local model is here.")]})
    routing = plan(reg, classify(COMPLEX), "a query", {})
    assert [s["provider"] for s in routing["chain"]] == ["local"]
    assert any(r.startswith("gemini (premium) skipped: no API key") for r in routing["reasons"])
    assert "no usable provider serves complex analysis" in routing["reasons"][-1]

    health = HealthBoard(clock=lambda: 1000.0)
    for _ in range(health.policy.failure_threshold):
        health.record("perplexity", ok=False, latency_ms=10.0)
    routing = plan(registry(health=health), classify(FRESH), "a query", {})
    assert "perplexity" not in [s["provider"] for s in routing["chain"]]
    assert any("perplexity (realtime) skipped: circuit open" in r for r in routing["reasons"])


def test_nothing_usable_gives_an_empty_chain_and_a_clear_error() -> None:
    routing = plan(registry(), classify(COMPLEX), "a query", {"require_citations": True, "max_cost_usd": 0.0})
    assert routing["chain"] == [] and routing["reasons"][-1] == "no provider can serve this request"


def test_plan_keeps_its_output_contract() -> None:
    routing = plan(registry(), classify(COMPLEX), "a query", {})
    assert set(routing) == {
        "chain",
        "reasons",
        "routing_mode",
        "shadow",
        "estimated_cost_usd",
        "baseline_estimate_usd",
        "spend_ceiling_usd",
        "step_costs_usd",
        "cursor",
        "research_step",
    }
    assert routing["routing_mode"] == "intelligent" and routing["shadow"] is None and routing["cursor"] == 0
    assert set(routing["chain"][0]) == {"provider", "tier", "model", "reason"}
    assert routing["estimated_cost_usd"] == routing["baseline_estimate_usd"] > 0  # premium is the primary


# --- ROUTING_MODE ---------------------------------------------------------------------------------------------


def test_routing_mode_comes_from_the_environment() -> None:
    env = {"STRATEGIST_DATA_DIR": "/nonexistent", "ROUTING_MODE": "shadow", "ROUTING_ROLLOUT_PERCENT": "25"}
    settings = load_settings(env)
    assert (settings.routing.mode, settings.routing.rollout_percent) == ("shadow", 25.0)


@pytest.mark.parametrize("classified", [SIMPLE, FRESH, COMPLEX], ids=["simple", "fresh", "complex"])
def test_legacy_is_premium_first_then_realtime_never_local(classified: QueryNeeds) -> None:
    routing = plan(registry(mode="legacy"), classify(classified), "a query", {"cost_sensitive": True})
    assert [(s["provider"], s["tier"]) for s in routing["chain"]] == [("gemini", "premium"), ("perplexity", "realtime")]
    assert routing["routing_mode"] == "legacy" and routing["shadow"] is None


def test_legacy_serves_a_simple_query_from_premium_and_never_falls_to_local() -> None:
    result = run(registry(mode="legacy"), SIMPLE)
    assert (result.provider, result.routing.mode) == ("gemini", "legacy")
    failing: dict[str, list[Any]] = {
        "gemini": [ServerError("500")],
        "perplexity": [ServerError("500")],
        "local": [reply("Local, ok.")],
    }
    result = run(registry(failing, mode="legacy"), SIMPLE)
    # Perplexity, the last step, gets its one retry without a budget earned; with the chain spent each provider is
    # asked again up to the retry policy's three calls; the local model is never asked.
    assert [a.provider for a in result.attempts] == [
        "gemini",
        "perplexity",
        "perplexity",
        "gemini",
        "gemini",
        "perplexity",
    ]
    assert result.answer is None and result.error


def test_legacy_without_premium_uses_realtime_and_without_either_has_nothing() -> None:
    routing = plan(registry({"perplexity": [CITED], "local": [reply("x y")]}, mode="legacy"), classify(SIMPLE), "q", {})
    assert [s["provider"] for s in routing["chain"]] == ["perplexity"]
    assert any("gemini (premium) skipped: no API key" in r for r in routing["reasons"])
    only_local = plan(registry({"local": [reply("x y")]}, mode="legacy"), classify(SIMPLE), "q", {})
    assert only_local["chain"] == []


def test_shadow_serves_legacy_and_records_what_intelligent_routing_would_have_done() -> None:
    # The cascade has perplexity check the served answer: it replies in the verdict schema, so the check is usable
    # and no further checker is asked.
    check = reply(verdict_text("Premium answer: map the booths first.", ["supports"], 0.8))
    result = run(registry(ANSWERS | {"perplexity": [check]}, mode="shadow"), SIMPLE)
    assert (result.provider, result.routing.mode) == ("gemini", "shadow")
    assert [s.provider for s in result.routing.chain] == ["gemini", "perplexity"]
    shadow = result.routing.shadow or {}
    assert (shadow["provider"], shadow["tier"], shadow["estimated_cost_usd"]) == ("local", "local", 0.0)
    assert isinstance(shadow["served_estimate_usd"], float) and shadow["served_estimate_usd"] > 0
    chain = shadow["chain"]
    assert isinstance(chain, list) and chain[0]["provider"] == "local"
    assert any(r.startswith("shadow: intelligent routing would have chosen local") for r in result.routing.reasons)
    # Only the served chain answers: the intelligent choice is recorded, never called.
    assert result.attempts[0].provider == "gemini" and "local" not in {a.provider for a in result.attempts}

    entry = LedgerEntry.from_result(result, at=1_700_000_000.0)
    assert (entry.shadow_intelligent_usd, entry.shadow_tier) == (0.0, "local")
    section = report([entry])["shadow"]
    assert section["analyses"] == 1 and section["intelligent_tiers"] == {"local": 1}
    assert section["served_cost_usd"] == pytest.approx(result.cost_usd, abs=1e-6)
    assert section["estimated_savings_pct"] == 100.0


def test_shadow_is_not_limited_by_the_rollout_percentage() -> None:
    reg = registry(mode="shadow", rollout_percent=0)
    assert effective_mode(reg, None) == "shadow"
    assert plan(reg, classify(SIMPLE), "q", {})["shadow"] is not None


# --- percentage rollout -----------------------------------------------------------------------------------------


def test_caller_bucket_is_stable_across_processes() -> None:
    keys = ["user-1", "session-af31", "analyst@campaign.example", ""]
    code = "import sys; from nodes.route import caller_bucket; print([caller_bucket(k) for k in sys.argv[1:]])"
    # A different hash seed: Python's own hash() would give other buckets in the other process.
    out = subprocess.run(
        [sys.executable, "-c", code, *keys],
        cwd=ROOT,
        env={"PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == str([caller_bucket(k) for k in keys])
    assert all(0 <= caller_bucket(k) < 100 for k in keys)


@pytest.mark.parametrize("percent", [1, 10, 25, 50, 90])
def test_rollout_share_is_roughly_the_percentage(percent: int) -> None:
    reg = registry(rollout_percent=percent)
    keys = [f"user-{i}" for i in range(20_000)]
    share = sum(effective_mode(reg, k) == "intelligent" for k in keys) / len(keys)
    # 20,000 fixed keys: the binomial standard deviation is at most 0.35 points, so 1.5 is over 4 sigma.
    assert abs(100 * share - percent) < 1.5


def test_rollout_buckets_only_grow_as_the_percentage_rises() -> None:
    keys = [f"session-{i}" for i in range(2_000)]
    at_10 = {k for k in keys if effective_mode(registry(rollout_percent=10), k) == "intelligent"}
    at_50 = {k for k in keys if effective_mode(registry(rollout_percent=50), k) == "intelligent"}
    assert at_10 < at_50


def test_callers_outside_the_rollout_and_anonymous_ones_keep_legacy() -> None:
    reg = registry(rollout_percent=30)
    inside = next(k for k in (f"u{i}" for i in range(1000)) if caller_bucket(k) < 30)
    outside = next(k for k in (f"u{i}" for i in range(1000)) if caller_bucket(k) >= 30)
    assert effective_mode(reg, inside) == "intelligent"
    assert effective_mode(reg, outside) == "legacy" and effective_mode(reg, None) == "legacy"
    routing = plan(reg, classify(SIMPLE), "q", {}, caller_key=outside)
    assert routing["routing_mode"] == "legacy" and "caller outside the 30% intelligent rollout" in routing["reasons"]
    # Through the graph: the caller key travels in the run-time context.
    assert run(reg, SIMPLE, caller_key=inside).provider == "local"
    assert run(reg, SIMPLE, caller_key=outside).provider == "gemini"
    # At 100% everyone, anonymous callers included, gets intelligent routing.
    assert effective_mode(registry(rollout_percent=100), None) == "intelligent"


# --- research, then reason; the measured local tier ----------------------------------------------------------


def test_fresh_facts_and_complex_reasoning_get_research_then_reason_priced_as_both() -> None:
    reg = registry()
    both = classify(sure(0.95, "complex", "scenario"))
    routing = plan(reg, both, "What should be our campaign focus for next week in Jubilee Hills?", {})
    assert routing["research_step"] is not None and routing["research_step"]["provider"] == "perplexity"
    assert routing["chain"][0]["provider"] == "gemini"
    assert "research-then-reason" in routing["reasons"][-1]
    alone = sum(
        estimate_call_cost(reg, n, both, "What should be our campaign focus for next week in Jubilee Hills?")
        for n in ("perplexity", "gemini")
    )
    # The reasoning call also reads the research: the pair costs more than the two calls on the query alone.
    assert routing["estimated_cost_usd"] > round(alone, 6)
    # A query that needs only one of the two gets one tier, and no research step.
    for single in (FRESH, COMPLEX):
        assert plan(reg, classify(single), "q", {})["research_step"] is None
    # Without realtime (or over a cost cap) there is no pair to plan.
    assert plan(registry({"gemini": [reply("x")]}), both, "q", {})["research_step"] is None
    assert plan(reg, both, "q", {"max_cost_usd": 0.01})["research_step"] is None


def test_local_adequacy_comes_from_the_measurement_not_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = registry()
    light = sure(0.02, "simple", "translation")
    assert primary(reg, light) == "local"
    poor = LocalAdequacy(model="poor", by_task={t: Counts(20, 1) for t in TASK_LABELS})
    monkeypatch.setattr("nodes.route.default_local_adequacy", lambda: poor)
    routing = plan(reg, classify(light), "Translate 'thank you' into Hindi", {})
    assert routing["chain"][0]["provider"] != "local"
    # Measured per script: good in Latin script, useless in Telugu.
    mixed = LocalAdequacy(
        model="mixed",
        by_task={"translation": Counts(20, 10)},
        by_task_language={("translation", "latin"): Counts(10, 10), ("translation", "te"): Counts(10, 0)},
    )
    monkeypatch.setattr("nodes.route.default_local_adequacy", lambda: mixed)
    assert primary(reg, light) == "local"
    telugu = plan(reg, classify(light), "Translate 'thank you' into Telugu", {})
    assert telugu["chain"][0]["provider"] != "local"


def local_model_registry(**env: str) -> ProviderRegistry:
    """A registry whose local tier is a model of the user's own (LOCAL_MODEL), as configured by ``env``."""
    return fake_registry(ANSWERS, settings=load_settings({"STRATEGIST_DATA_DIR": "/nonexistent", **env}))


def measurement(path: Path, model: str, correct: int) -> str:
    """Write a local-adequacy artifact (bench/local.py's format): 10 jobs a task, ``correct`` of them right."""
    by_task = {t: {"n": 10, "correct": correct} for t in TASK_LABELS}
    path.write_text(json.dumps({"format": ARTIFACT_FORMAT, "model": model, "by_task": by_task}), encoding="utf-8")
    return str(path)


def test_a_local_model_of_the_users_own_is_judged_by_its_own_measurement(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("nodes.route.default_local_adequacy", default_local_adequacy)  # the shipped SmolLM2 figures
    light = classify(sure(0.02, "simple", "summary"))
    # Unmeasured, a Llama served by LOCAL_BASE_URL is judged by the embedded model's 4 in 8 summaries; the reasons
    # say so, and how to measure it.
    unmeasured = plan(local_model_registry(LOCAL_MODEL="llama-3.1-8b-instruct"), light, "Summarise: turnout rose.", {})
    assert unmeasured["chain"][0]["provider"] == "gemini"
    said = [r for r in unmeasured["reasons"] if "llama-3.1-8b-instruct" in r]
    assert said == [
        f"local (llama-3.1-8b-instruct) is judged on light jobs by {default_local_adequacy().model}'s measured "
        "accuracy: measure it with bench/local.py --write PATH and set LOCAL_ADEQUACY_PATH"
    ]
    # Measured (9 in 10 right), it gets the light job, with nothing to excuse.
    path = measurement(tmp_path / "llama.json", "llama-3.1-8b-instruct", correct=9)
    measured = plan(
        local_model_registry(LOCAL_MODEL="llama-3.1-8b-instruct", LOCAL_ADEQUACY_PATH=path), light, "Summarise.", {}
    )
    assert measured["chain"][0]["provider"] == "local"
    assert not [r for r in measured["reasons"] if "judged on light jobs" in r or "measurement" in r]


def test_an_unreadable_local_measurement_is_said_and_the_shipped_one_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("nodes.route.default_local_adequacy", default_local_adequacy)
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "something else"}', encoding="utf-8")
    reg = local_model_registry(LOCAL_MODEL="llama-3.1-8b-instruct", LOCAL_ADEQUACY_PATH=str(broken))
    routing = plan(reg, classify(sure(0.02, "simple", "summary")), "Summarise.", {})
    assert routing["chain"][0]["provider"] == "gemini"
    assert any(r.startswith(f"local: its measurement {str(broken)!r} is unreadable") for r in routing["reasons"])


def test_a_local_measurement_that_is_not_a_file_stops_start_up() -> None:
    with pytest.raises(ConfigError, match=re.escape("adequacy_path '/nonexistent/llama.json' is not a file")):
        load_settings({"STRATEGIST_DATA_DIR": "/nonexistent", "LOCAL_ADEQUACY_PATH": "/nonexistent/llama.json"})


def test_shipped_local_measurement_is_well_formed() -> None:
    measured = default_local_adequacy()
    assert measured.model and set(measured.by_task) <= set(TASK_LABELS)
    assert all(0 <= c.correct <= c.n for c in measured.by_task.values())
    assert all(0.0 < measured.adequacy(t) < 1.0 for t in TASK_LABELS)


def test_outcomes_shift_a_route_only_after_enough_evidence(monkeypatch: pytest.MonkeyPatch) -> None:
    # The local model measured poor at summaries: premium gets a light summary job ...
    poor = LocalAdequacy(model="poor", by_task={t: Counts(10, 3) for t in TASK_LABELS})
    monkeypatch.setattr("nodes.route.default_local_adequacy", lambda: poor)
    reg = registry()
    c = classify(sure(0.02, "simple", "summary"))

    def primary_after(n: int) -> str:
        outcomes = [Outcome(f"t{i}", float(i), "local", "summary", 0.5, correct=i % 10 != 0) for i in range(n)]
        return plan(reg, c, "q", {}, learned=Learned.from_outcomes(outcomes))["chain"][0]["provider"]

    assert primary_after(0) == "gemini"
    # ... a few good outcomes do not move it; enough of them do, and the reasons say what was learned.
    assert primary_after(MIN_EVIDENCE - 1) == "gemini"
    assert primary_after(MIN_EVIDENCE) == "local"
    outcomes = [Outcome(f"t{i}", float(i), "local", "summary", 0.5, correct=True) for i in range(MIN_EVIDENCE)]
    reasons = plan(reg, c, "q", {}, learned=Learned.from_outcomes(outcomes))["reasons"]
    assert any(r.startswith(f"local on summary: {MIN_EVIDENCE}/{MIN_EVIDENCE} outcomes right") for r in reasons)
