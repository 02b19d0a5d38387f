"""Confidence: each factor, renormalisation, outcome feedback (Beta posterior), calibration, the cascade decision."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import ValidationError

from graphs.analysis import build_analysis_graph
from graphs.context import Context
from graphs.errors import FeedbackError, UnknownThread
from graphs.result import AnalysisResult
from graphs.service import Orchestrator
from graphs.state import AnalysisState, Candidate, CitationDict
from graphs.stores.feedback import FeedbackStore, RedisFeedback, SqliteFeedback
from nodes.policy.agreement import compare
from nodes.policy.calibration import (
    Outcome,
    Record,
    auroc,
    brier,
    ece,
    fit_calibrator,
    historical_accuracy,
    learned_from,
    logistic_fit,
    platt_fit,
)
from nodes.policy.confidence import combine, model_certainty, source_quality
from nodes.policy.query_classifier import QueryNeeds
from nodes.validate import escalation_decision, route_after_validate
from providers.config import ConfidenceSettings, load_settings
from providers.errors import ServerError
from providers.testing import fake_registry, reply
from providers.testing.redis_servers import ServerBinaryMissing, redis_server_binary, running

SIMPLE = QueryNeeds.confident(0.03, "simple", "summary")
COMPLEX = QueryNeeds.confident(0.04, "complex", "scenario")
CFG = ConfidenceSettings()
TODAY = dt.date(2026, 11, 20)
SETTINGS = load_settings({"STRATEGIST_DATA_DIR": "/nonexistent"})

LOCAL_ANSWER = "Turnout in Malakpet was 62% in 2023. Congress leads in Malakpet with 41% of the vote."
AGREEING = "In 2023, turnout in Malakpet stood at 62 percent. Congress is ahead in Malakpet, taking 41 per cent."
DISAGREEING = "Turnout in Malakpet was 48% in 2023. Congress leads in Malakpet with 41% of the vote."


def candidate(**fields: Any) -> Candidate:
    base: Candidate = {
        "text": "An answer with words.",
        "provider": "local",
        "model": "m",
        "tier": "local",
        "vendor": "local",
        "finish_reason": "stop",
        "citations": [],
        "mean_logprob": None,
        "stated_confidence": None,
    }
    return base | fields  # type: ignore[return-value]


def outcome(provider: str, task: str, correct: bool, raw: float = 0.7, **factors: float) -> Outcome:
    return Outcome(str(uuid.uuid4()), 0.0, provider, task, raw, correct, factors or {"model_certainty": raw})


class ListSource:
    """An outcome source over a list, counting how often it is read."""

    def __init__(self, outcomes: list[Outcome]) -> None:
        self.rows = outcomes
        self.reads = 0

    def version(self) -> str:
        return str(len(self.rows))

    def outcomes(self) -> list[Outcome]:
        self.reads += 1
        return list(self.rows)


def run(
    registry: Any,
    classified: QueryNeeds,
    *,
    feedback: Any = None,
    graph: Any = None,
    thread_id: str | None = None,
    deadline_in_s: float | None = None,
    **state: Any,
) -> AnalysisResult:
    graph = graph or build_analysis_graph().compile(checkpointer=InMemorySaver())
    ctx = Context(registry=registry, classifier=lambda _q: classified, feedback=feedback)
    if deadline_in_s is not None:
        ctx.deadline_at = ctx.clock() + deadline_in_s
    config = {"configurable": {"thread_id": thread_id or str(uuid.uuid4())}}
    out = graph.invoke({"query": "q", **state}, config, context=ctx)
    return AnalysisResult.model_validate(out["result"])


# --- factors ---------------------------------------------------------------------------------------------------


def test_model_certainty_prefers_logprobs_then_stated_confidence_and_is_none_without_either() -> None:
    value, detail = model_certainty(candidate(mean_logprob=math.log(0.8), stated_confidence=0.3)) or (0, "")
    assert value == pytest.approx(0.8) and "token probability" in detail
    assert model_certainty(candidate(stated_confidence=0.65)) == (0.65, "the model's stated confidence")
    assert model_certainty(candidate()) is None


@pytest.mark.parametrize(
    "finish_reason, factor",
    [
        ("stop", 1.0),
        ("STOP", 1.0),
        ("completed", 1.0),
        ("length", 0.7),
        ("MAX_TOKENS", 0.7),
        ("incomplete", 0.7),
        ("content_filter", 0.4),
        ("OTHER", 0.85),
    ],
)
def test_finish_reason_lowers_certainty(finish_reason: str, factor: float) -> None:
    value, detail = model_certainty(candidate(stated_confidence=0.8, finish_reason=finish_reason)) or (0, "")
    assert value == pytest.approx(0.8 * factor)
    assert (finish_reason in detail) == (factor != 1.0)


def test_source_quality_rewards_reputable_recent_independent_sources() -> None:
    table = SETTINGS.sources
    assert source_quality([], table, TODAY) == (0.0, "fresh facts needed, no sources cited")
    good: list[CitationDict] = [
        {"url": "https://eci.gov.in/a", "title": "", "date": "2026-11-18"},
        {"url": "https://epaper.thehindu.com/b", "title": "", "date": "2026-11-19"},
        {"url": "https://uk.reuters.com/c", "title": "", "date": "2026-11-15"},
    ]
    poor: list[CitationDict] = [{"url": "https://mobile.x.com/a", "title": "", "date": "2026-03-01"}]
    good_value, _ = source_quality(good, table, TODAY)
    poor_value, detail = source_quality(poor, table, TODAY)
    assert good_value > 0.9 > 0.4 > poor_value
    assert "1 sources, reputation 0.30" in detail
    undated, detail = source_quality([{"url": "https://eci.gov.in/a", "title": "", "date": ""}], table, TODAY)
    assert "undated" in detail and 0 < undated < good_value


def test_combine_renormalises_over_measured_factors_and_measures_nothing_from_nothing() -> None:
    weights = {"model_certainty": 0.30, "source_quality": 0.25, "cross_validation": 0.30, "historical_accuracy": 0.15}
    raw, factors = combine({"model_certainty": (0.6, ""), "historical_accuracy": (0.9, "")}, weights)
    assert [(f.name, f.weight) for f in factors] == [("model_certainty", 0.6667), ("historical_accuracy", 0.3333)]
    assert raw == pytest.approx((0.30 * 0.6 + 0.15 * 0.9) / 0.45, abs=1e-4)
    assert combine({}, weights) == (None, [])


def test_historical_accuracy_is_a_beta_posterior_shrunk_to_the_providers_record() -> None:
    assert historical_accuracy(Record(), Record(), "summary", 4.0) is None
    # Provider 8/10 overall: prior mean (8+1)/(10+2) = 0.75, as 4 pseudo-outcomes: Beta(3+3, 1+1) for 3/4 on task.
    value, detail = historical_accuracy(Record(8, 2), Record(3, 1), "summary", 4.0) or (0, "")
    assert value == pytest.approx(6 / 8)
    assert detail.startswith("Beta(6.0, 2.0): 3/4 right on summary, 8/10 on all tasks")
    # A task without outcomes starts at the provider's record; many outcomes on it outweigh the prior.
    unseen, _ = historical_accuracy(Record(8, 2), Record(), "x", 4.0) or (0, "")
    assert unseen == pytest.approx(0.75)
    many, _ = historical_accuracy(Record(108, 102), Record(100, 100), "x", 4.0) or (0, "")
    assert many == pytest.approx(0.5, abs=0.01)


def test_confidence_weights_are_validated() -> None:
    with pytest.raises(ValidationError, match="unknown factor"):
        ConfidenceSettings(weights={"gut_feeling": 1.0})
    with pytest.raises(ValidationError, match="negative"):
        ConfidenceSettings(weights={"model_certainty": -1.0})


# --- cross-validation agreement ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "other",
    [
        AGREEING,
        "Congress leads in Malakpet with 41% of the vote. Turnout in Malakpet was 61.8% in 2023.",  # rounding
        LOCAL_ANSWER + " Field teams should verify this locally.",  # extra detail
        "Turnout in Malakpet was 62% in 2023, per the ECI. Congress leads in Malakpet with 41% of the vote.",
    ],
)
def test_paraphrases_and_extra_detail_agree(other: str) -> None:
    assert compare(LOCAL_ANSWER, other).agreement >= 0.5


@pytest.mark.parametrize(
    "other, kind",
    [
        (DISAGREEING, "numbers"),
        ("Turnout in Malakpet was 62% in 2023. Congress does not lead in Malakpet with 41% of the vote.", "negation"),
        ("Turnout in Malakpet was 62% in 2023. BJP leads in Malakpet with 41% of the vote.", "names"),
        ("Turnout in Amberpet was 62% in 2023. Congress leads in Malakpet with 41% of the vote.", "names"),
    ],
)
def test_a_changed_number_negation_or_name_disagrees(other: str, kind: str) -> None:
    result = compare(LOCAL_ANSWER, other)
    assert result.agreement < 0.5 and kind in result.kinds


def test_a_contradiction_is_not_drowned_by_shared_boilerplate() -> None:
    boiler = " Campaign teams should track this closely. Field workers should verify it locally."
    assert compare(LOCAL_ANSWER + boiler, DISAGREEING + boiler).agreement < 0.5


def test_number_words_and_indian_multipliers_are_read_as_numbers() -> None:
    assert compare("Five booths in Uppal reopened today.", "5 booths in Uppal reopened today.").agreement > 0.9
    a, b = "The rally in Uppal drew 1.2 lakh people.", "The rally in Uppal drew 120,000 people."
    assert compare(a, b).agreement > 0.9
    assert "numbers" in compare(a, "The rally in Uppal drew 80,000 people.").kinds


def test_unrelated_or_empty_answers_do_not_agree() -> None:
    assert compare(LOCAL_ANSWER, "Cricket scores dominated the evening news cycle.").agreement == 0.0
    assert compare(LOCAL_ANSWER, "").agreement == 0.0


# --- calibration ------------------------------------------------------------------------------------------------


def test_identity_before_enough_outcomes_of_both_kinds() -> None:
    few = fit_calibrator(
        [outcome("local", "summary", i % 2 == 0) for i in range(CFG.calibration_min_outcomes - 1)], CFG
    )
    all_right = fit_calibrator([outcome("local", "summary", True) for _ in range(100)], CFG)
    for c in (few, all_right):
        assert c.kind == "identity" and c(0.8, {"model_certainty": 0.8}, "local") == 0.8
        assert c(None, {}, "local") == 0.5
    assert "identity" in few.describe()


def test_platt_scaling_recovers_a_known_distortion() -> None:
    rng = np.random.default_rng(7)
    raw = rng.uniform(0.05, 0.95, 20_000)
    truth = 1 / (1 + np.exp(-(2.0 * np.log(raw / (1 - raw)) - 0.5)))
    a, b = platt_fit(raw.tolist(), (rng.random(raw.size) < truth).astype(float))
    assert a == pytest.approx(2.0, abs=0.1) and b == pytest.approx(-0.5, abs=0.1)


def test_logistic_fit_matches_scikit_learn() -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 4))
    y = (rng.random(500) < 1 / (1 + np.exp(-(x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3)))).astype(float)
    ours = logistic_fit(np.column_stack([np.ones(500), x]), y, ridge=2.0)
    ref = sklearn.LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(x, y)
    assert ours[0] == pytest.approx(ref.intercept_[0], abs=1e-4)
    assert ours[1:] == pytest.approx(ref.coef_[0], abs=1e-4)


def test_calibration_stages_and_prior_blend() -> None:
    rng = np.random.default_rng(11)

    def sample(n: int) -> list[Outcome]:
        return [outcome("local", "summary", bool(rng.random() < 0.5), raw=float(r)) for r in rng.uniform(0.6, 0.9, n)]

    platt = fit_calibrator(sample(100), CFG)
    assert platt.kind == "platt" and platt.weight == pytest.approx(100 / (100 + CFG.calibration_prior_outcomes))
    logistic = fit_calibrator(sample(400), CFG)
    assert logistic.kind == "logistic" and "multi-factor Platt" in logistic.describe()
    # Right half the time whatever the raw score said: calibration pulls 0.85 towards 0.5, the prior keeps a share.
    value = logistic(0.85, {"model_certainty": 0.85}, "local")
    assert 0.45 < value < 0.6
    assert value == pytest.approx(
        logistic.weight * logistic.fitted(0.85, {"model_certainty": 0.85}, "local") + (1 - logistic.weight) * 0.85
    )


def test_per_provider_bias_of_stated_confidence_is_learned() -> None:
    rng = np.random.default_rng(5)
    rows = []
    for _ in range(400):
        # Within each provider a higher stated confidence means more often right, but "bold" states 0.8-0.98 and
        # is right 30-80% of the time, "modest" states 0.4-0.7 and is right 75-95%: no one curve fits both.
        c = float(rng.uniform(0.8, 0.98))
        rows.append(outcome("bold", "t", bool(rng.random() < 0.3 + 0.5 * (c - 0.8) / 0.18), model_certainty=c))
        c = float(rng.uniform(0.4, 0.7))
        rows.append(outcome("modest", "t", bool(rng.random() < 0.75 + 0.2 * (c - 0.4) / 0.3), model_certainty=c))
    model = fit_calibrator(rows, CFG)

    def p(provider: str, certainty: float) -> float:
        return model(certainty, {"model_certainty": certainty}, provider)

    assert p("bold", 0.9) == pytest.approx(0.58, abs=0.08) and p("modest", 0.6) == pytest.approx(0.88, abs=0.08)
    assert p("bold", 0.95) > p("bold", 0.85) and p("modest", 0.65) > p("modest", 0.45)
    assert (model.coefficient("model_certainty", "bold") or 0) > 0


def test_learned_state_is_refit_only_when_the_store_changes() -> None:
    source = ListSource([outcome("local", "summary", True)])
    first = learned_from(source, CFG)
    assert learned_from(source, CFG) is first and source.reads == 1
    source.rows.append(outcome("local", "summary", False))
    assert learned_from(source, CFG).records[("local", "summary")] == Record(1, 1) and source.reads == 2
    assert learned_from(None, CFG).history("local", "summary") is None


def test_quality_metrics_match_their_definitions() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    p = np.round(rng.random(300), 1)  # ties on purpose
    y = rng.random(300) < p
    assert auroc(p.tolist(), y.tolist()) == pytest.approx(metrics.roc_auc_score(y, p))
    assert brier(p.tolist(), y.tolist()) == pytest.approx(metrics.brier_score_loss(y, p))
    # Bin [0.0, 0.1]: said 0.1, right 1 of 2 -> 0.4 off; bin (0.8, 0.9]: said 0.9, right 2 of 2 -> 0.1 off.
    assert ece([0.1, 0.1, 0.9, 0.9], [False, True, True, True]) == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    assert math.isnan(auroc([0.2, 0.4], [True, True]))


# --- feedback store and record_feedback -----------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeedbackStore]:
    if request.param == "sqlite":
        sqlite_store = SqliteFeedback(tmp_path / "feedback.sqlite")
        yield sqlite_store
        sqlite_store.close()
        return
    import redis

    try:
        redis_server_binary()
    except ServerBinaryMissing as exc:
        pytest.skip(str(exc))
    with running("redis", tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url)
        yield RedisFeedback(client)
        client.close()


def test_store_replaces_an_outcome_per_thread_and_changes_version(store: FeedbackStore) -> None:
    first = outcome("local", "summary", True)
    v0 = store.version()
    store.record(first)
    v1 = store.version()
    store.record(Outcome(first.thread_id, 1.0, "local", "summary", 0.7, False, {"model_certainty": 0.7}))
    assert len({v0, v1, store.version()}) == 3
    assert [(o.thread_id, o.correct) for o in store.outcomes()] == [(first.thread_id, False)]
    assert store.get(first.thread_id) == store.outcomes()[0] and store.get("nope") is None


def test_feedback_updates_historical_accuracy_and_is_read_from_the_checkpoint(tmp_path: Path) -> None:
    store = SqliteFeedback(tmp_path / "feedback.sqlite")
    registry = fake_registry({"local": [reply("A short summary of the speech.\nConfidence: 0.6")]})
    orchestrator = Orchestrator(registry, InMemorySaver(), feedback=store)
    graph = orchestrator.graph
    first = run(registry, SIMPLE, feedback=store, graph=graph, thread_id="t-1")
    assert [f.name for f in first.confidence.factors] == ["model_certainty"]

    recorded = orchestrator.record_feedback("t-1", True, note="checked by an analyst")
    assert (recorded.provider, recorded.task, recorded.raw, recorded.correct) == ("local", "summary", 0.6, True)
    assert recorded.factors == {"model_certainty": 0.6} and recorded.note == "checked by an analyst"

    second = run(registry, SIMPLE, feedback=store, graph=graph)
    history = {f.name: f for f in second.confidence.factors}["historical_accuracy"]
    # 1/1 right: prior mean (1+1)/(1+2) as 4 pseudo-outcomes, then the one outcome: Beta(1 + 8/3, 4/3).
    assert history.value == pytest.approx((1 + 8 / 3) / 5, abs=1e-4)
    assert history.detail.startswith("Beta(3.7, 1.3): 1/1 right on summary")
    # Identity calibration (one outcome): the value is the raw weighted mean.
    assert second.confidence.raw == pytest.approx((0.30 * 0.6 + 0.15 * history.value) / 0.45, abs=1e-3)
    assert second.confidence.value == second.confidence.raw and "identity" in second.confidence.calibration

    # A correction replaces the verdict instead of counting the analysis twice.
    orchestrator.record_feedback("t-1", False)
    assert [o.correct for o in store.outcomes()] == [False]
    store.close()


def test_feedback_on_an_unknown_unfinished_or_unanswered_analysis_is_a_clear_error(tmp_path: Path) -> None:
    store = SqliteFeedback(tmp_path / "feedback.sqlite")
    saver = InMemorySaver()
    registry = fake_registry({"local": [reply("A short summary.\nConfidence: 0.6")]})
    orchestrator = Orchestrator(registry, saver, feedback=store)
    with pytest.raises(UnknownThread, match="no analysis with thread id 'nope'"):
        orchestrator.record_feedback("nope", True)

    # The same store holds a thread that stopped before its last step.
    paused = build_analysis_graph().compile(checkpointer=saver, interrupt_before=["score"])
    ctx = Context(registry=registry, classifier=lambda _q: SIMPLE)
    paused.invoke({"query": "q"}, {"configurable": {"thread_id": "half"}}, context=ctx)
    with pytest.raises(FeedbackError, match="has not finished"):
        orchestrator.record_feedback("half", True)

    failing = fake_registry({"local": [ServerError("boom")]})
    run(failing, SIMPLE, graph=orchestrator.graph, thread_id="failed")
    with pytest.raises(FeedbackError, match="no answer to judge"):
        orchestrator.record_feedback("failed", True)
    assert store.outcomes() == []
    store.close()


def test_result_shows_raw_and_calibrated_values_once_a_model_is_fitted() -> None:
    rng = np.random.default_rng(2)
    # The local model's stated 0.6 has been right only about a third of the time.
    rows = [outcome("local", "summary", bool(rng.random() < 0.35), raw=0.6) for _ in range(300)]
    registry = fake_registry({"local": [reply("A short summary of the speech.\nConfidence: 0.6")]})
    result = run(registry, SIMPLE, feedback=ListSource(rows))
    confidence = result.confidence
    assert confidence.raw is not None and confidence.value < confidence.raw - 0.1
    assert "logistic regression" in confidence.calibration and "300 outcomes" in confidence.calibration
    assert "learned log-odds weight" in confidence.factors[0].detail


# --- the confidence-gated cascade -----------------------------------------------------------------------------


def state_for(answer: Candidate, **extra: Any) -> AnalysisState:
    classification = {
        "fresh_p": 0.03,
        "complexity_p": {},
        "task_p": {},
        "complexity": "simple",
        "task": "summary",
        "needs_fresh": False,
    }
    base: dict[str, Any] = {"query": "q", "classification": classification, "attempts": [], "rejections": []}
    return base | {"deadline_at": 1e12, "candidate": answer} | extra  # type: ignore[return-value]


def decide(answer: Candidate, registry: Any, now: float = 0.0, **extra: Any) -> tuple[dict[str, Any], Any]:
    ctx = Context(registry=registry)
    escalation, chain = escalation_decision(answer, state_for(answer, **extra), ctx, now)
    return dict(escalation), chain


CHECKERS = {"local": [reply("x y")], "gemini": [reply("x y")], "perplexity": [reply("x y")]}


def test_low_confidence_escalates_to_another_vendor_and_high_confidence_is_accepted() -> None:
    registry = fake_registry(CHECKERS)
    low, chain = decide(candidate(stated_confidence=0.4), registry)
    assert low["decision"] == "escalate" and low["calibrated"] == 0.4 and low["threshold"] == CFG.escalate_below
    assert "0.40 < threshold 0.75: asking gemini (premium)" in low["reason"]
    assert [s["provider"] for s in chain] == ["gemini", "perplexity"]
    high, chain = decide(candidate(stated_confidence=0.9), registry)
    assert high["decision"] == "accept" and chain is None


def test_escalation_respects_budget_deadline_and_availability() -> None:
    registry = fake_registry(CHECKERS)
    broke, _ = decide(candidate(stated_confidence=0.4), registry, constraints={"max_cost_usd": 0.0001})
    assert broke["decision"] == "not_possible" and "max_cost_usd" in broke["reason"]
    late, _ = decide(candidate(stated_confidence=0.4), registry, now=1e12 - 2)
    assert late["decision"] == "not_possible" and "s left before the deadline" in late["reason"]
    alone, _ = decide(candidate(stated_confidence=0.4), fake_registry({"local": [reply("x y")]}))
    assert alone["decision"] == "not_possible" and "no provider of another vendor" in alone["reason"]


def test_requested_cross_checks_and_a_disabled_cascade() -> None:
    registry = fake_registry(CHECKERS)
    asked, _ = decide(candidate(stated_confidence=0.95), registry, depth="deep")
    assert asked["decision"] == "requested"
    off_settings = SETTINGS.model_copy(update={"confidence": CFG.model_copy(update={"escalate_below": 0.0})})
    off, _ = decide(candidate(stated_confidence=0.1), fake_registry(CHECKERS, settings=off_settings))
    assert off["decision"] == "off"


def test_route_after_validate_follows_the_stored_decision() -> None:
    answer = candidate()
    escalate = {"decision": "escalate", "reason": "", "raw": 0.4, "calibrated": 0.4, "threshold": 0.75}
    assert route_after_validate(state_for(answer, escalation=escalate)) == "cross_check"
    assert route_after_validate(state_for(answer, escalation=escalate, deadline_passed=True)) == "score"
    assert route_after_validate(state_for(answer, escalation=escalate | {"decision": "accept"})) == "score"
    assert route_after_validate(state_for(answer, escalation=None, depth="deep")) == "cross_check"


def test_cascade_keeps_a_corroborated_answer_and_records_why() -> None:
    registry = fake_registry(
        {"local": [reply(LOCAL_ANSWER + "\nConfidence: 0.4")], "gemini": [reply(AGREEING + "\nConfidence: 0.8")]}
    )
    result = run(registry, SIMPLE)
    assert result.provider == "local" and result.answer == LOCAL_ANSWER
    assert [(a.provider, a.role) for a in result.attempts] == [("local", "answer"), ("gemini", "cross_check")]
    assert result.escalation is not None and result.escalation["decision"] == "escalate"
    assert result.escalation["outcome"].startswith("gemini agreement")
    factors = {f.name: f.value for f in result.confidence.factors}
    assert factors["cross_validation"] >= 0.5 and result.confidence.value > 0.4


def test_cascade_serves_the_better_supported_of_two_disagreeing_answers() -> None:
    registry = fake_registry(
        {"local": [reply(LOCAL_ANSWER + "\nConfidence: 0.4")], "gemini": [reply(DISAGREEING + "\nConfidence: 0.9")]}
    )
    result = run(registry, SIMPLE)
    assert result.provider == "gemini" and result.answer == DISAGREEING
    assert result.escalation is not None and result.escalation["superseded"]["text"] == LOCAL_ANSWER
    assert "gemini's is better supported (0.90 against local's 0.40)" in result.escalation["outcome"]
    # The primary did answer: serving the checker's answer is not a fallback.
    assert result.fallback_mode is False
    factors = {f.name: f.value for f in result.confidence.factors}
    assert factors["cross_validation"] < 0.5


def test_cascade_stays_within_the_deadline() -> None:
    registry = fake_registry({"local": [reply(LOCAL_ANSWER + "\nConfidence: 0.4")], "gemini": [reply(AGREEING)]})
    result = run(registry, SIMPLE, deadline_in_s=CFG.min_time_left_s / 2)
    assert result.escalation is not None and result.escalation["decision"] == "not_possible"
    assert [a.role for a in result.attempts] == ["answer"]
