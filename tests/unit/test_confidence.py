"""Confidence: each factor, renormalisation, outcome feedback (Beta posterior), calibration, the cascade decision."""

from __future__ import annotations

import datetime as dt
import json
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
from nodes.policy.calibration import Outcome
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
    [("stop", 1.0), ("STOP", 1.0), ("completed", 1.0), ("content_filter", 0.4), ("OTHER", 0.85)],
)  # fmt: skip
def test_finish_reason_lowers_certainty(finish_reason: str, factor: float) -> None:
    value, detail = model_certainty(candidate(stated_confidence=0.8, finish_reason=finish_reason)) or (0, "")
    assert value == pytest.approx(0.8 * factor)
    assert (finish_reason in detail) == (factor != 1.0)


@pytest.mark.parametrize("finish_reason", ["length", "MAX_TOKENS", "incomplete"])
def test_a_truncated_answer_is_degenerate_and_its_confidence_capped(finish_reason: str) -> None:
    registry = fake_registry({"local": [reply(LOCAL_ANSWER + "\nConfidence: 0.95", finish_reason=finish_reason)]})
    result = run(registry, SIMPLE)
    assert result.confidence.degenerate == ["truncated"] and result.confidence.value <= CFG.degenerate_cap
    assert "capped at 0.30" in {f.name: f for f in result.confidence.factors}["model_certainty"].detail
    assert result.needs_review and result.review is not None and "degenerate output" in result.review.reason


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


def test_confidence_weights_are_validated() -> None:
    with pytest.raises(ValidationError, match="unknown factor"):
        ConfidenceSettings(weights={"gut_feeling": 1.0})
    with pytest.raises(ValidationError, match="negative"):
        ConfidenceSettings(weights={"model_certainty": -1.0})


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
    # Uncalibrated (one outcome): the value is the raw weighted mean, and the result says so.
    assert second.confidence.raw == pytest.approx((0.30 * 0.6 + 0.15 * history.value) / 0.45, abs=1e-3)
    assert second.confidence.value == second.confidence.raw and not second.confidence.calibrated
    assert second.confidence.calibration.startswith("uncalibrated: 1 outcomes recorded")
    assert second.needs_review and second.review is not None and not second.review.certified
    assert "certifies nothing" in second.review.reason

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
    assert confidence.raw is not None and confidence.value < confidence.raw - 0.1 and confidence.calibrated
    assert "fitted on 300 outcomes" in confidence.calibration


def test_a_certified_gate_accepts_answers_above_its_threshold_and_says_what_it_rests_on() -> None:
    rng = np.random.default_rng(6)
    rows = []
    for i in range(400):
        c = float(rng.uniform(0.1, 0.95))
        rows.append(
            Outcome(
                f"t{i}", float(i), "local", "summary", c, bool(rng.random() < 1.6 * c - 0.3), {"model_certainty": c}
            )
        )
    sure = run(fake_registry({"local": [reply("A short summary of the speech.\nConfidence: 0.93")]}), SIMPLE,
               feedback=ListSource(rows))  # fmt: skip
    unsure = run(fake_registry({"local": [reply("A short summary of the speech.\nConfidence: 0.2")]}), SIMPLE,
                 feedback=ListSource(rows))  # fmt: skip
    for result in (sure, unsure):
        review = result.review
        assert review is not None and review.certified and review.threshold is not None
        assert (review.alpha, review.delta, review.n) == (CFG.review_alpha, CFG.review_delta, 200)
        assert 0 < review.coverage < 1
    assert sure.needs_review is False and unsure.needs_review is True
    assert "below the certified threshold" in (unsure.review.reason if unsure.review else "")


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


def checker(answer: str, verdicts: list[str], confidence: float | None = None) -> str:
    """Return a checker's reply in the verdict schema (nodes/policy/verdict.py)."""
    body: dict[str, Any] = {
        "answer": answer,
        "verdicts": [{"claim": i, "verdict": v, "reason": "r"} for i, v in enumerate(verdicts, start=1)],
    }
    if confidence is not None:
        body["confidence"] = confidence
    return "```json\n" + json.dumps(body) + "\n```"


def test_cascade_keeps_a_corroborated_answer_and_records_why() -> None:
    registry = fake_registry(
        {
            "local": [reply(LOCAL_ANSWER + "\nConfidence: 0.4")],
            "gemini": [reply(checker(AGREEING, ["supports", "supports"], 0.8))],
        }
    )
    result = run(registry, SIMPLE)
    assert result.provider == "local" and result.answer == LOCAL_ANSWER
    assert [(a.provider, a.role) for a in result.attempts] == [("local", "answer"), ("gemini", "cross_check")]
    assert result.escalation is not None and result.escalation["decision"] == "escalate"
    assert result.escalation["outcome"].startswith("gemini agreement")
    factors = {f.name: f.value for f in result.confidence.factors}
    assert factors["cross_validation"] == 1.0 and result.confidence.value > 0.4
    check = result.cross_check
    assert check is not None and [v["verdict"] for v in check["verdicts"]] == ["supports", "supports"]
    assert check["verdicts"][0]["claim"] == "Turnout in Malakpet was 62% in 2023."


def test_cascade_serves_the_better_supported_of_two_disagreeing_answers() -> None:
    registry = fake_registry(
        {
            "local": [reply(LOCAL_ANSWER + "\nConfidence: 0.4")],
            "gemini": [reply(checker(DISAGREEING, ["contradicts", "supports"], 0.9))],
        }
    )
    result = run(registry, SIMPLE)
    assert result.provider == "gemini" and result.answer == DISAGREEING
    assert result.escalation is not None and result.escalation["superseded"]["text"] == LOCAL_ANSWER
    assert "gemini's is better supported (0.90 against local's 0.40)" in result.escalation["outcome"]
    # The primary did answer: serving the checker's answer is not a fallback.
    assert result.fallback_mode is False
    factors = {f.name: f.value for f in result.confidence.factors}
    assert factors["cross_validation"] < 0.5


def test_a_contradiction_between_the_answers_lowers_agreement_even_when_the_verdicts_missed_it() -> None:
    registry = fake_registry(
        {
            "local": [reply(LOCAL_ANSWER + "\nConfidence: 0.4")],
            "gemini": [reply(checker(DISAGREEING, ["supports", "supports"], 0.9))],
        }
    )
    result = run(registry, SIMPLE)
    check = result.cross_check
    assert check is not None and check["agreement"] < 0.5 and "which the verdicts missed" in check.get("detail", "")


@pytest.mark.parametrize(
    "text, why",
    [
        ("Turnout was 62%, I agree with the answer.", "invalid JSON: the reply has no JSON object"),
        ('{"answer": "x y", "verdicts": [{"claim": 1, "verdict": "maybe"}]}', "does not fit the verdict schema"),
        ('{"answer": "x y", "verdicts": [{"claim": 1, "verdict": "supports"', "invalid JSON"),
        ('{"answer": "x y", "verdicts": [{"claim": 9, "verdict": "supports"}]}', "no verdict on any of the 2 claims"),
    ],
)
def test_an_unreadable_verdict_makes_the_check_unusable_and_the_next_checker_is_asked(text: str, why: str) -> None:
    registry = fake_registry(
        {
            "local": [reply(LOCAL_ANSWER + "\nConfidence: 0.4")],
            "gemini": [reply(text)],
            "perplexity": [reply(checker(AGREEING, ["supports", "supports"], 0.8))],
        }
    )
    result = run(registry, SIMPLE)
    assert [(a.provider, a.outcome) for a in result.attempts] == [
        ("local", "ok"), ("gemini", "invalid"), ("perplexity", "ok")
    ]  # fmt: skip
    assert why in (result.attempts[1].error or "") and result.attempts[1].error_class == "invalid_answer"
    assert result.cross_check is not None and result.cross_check["provider"] == "perplexity"


def test_cascade_stays_within_the_deadline() -> None:
    registry = fake_registry({"local": [reply(LOCAL_ANSWER + "\nConfidence: 0.4")], "gemini": [reply(AGREEING)]})
    result = run(registry, SIMPLE, deadline_in_s=CFG.min_time_left_s / 2)
    assert result.escalation is not None and result.escalation["decision"] == "not_possible"
    assert [a.role for a in result.attempts] == ["answer"]
