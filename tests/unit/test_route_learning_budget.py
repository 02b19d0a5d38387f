"""Routing learns from cross-check verdicts as well as feedback; a budget reservation holds what the plan can spend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from graphs.request import AnalysisRequest
from graphs.service import Orchestrator
from graphs.state import Classification, RouteUpdate
from graphs.stores.feedback import SqliteFeedback
from nodes.classify import classification_of
from nodes.policy.calibration import VERDICT_NOTE, Outcome, learn
from nodes.policy.learned_adequacy import VERDICT_WEIGHT, Learned, learned_from, verdict_of, verdict_outcome
from nodes.policy.local_adequacy import Counts, LocalAdequacy
from nodes.policy.query_classifier import TASK_LABELS, QueryNeeds
from nodes.route import plan, trimmed, within_budget
from providers.config import load_settings
from providers.testing import fake_registry, reply
from providers.testing.checker import verdict_text

SCRIPTS: dict[str, list[Any]] = {
    "gemini": [reply("Premium answer.")],
    "perplexity": [reply("Cited.", citations=["https://epaper.thehindu.com/rally"])],
    "local": [reply("Local answer.")],
}
SUMMARY = "Summarise in one line: the ward office will stay open on Saturday for ration card corrections."


def classify(needs: QueryNeeds) -> Classification:
    return classification_of(needs, 0.5)


def verdicts(n: int, right: bool, provider: str = "local", task: str = "summary") -> list[Outcome]:
    check = {"agreement": 0.9 if right else 0.1, "verdicts": [{"verdict": "supports" if right else "contradicts"}]}
    out = [
        verdict_outcome(f"t{i}", float(i), provider, task, check, answered_by="local", checked_by="premium")
        for i in range(n)
    ]
    return [o for o in out if o is not None]


def test_a_cross_check_verdict_is_right_wrong_or_nothing() -> None:
    assert verdict_of([{"verdict": "supports"}, {"verdict": "not_addressed"}], 0.5) is True
    assert verdict_of([{"verdict": "supports"}, {"verdict": "contradicts"}], 0.9) is False
    # Mostly unaddressed claims teach nothing; without verdicts the claim agreement decides, with a middle band.
    assert verdict_of([{"verdict": "supports"}, {"verdict": "not_addressed"}, {"verdict": "not_addressed"}], 1) is None
    assert (verdict_of([], 0.85), verdict_of([], 0.5), verdict_of([], 0.1)) == (True, None, False)
    outcome = verdict_outcome(
        "th", 1.0, "local", "summary", {"agreement": 0.2, "verdicts": []}, answered_by="local", checked_by="premium"
    )
    assert outcome is not None and (outcome.correct, outcome.note) == (False, VERDICT_NOTE)
    assert outcome.thread_id != "th"  # the thread's own key stays free for a person's feedback


def test_feedback_overrides_the_verdict_on_the_same_analysis_and_confidence_ignores_verdicts() -> None:
    wrong = verdicts(1, right=False)[0]
    person = Outcome("t0", 2.0, "local", "summary", 0.5, correct=True)
    assert Learned.from_outcomes([wrong]).records[("local", "summary")].wrong == VERDICT_WEIGHT
    record = Learned.from_outcomes([wrong, person]).records[("local", "summary")]
    assert (record.right, record.wrong) == (1, 0)
    # The confidence model scores cross-validation itself: its track record counts only people's feedback.
    assert learn([wrong, person], load_settings({}).confidence).n == 1


def test_a_finished_cross_check_is_recorded_and_the_router_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATEGIST_DATA_DIR", str(tmp_path))
    poor = LocalAdequacy(model="poor", by_task={t: Counts(10, 3) for t in TASK_LABELS})
    monkeypatch.setattr("nodes.route.default_local_adequacy", lambda: poor)
    answer = "The office is open on Saturday for ration card corrections."
    check = reply(verdict_text(answer, ["supports"], 0.9))
    scripts: dict[str, list[Any]] = {"gemini": [reply(answer)], "perplexity": [check], "local": [reply(answer)]}
    feedback = SqliteFeedback(tmp_path / "feedback.sqlite")
    orchestrator = Orchestrator(fake_registry(scripts), InMemorySaver(), feedback=feedback)
    result = orchestrator.analyze(AnalysisRequest(query=SUMMARY, depth="deep"))
    assert result.provider == "gemini" and result.cross_check is not None
    recorded = feedback.outcomes()
    assert [(o.provider, o.correct, o.note) for o in recorded] == [("gemini", True, VERDICT_NOTE)]
    # Perplexity (realtime) checked Gemini (premium): a verdict from a tier below counts half a verdict.
    task = result.routing.classification["task"]
    assert learned_from(feedback).records[("gemini", task)].right == VERDICT_WEIGHT / 2
    # Recording it again (a resume of the finished analysis) replaces it: one verdict per analysis.
    orchestrator.resume(result.thread_id)
    assert len(feedback.outcomes()) == 1
    feedback.close()


def update_of(steps: list[float], allowance: float) -> RouteUpdate:
    chain = [{"provider": f"p{i}", "tier": "premium", "model": "m", "reason": ""} for i in range(len(steps))]
    return {
        "chain": chain,  # type: ignore[typeddict-item]
        "reasons": [],
        "estimated_cost_usd": steps[0],
        "step_costs_usd": steps,
        "spend_ceiling_usd": sum(steps) + allowance,
        "research_step": None,
    }


class FakeReserve:
    """A cap with ``left`` USD: grants what fits, remembers every amount asked for."""

    def __init__(self, left: float) -> None:
        self.left = left
        self.asked: list[float] = []
        self.why = ""

    def __call__(self, amount: float) -> tuple[dict[str, object] | None, float]:
        self.asked.append(amount)
        if amount <= self.left:
            self.left -= amount
            return {"id": "r", "day": "d", "caller": "c", "micros": round(amount * 1e6)}, 0.0
        self.why = "over budget: test cap"
        return None, self.left


def test_the_reservation_is_the_plans_ceiling_and_fallbacks_are_cut_to_fit() -> None:
    full = update_of([0.01, 0.005, 0.002], allowance=0.005)
    reserve = FakeReserve(left=1.0)
    granted = within_budget(lambda _c: full, {}, reserve)  # type: ignore[arg-type]
    assert reserve.asked == [pytest.approx(0.022)] and "budget_reservation" in granted
    # $0.0205 left: the last fallback does not fit, the rest does.
    reserve = FakeReserve(left=0.0205)
    cut = within_budget(lambda _c: full, {}, reserve)  # type: ignore[arg-type]
    assert [s["provider"] for s in cut["chain"]] == ["p0", "p1"]
    assert reserve.asked[-1] == pytest.approx(0.02) and "budget_reservation" in cut
    assert any("fallback(s) left out" in r for r in cut["reasons"])
    # Not even the primary and a second opinion fit: nothing is planned, and the reasons say why.
    assert trimmed(full, 0.014) is None
    refused = within_budget(lambda _c: full, {}, FakeReserve(left=0.014))  # type: ignore[arg-type]
    assert refused["chain"] == [] and refused["reasons"][-1] == "over budget: test cap"


def test_a_plan_with_fallbacks_and_a_check_reserves_more_than_its_primary() -> None:
    reg = fake_registry(SCRIPTS)
    c = classify(QueryNeeds.confident(0.02, "complex", "scenario"))
    checked = plan(reg, c, "Plan our week", {})
    unchecked = plan(reg, c, "Plan our week", {}, checking=False)
    assert checked["estimated_cost_usd"] == checked["step_costs_usd"][0]
    assert len(checked["chain"]) > 1
    assert unchecked["spend_ceiling_usd"] == pytest.approx(sum(unchecked["step_costs_usd"]), abs=1e-6)
    assert checked["spend_ceiling_usd"] > unchecked["spend_ceiling_usd"] > checked["estimated_cost_usd"]
