"""What each depth does, in calls, cross-checks and deadlines (the README's "Depth" table)."""

from __future__ import annotations

import uuid

import pytest
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver

from graphs.request import parse_request
from graphs.result import AnalysisResult
from graphs.service import Orchestrator
from providers.testing import fake_registry, reply

UNSURE = reply("Booth mapping first, then volunteers for the water-supply wards.\nConfidence: 0.5")
SURE = reply("Booth mapping first, then volunteers for the water-supply wards.\nConfidence: 0.95")
CHECK = reply("Map the booths first; then recruit volunteers where water supply is the issue.\nConfidence: 0.8")
QUERY = "Design a 12-week mobilisation plan for Jubilee Hills"


def analyze(answer: AIMessage, depth: str, **options: object) -> AnalysisResult:
    registry = fake_registry({"gemini": [answer], "perplexity": [CHECK]})
    orchestrator = Orchestrator(registry, InMemorySaver())
    request = parse_request({"query": QUERY, "depth": depth, **options})
    return orchestrator.analyze(request, thread_id=str(uuid.uuid4()))


def roles(result: AnalysisResult) -> list[tuple[str, str]]:
    return [(a.provider, a.role) for a in result.attempts]


def test_quick_makes_one_call_even_when_the_answer_is_unsure() -> None:
    result = analyze(UNSURE, "quick")
    assert roles(result) == [("gemini", "answer")]
    assert result.escalation is not None and result.escalation["decision"] == "off"
    assert "depth=quick" in result.escalation["reason"]


def test_quick_checks_when_the_caller_asks() -> None:
    assert roles(analyze(UNSURE, "quick", cross_check=True)) == [("gemini", "answer"), ("perplexity", "cross_check")]


def test_standard_asks_a_second_vendor_only_below_the_confidence_line() -> None:
    assert roles(analyze(UNSURE, "standard")) == [("gemini", "answer"), ("perplexity", "cross_check")]
    assert roles(analyze(SURE, "standard")) == [("gemini", "answer")]


def test_deep_always_cross_checks() -> None:
    assert roles(analyze(SURE, "deep")) == [("gemini", "answer"), ("perplexity", "cross_check")]


@pytest.mark.parametrize(("depth", "seconds"), [("quick", 30.0), ("standard", 90.0), ("deep", 180.0)])
def test_each_depth_bounds_the_analysis_by_its_own_deadline(depth: str, seconds: float) -> None:
    orchestrator = Orchestrator(fake_registry({"gemini": [SURE]}), InMemorySaver())
    orchestrator.analyze(parse_request({"query": QUERY, "depth": depth}), thread_id="t")
    state = orchestrator.graph.get_state({"configurable": {"thread_id": "t"}}).values
    assert state["deadline_at"] - state["started_at"] == pytest.approx(seconds)
