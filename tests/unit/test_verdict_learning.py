"""Cross-check verdicts teach routing as weaker evidence than a person's feedback, once per analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.runtime import Runtime

from graphs.context import Context
from graphs.errors import FeedbackError
from graphs.request import AnalysisRequest
from graphs.service import Orchestrator
from graphs.state import AnalysisState, CrossCheckUpdate
from graphs.stores.feedback import SqliteFeedback, import_lines
from nodes.classify import classification_of
from nodes.cross_check import cross_check
from nodes.policy.calibration import VERDICT_NOTE, Outcome
from nodes.policy.learned_adequacy import (
    MIN_EVIDENCE,
    PRIOR_STRENGTH,
    VERDICT_WEIGHT,
    Learned,
    learned_from,
    verdict_outcome,
)
from nodes.policy.local_adequacy import Counts, LocalAdequacy
from nodes.policy.query_classifier import TASK_LABELS, QueryNeeds
from nodes.policy.track_record import Record
from nodes.route import plan
from providers.config import Tier
from providers.testing import fake_registry, reply
from providers.testing.checker import verdict_text

SUMMARY = "Summarise in one line: the ward office will stay open on Saturday for ration card corrections."
ANSWER = "The office is open on Saturday for ration card corrections."
SUPPORTS = {"agreement": 0.9, "verdicts": [{"verdict": "supports"}]}
CONTRADICTS = {"agreement": 0.1, "verdicts": [{"verdict": "contradicts"}]}
POOR_LOCAL = LocalAdequacy(model="poor", by_task={t: Counts(10, 3) for t in TASK_LABELS})


def verdict(i: int, check: dict[str, Any], provider: str, answered_by: Tier, checked_by: Tier) -> Outcome:
    outcome = verdict_outcome(
        f"t{i}", float(i), provider, "summary", check, answered_by=answered_by, checked_by=checked_by
    )
    assert outcome is not None and (outcome.thread_id, outcome.provider, outcome.note) == (
        f"t{i}#cross-check",
        provider,
        "cross-check verdict",
    )
    return outcome


def test_a_verdict_counts_less_than_feedback_and_less_again_from_a_lower_tier_checker() -> None:
    person = Outcome("p", 0.0, "gemini", "summary", 0.5, correct=False)
    by_peer = verdict(1, CONTRADICTS, "gemini", "premium", "premium")
    by_lower = verdict(2, CONTRADICTS, "gemini", "premium", "realtime")
    by_lowest = verdict(3, CONTRADICTS, "gemini", "premium", "local")
    by_higher = verdict(4, CONTRADICTS, "local", "local", "premium")
    wrong = {
        name: Learned.from_outcomes([o]).records[(o.provider, "summary")].wrong
        for name, o in [("person", person), ("peer", by_peer), ("lower", by_lower), ("lowest", by_lowest)]
    }
    assert wrong == {"person": 1.0, "peer": VERDICT_WEIGHT, "lower": VERDICT_WEIGHT / 2, "lowest": VERDICT_WEIGHT / 4}
    # A checker above the answerer's tier counts as a peer: a verdict never outweighs a person's judgment.
    assert Learned.from_outcomes([by_higher]).records[("local", "summary")].wrong == VERDICT_WEIGHT
    # A verdict recorded before verdicts carried a weight reads at the default verdict weight, not as a judgment.
    legacy = Outcome("t9#cross-check", 9.0, "gemini", "summary", 0.5, correct=True, note=VERDICT_NOTE)
    assert Learned.from_outcomes([legacy]).records[("gemini", "summary")].right == VERDICT_WEIGHT


def test_the_route_changes_only_after_enough_weighted_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nodes.route.default_local_adequacy", lambda: POOR_LOCAL)
    scripts: dict[str, list[Any]] = {"gemini": [], "perplexity": [], "local": []}
    reg = fake_registry(scripts)
    c = classification_of(QueryNeeds.confident(0.02, "simple", "summary"), 0.5)

    def primary(n: int, checked_by: Tier = "premium") -> str:
        outcomes = [verdict(i, SUPPORTS, "local", "local", checked_by) for i in range(n)]
        return plan(reg, c, SUMMARY, {}, learned=Learned.from_outcomes(outcomes))["chain"][0]["provider"]

    # The local model measured poor at summaries: premium serves them, and as many verdicts as would be enough
    # feedback do not move that; twice as many (each half an outcome) do.
    needed = round(MIN_EVIDENCE / VERDICT_WEIGHT)
    assert primary(0) == "gemini"
    assert primary(MIN_EVIDENCE) == "gemini"
    assert primary(needed - 1) == "gemini"
    assert primary(needed) == "local"
    assert primary(needed, checked_by="realtime") == "local"
    # Contradicting verdicts, however many, only confirm the measurement.
    contradicted = [verdict(i, CONTRADICTS, "local", "local", "premium") for i in range(3 * needed)]
    assert plan(reg, c, SUMMARY, {}, learned=Learned.from_outcomes(contradicted))["chain"][0]["provider"] == "gemini"


@pytest.fixture()
def poor_local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STRATEGIST_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("STRATEGIST_RESPONSE_CACHE_TTL_S", raising=False)
    monkeypatch.setattr("nodes.route.default_local_adequacy", lambda: POOR_LOCAL)


def disagreeing_scripts() -> dict[str, list[Any]]:
    """Gemini answers; Perplexity's check contradicts the answer's claim with an uncited answer of its own."""
    check = reply(verdict_text("The office is closed on Saturday.", ["contradicts"], 0.9))
    return {"gemini": [reply(ANSWER)], "perplexity": [check], "local": [reply(ANSWER)]}


def agreeing_scripts(checks: int) -> dict[str, list[Any]]:
    """Gemini answers; Perplexity's check (``checks`` replies) supports the answer's claim."""
    check = reply(verdict_text(ANSWER, ["supports"], 0.9))
    return {"gemini": [reply(ANSWER)], "perplexity": [check] * checks, "local": [reply(ANSWER)]}


@pytest.mark.usefixtures("poor_local")
def test_an_analysis_whose_cross_check_disagrees_moves_the_estimate(tmp_path: Path) -> None:
    feedback = SqliteFeedback(tmp_path / "feedback.sqlite")
    # Enough people's judgments of Gemini's summaries that routing has an estimate to move.
    for i in range(MIN_EVIDENCE):
        feedback.record(Outcome(f"judged{i}", float(i), "gemini", "summary", 0.5, correct=True))
    prior = 0.9  # what the estimate is asked against; the router's own prior for the pair does not matter here
    before = learned_from(feedback).adequacy("gemini", "summary", prior)
    assert before is not None and (before[1].right, before[1].wrong) == (MIN_EVIDENCE, 0)  # people's judgments only

    orchestrator = Orchestrator(fake_registry(disagreeing_scripts()), InMemorySaver(), feedback=feedback)
    result = orchestrator.analyze(AnalysisRequest(query=SUMMARY, depth="deep"))
    assert result.routing.classification["task"] == "summary" and result.cross_check is not None
    assert result.cross_check["provider"] == "perplexity" and result.cross_check["agreement"] < 0.3
    # Gemini's track record (the judgments above) keeps its answer served despite the disagreement.
    assert result.provider == "gemini"

    after = learned_from(feedback).adequacy("gemini", "summary", prior)
    assert after is not None and after[0] < before[0]  # the disagreement moved the estimate down
    # One verdict against Gemini, from a checker a tier below it: a quarter of a person's judgment.
    weight = VERDICT_WEIGHT / 2
    assert after[1].wrong == weight and after[1].right == MIN_EVIDENCE
    alpha, beta = MIN_EVIDENCE + PRIOR_STRENGTH * prior, weight + PRIOR_STRENGTH * (1 - prior)
    assert after[0] == pytest.approx(alpha / (alpha + beta))
    assert after[0] < before[0]
    feedback.close()


@pytest.mark.usefixtures("poor_local")
def test_a_verdict_on_an_answer_the_checkers_replaced_counts_against_the_first_provider(tmp_path: Path) -> None:
    feedback = SqliteFeedback(tmp_path / "feedback.sqlite")
    orchestrator = Orchestrator(fake_registry(disagreeing_scripts()), InMemorySaver(), feedback=feedback)
    result = orchestrator.analyze(AnalysisRequest(query=SUMMARY, depth="deep"))
    # Without a track record, the checker's answer is the better supported one and is served instead.
    assert result.provider == "perplexity" and result.escalation is not None
    assert result.escalation.get("superseded", {}).get("provider") == "gemini"
    assert learned_from(feedback).records[("gemini", "summary")] == Record(0, VERDICT_WEIGHT / 2)
    # A person judging the served answer (Perplexity's) does not take back the verdict on Gemini's.
    orchestrator.record_feedback(result.thread_id, True)
    learned = learned_from(feedback)
    assert learned.records[("gemini", "summary")] == Record(0, VERDICT_WEIGHT / 2)
    assert learned.records[("perplexity", "summary")] == Record(1, 0)
    feedback.close()


class Crash(Exception):
    """The process dies after the checker answered, before the cross-check's step was saved."""


@pytest.mark.usefixtures("poor_local")
def test_a_resumed_analysis_counts_its_verdict_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[str] = []

    def crash_once(state: AnalysisState, runtime: Runtime[Context]) -> CrossCheckUpdate:
        update = cross_check(state, runtime)
        runs.append(state.get("query", ""))
        if len(runs) == 1:
            raise Crash
        return update

    monkeypatch.setattr("graphs.analysis.cross_check", crash_once)
    feedback = SqliteFeedback(tmp_path / "feedback.sqlite")
    # Two check replies: the resume runs the cross-check node again, and its checker answers again.
    orchestrator = Orchestrator(fake_registry(agreeing_scripts(checks=2)), InMemorySaver(), feedback=feedback)
    thread_id = "resumed"
    with pytest.raises(Crash):
        orchestrator.analyze(AnalysisRequest(query=SUMMARY, depth="deep"), thread_id=thread_id)
    assert orchestrator.status(thread_id) == "interrupted"
    assert feedback.outcomes() == []  # nothing is learned from an analysis that has not finished

    result = orchestrator.resume(thread_id)
    assert len(runs) == 2 and result.cross_check is not None  # the node ran twice ...
    orchestrator.resume(thread_id)  # ... and the finished analysis is finished again twice: records replace
    orchestrator.resume(thread_id)

    verdicts = [o for o in feedback.outcomes() if o.note == VERDICT_NOTE]
    assert [(o.provider, o.correct) for o in verdicts] == [("gemini", True)]
    assert learned_from(feedback).records[("gemini", "summary")] == Record(VERDICT_WEIGHT / 2, 0)
    feedback.close()


def test_an_imported_weight_must_be_a_fraction_of_an_outcome(tmp_path: Path) -> None:
    feedback = SqliteFeedback(tmp_path / "feedback.sqlite")
    line = '{"thread_id": "t", "at": 1.0, "provider": "local", "task": "summary", "raw": 0.5, "correct": true'
    assert import_lines(feedback, [line + ', "weight": 0.25}']) == (1, 0)
    with pytest.raises(FeedbackError, match="weight"):
        import_lines(feedback, [line + ', "weight": 2}'])
    feedback.close()
