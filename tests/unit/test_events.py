"""The progress event model: events of a real graph stream (fake chat models), their JSON form, nodes unstreamed."""

from __future__ import annotations

import json
import uuid
from typing import Any, cast

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from graphs.analysis import build_analysis_graph
from graphs.context import Context
from graphs.events import (
    AttemptEnded,
    AttemptStarted,
    Classified,
    Completed,
    ConfidenceScored,
    CostSoFar,
    CrossChecked,
    Event,
    NodeFinished,
    Routed,
    UnknownEvent,
    Validated,
    event_schema,
    events_of,
    parse_event,
)
from graphs.state import AnalysisInput
from nodes.policy.query_classifier import QueryNeeds
from providers.errors import ServerError
from providers.testing import fake_registry, reply
from providers.testing.checker import verdict_text

COMPLEX = QueryNeeds.confident(0.04, "complex", "scenario")
ANSWER = "Week one: map every booth in Jubilee Hills. Week two: recruit volunteers.\nConfidence: 0.8"


def stream_events(registry: Any, **state: Any) -> list[Event]:
    graph = build_analysis_graph().compile(checkpointer=InMemorySaver())
    ctx = Context(registry=registry, classifier=lambda _q: COMPLEX)
    graph_input = cast(AnalysisInput, {"query": "Design a plan", **state})
    config: Any = {"configurable": {"thread_id": str(uuid.uuid4())}}
    return list(events_of(graph.stream(graph_input, config, context=ctx, stream_mode=["custom", "updates"])))


def test_a_failover_run_reports_every_stage_in_order() -> None:
    # Gemini fails and Perplexity answers (a cold process has no retry budget yet, and the local model is no
    # planned fallback for a complex analysis while a cloud tier is healthy).
    registry = fake_registry(
        {
            "gemini": [ServerError("500 INTERNAL")],
            "perplexity": [reply(ANSWER, citations=["https://ghmc.gov.in/x"])],
            "local": [],
        }
    )
    events = stream_events(registry, depth="quick")
    kinds = [e.event for e in events]
    assert kinds[:4] == ["classified", "node", "routed", "node"]
    assert isinstance(events[0], Classified) and events[0].complexity == "complex"
    routed = events[2]
    assert isinstance(routed, Routed) and routed.chain[0].provider == "gemini" and routed.chain[0].reason
    ends = [e for e in events if isinstance(e, AttemptEnded)]
    assert ends[0].provider == "gemini" and ends[0].outcome == "error" and ends[0].error_class == "server_error"
    assert all(any(isinstance(s, AttemptStarted) for s in events[: events.index(end)]) for end in ends)
    assert [e for e in events if isinstance(e, CostSoFar)][-1].attempts == len(ends)
    verdicts = [e for e in events if isinstance(e, Validated)]
    assert verdicts and verdicts[-1].verdict == "accepted" and verdicts[-1].escalation == "off"
    confidence, done = events[-3], events[-2]
    assert isinstance(confidence, ConfidenceScored) and confidence.method and 0 <= confidence.value <= 1
    assert isinstance(done, Completed) and done.providers and done.error is None
    assert events[-1] == NodeFinished(node="score")


def test_a_cross_check_reports_its_agreement() -> None:
    registry = fake_registry(
        {
            "gemini": [reply(ANSWER)],
            "perplexity": [reply(verdict_text(ANSWER, ["supports", "supports"]), citations=["https://ghmc.gov.in/x"])],
            "local": [],
        }
    )
    events = stream_events(registry, depth="deep")
    checked = [e for e in events if isinstance(e, CrossChecked)]
    assert len(checked) == 1 and checked[0].provider == "perplexity" and 0 <= checked[0].agreement <= 1
    done = next(e for e in events if isinstance(e, Completed))
    assert done.providers == ["gemini", "perplexity"]
    confidence = next(e for e in events if isinstance(e, ConfidenceScored))
    assert "cross_validation" in [f.name for f in confidence.factors]


def test_every_event_round_trips_through_json() -> None:
    registry = fake_registry({"gemini": [reply(ANSWER)], "local": []})
    events = stream_events(registry, depth="quick")
    for event in events:
        assert parse_event(json.dumps(event.wire())) == event
        assert parse_event(event.wire()) == event
    schema = json.dumps(event_schema())
    assert "attempt_start" in schema and "confidence" in schema


def test_a_foreign_chunk_is_refused_with_a_clear_error() -> None:
    with pytest.raises(UnknownEvent):
        parse_event({"event": "no_such_event"})
    with pytest.raises(UnknownEvent):
        parse_event({"event": "attempt_start"})  # no provider


def test_nodes_still_work_when_nobody_streams() -> None:
    graph = build_analysis_graph().compile()
    ctx = Context(registry=fake_registry({"gemini": [reply(ANSWER)], "local": []}), classifier=lambda _q: COMPLEX)
    out = graph.invoke(cast(AnalysisInput, {"query": "Design a plan", "depth": "quick"}), context=ctx)
    assert out["result"]["provider"] == "gemini"
