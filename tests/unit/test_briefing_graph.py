"""The ward-briefing graph with fake chat models: plan by depth and context, parallel research, credibility,
structured writing (invalid answers retried with the error, then the next provider), cross-check, sanitising,
scoring, the degraded path, and the ward's own data."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, cast

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.checkpoint.memory import InMemorySaver

from graphs.briefing import build_briefing_graph
from graphs.briefing_result import BriefingResult
from graphs.briefing_state import BriefingInput
from graphs.context import Context
from nodes.policy.credibility import item_confidence, score_sources
from nodes.policy.redaction import FILTER_PREFIX, redact, sanitise_value
from nodes.policy.research import plan_questions
from providers.config import load_settings
from providers.errors import ServerError
from providers.testing import fake_registry, reply
from providers.testing.briefings import (
    RESEARCH_SOURCES,
    briefing_registry,
    draft,
    draft_json,
    research_reply,
    verdicts_json,
)
from providers.ward_data import JsonlWardData, SqlWardData, WardDataSource


def run(
    registry: Any, ward: str = "Jubilee Hills", ward_data: WardDataSource | None = None, **inputs: Any
) -> BriefingResult:
    graph = build_briefing_graph().compile(checkpointer=InMemorySaver())
    ctx = Context(registry=registry, ward_data=ward_data)
    graph_input = cast(BriefingInput, {"ward": ward, **inputs})
    out = graph.invoke(graph_input, {"configurable": {"thread_id": str(uuid.uuid4())}}, context=ctx)
    return BriefingResult.model_validate(out["result"])


class Recorder:
    """A scripted step that records the prompts it was sent and answers in turn."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []

    def __call__(self, messages: list[BaseMessage]) -> AIMessage:
        self.prompts.append("\n".join(str(m.content) for m in messages))
        return reply(self.answers[min(len(self.prompts) - 1, len(self.answers) - 1)])


def roles(result: BriefingResult) -> Counter[tuple[str, str, str]]:
    return Counter((a.provider, a.role, a.outcome) for a in result.attempts)


def test_a_standard_briefing_has_the_contract_shape_with_measured_confidence() -> None:
    result = run(briefing_registry())
    briefing = result.briefing
    assert briefing is not None and result.error is None
    assert briefing.ward == "Jubilee Hills" and briefing.fallback_mode is False
    assert briefing.generated_at.endswith("+00:00")
    # Four research questions, each its own gather call; one writer call; no cross-check below deep.
    assert roles(result) == Counter({("perplexity", "gather", "ok"): 4, ("gemini", "write", "ok"): 1})
    assert len(briefing.analysis.questions) == 4
    # Sources merged across the four branches (each cited the same three): one entry each, corroborated.
    assert sorted(c.url for c in briefing.source_citations) == sorted(RESEARCH_SOURCES)
    by_url = {c.url: c.credibility or 0.0 for c in briefing.source_citations}
    assert by_url[RESEARCH_SOURCES[1]] > by_url[RESEARCH_SOURCES[0]] > by_url[RESEARCH_SOURCES[2]]  # gov > news > x
    # Item 1 rests on sources [1, 2], the others on one each: source_count and confidence follow real sources.
    items = briefing.key_intelligence
    assert [i.source_count for i in items] == [2, 1, 1]
    assert items[0].confidence > items[1].confidence > items[2].confidence
    factors = {f.name for f in result.confidence.factors}
    assert {"model_certainty", "source_quality"} <= factors and "cross_validation" not in factors
    assert briefing.confidence_score == result.confidence.value
    assert briefing.compliance.pii_redacted and briefing.compliance.audit_trail.sanitized_at.endswith("+00:00")
    assert briefing.actions and briefing.actions[0].label == "Door to door on water"
    assert result.cost_usd == pytest.approx(sum(a.cost_usd for a in result.attempts))
    assert result.baseline_cost_usd > result.cost_usd


@pytest.mark.parametrize("depth, questions", [("quick", 2), ("standard", 4), ("deep", 6)])
def test_depth_sets_the_breadth(depth: str, questions: int) -> None:
    registry = briefing_registry(writer=[reply(draft_json()), reply(verdicts_json(3))])
    result = run(registry, depth=depth)
    assert sum(1 for a in result.attempts if a.role == "gather") == questions
    checked = [a for a in result.attempts if a.role == "cross_check"]
    assert bool(checked) is (depth == "deep")


def test_context_changes_the_questions_and_the_stance() -> None:
    plans = {c: [q["text"] for q in plan_questions("Malakpet", "standard", c)] for c in ("defensive", "offensive")}
    assert set(plans["defensive"]).isdisjoint(plans["offensive"])
    writer = Recorder(draft_json())
    run(briefing_registry(writer=[writer]), context="offensive")
    assert "Stance: offensive" in writer.prompts[0] and "opportunities" in writer.prompts[0]


def test_deep_briefing_is_cross_checked_by_another_vendor() -> None:
    checker = Recorder(
        json.dumps(
            {
                "verdicts": [
                    {"item": 0, "verdict": "supported", "note": ""},
                    {"item": 1, "verdict": "contradicted", "note": "no"},
                ]
            }
        )
    )
    registry = fake_registry(
        {
            "perplexity": [
                research_reply(),
                research_reply(),
                research_reply(),
                research_reply(),
                research_reply(),
                research_reply(),
                checker,
            ],
            "gemini": [reply(draft_json())],
        }
    )
    result = run(registry, depth="deep")
    assert result.briefing is not None
    assert result.briefing.analysis.cross_checked_by == "perplexity"
    assert [(a.provider, a.role) for a in result.attempts if a.role == "cross_check"] == [("perplexity", "cross_check")]
    items = result.briefing.key_intelligence
    # Item 3 was not judged: it counts as unsupported; item 2 was contradicted.
    assert items[1].confidence < items[2].confidence < items[0].confidence
    cross = {f.name: f for f in result.confidence.factors}["cross_validation"]
    assert cross.value == pytest.approx(1 / 3, abs=1e-3)


def test_invalid_json_is_retried_once_with_the_error_then_the_next_provider() -> None:
    writer = Recorder("Here is the briefing: not json at all", '{"strategic_overview": "too short"}')
    registry = fake_registry(
        {
            "perplexity": [research_reply(), research_reply(), research_reply(), research_reply(), reply(draft_json())],
            "gemini": [writer],
        }
    )
    result = run(registry)
    writes = [(a.provider, a.outcome, a.error_class) for a in result.attempts if a.role == "write"]
    assert writes == [
        ("gemini", "invalid", "invalid_answer"),
        ("gemini", "invalid", "invalid_answer"),
        ("perplexity", "ok", None),
    ]
    first, second = [a.error or "" for a in result.attempts if a.role == "write"][:2]
    assert "Invalid JSON" in first
    assert "strategic_overview" in second and "key_intelligence" in second  # schema violations named
    # The retry was told what was wrong.
    assert "previous answer was rejected" in writer.prompts[1] and "Invalid JSON" in writer.prompts[1]
    assert result.briefing is not None and result.briefing.fallback_mode is True  # not the premium writer


def test_a_failing_writer_falls_over_to_the_next() -> None:
    registry = briefing_registry(
        writer=[ServerError("503 overloaded")] * 5, research=[research_reply()] * 4 + [reply(draft_json())]
    )
    result = run(registry)
    writes = [(a.provider, a.outcome) for a in result.attempts if a.role == "write"]
    assert writes[-1] == ("perplexity", "ok") and all(o == "error" for p, o in writes[:-1])
    assert result.briefing is not None


def test_no_cloud_tier_still_answers_a_degraded_briefing() -> None:
    # Only the local model: no research, it cannot write JSON, its plain overview is what can be produced.
    registry = fake_registry(
        {
            "local": [reply("no json here")] * 2
            + [reply("Jubilee Hills: the situation is unclear; local issues such as water likely matter most.")]
        }
    )
    result = run(registry)
    briefing = result.briefing
    assert result.error is None  # degraded, but a briefing: not the "nothing could be said" error below
    assert briefing is not None and briefing.fallback_mode is True and briefing.confidence_score <= 0.3
    assert "water" in briefing.strategic_overview
    assert any("Find out" in a.description for a in briefing.recommended_actions)
    assert [a.role for a in result.attempts] == ["write", "write", "write"]


def test_nothing_at_all_is_an_error_not_a_briefing() -> None:
    registry = fake_registry({}, settings=load_settings({"STRATEGIST_DATA_DIR": "/x", "LOCAL_MODEL_PATH": "/no.gguf"}))
    result = run(registry)
    assert result.briefing is None
    assert result.error and "nothing could be said" in result.error and "no API key" in result.error


def test_ward_data_from_sql_and_jsonl_is_merged_and_cited(tmp_path: Path) -> None:
    db = tmp_path / "backend.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE ward_posts (id INTEGER PRIMARY KEY, ward TEXT, title TEXT, content TEXT, "
            "url TEXT, published_at TEXT, extra TEXT)"
        )
        conn.executemany(
            "INSERT INTO ward_posts (ward, title, content, url, published_at) VALUES (?, ?, ?, ?, ?)",
            [
                (
                    "Jubilee Hills",
                    "Corporator meets residents",
                    "Residents raised drainage.",
                    "https://www.deccanchronicle.com/jh-drainage",
                    "2026-11-20",
                ),
                ("jubilee hills", "Booth meeting", "Volunteers met at booth 12.", "", "2026-11-25"),
                ("Malakpet", "Other ward", "Not ours.", "https://example.org/x", "2026-11-25"),
            ],
        )
    jsonl = tmp_path / "posts.jsonl"
    jsonl.write_text(
        json.dumps({"ward": "Jubilee Hills", "title": "Flyer", "text": "A flyer on roads.", "date": "2026-11-01"})
        + "\n{broken\n"
    )
    for source, expected in ((SqlWardData(f"sqlite:///{db}"), 2), (JsonlWardData(jsonl), 1)):
        assert len(source.recent("Jubilee Hills", 10)) == expected
        writer = Recorder(draft_json())
        result = run(briefing_registry(writer=[writer]), ward_data=source)
        assert result.briefing is not None
        origins = [c.url for c in result.briefing.source_citations]
        assert len(origins) == len(RESEARCH_SOURCES) + expected
        assert "The ward's own recent posts and news" in writer.prompts[0]


def test_unreadable_ward_data_leaves_web_research_alone(tmp_path: Path) -> None:
    result = run(briefing_registry(), ward_data=SqlWardData(f"sqlite:///{tmp_path / 'missing.sqlite'}", "nope"))
    assert result.briefing is not None and len(result.briefing.source_citations) == len(RESEARCH_SOURCES)


# --- policies -----------------------------------------------------------------------------------------------


def test_pii_is_redacted_and_violent_or_false_content_is_marked() -> None:
    counts: Counter[str] = Counter()
    text = (
        "Call 98765 43210 or +91-9876543210, mail a.b@example.org, PAN ABCDE1234F, card 4111 1111 1111 1111; "
        "order 1234567890123456 stays."
    )
    assert redact(text, counts) == (
        "Call [PHONE_REDACTED] or [PHONE_REDACTED], mail [EMAIL_REDACTED], PAN [PAN_REDACTED], card "
        "[CARD_REDACTED]; order 1234567890123456 stays."
    )
    assert counts == {"phone": 2, "email": 1, "pan": 1, "card": 1}
    filtered: list[str] = []
    clean = sanitise_value(
        {
            "insights": ["A doctored video of the rally circulates", "Turnout is up"],
            "source_citations": [{"url": "https://t.co/1234567890", "title": "riot footage"}],
        },
        "",
        Counter(),
        filtered,
    )
    assert clean["insights"] == [FILTER_PREFIX + "A doctored video of the rally circulates", "Turnout is up"]
    assert clean["source_citations"][0]["url"] == "https://t.co/1234567890"  # URLs are left alone
    assert filtered == ["insights[0]", "source_citations[0].title"]


def test_credibility_weighs_reputation_recency_and_corroboration() -> None:
    settings = load_settings({"STRATEGIST_DATA_DIR": "/x"})
    today = dt.date(2026, 12, 1)

    def finding(qid: str, url: str, date: str) -> Any:
        source = {"url": url, "title": "", "date": date, "snippet": "", "origin": "web"}
        return {
            "question_id": qid,
            "category": "narrative",
            "text": "t",
            "provider": "p",
            "model": "m",
            "sources": [source],
            "error": None,
        }

    scored = score_sources(
        [
            finding("q1", "https://www.thehindu.com/a/", "2026-11-28"),
            finding("q2", "https://thehindu.com/a", "2026-11-28"),  # the same page: one source, two branches
            finding("q1", "https://www.thehindu.com/old", "2025-01-01"),
            finding("q1", "https://x.com/post", "2026-11-30"),
        ],
        settings.sources,
        today,
    )
    by_url = {s["url"]: s for s in scored}
    fresh, old, social = (
        by_url["https://www.thehindu.com/a/"],
        by_url["https://www.thehindu.com/old"],
        by_url["https://x.com/post"],
    )
    assert fresh["branches"] == 2 and fresh["credibility"] > old["credibility"] > social["credibility"]
    assert [s["id"] for s in scored] == [1, 2, 3]
    assert item_confidence([], None) == 0.2
    assert item_confidence([0.9, 0.9], "supported") > item_confidence([0.9], "supported")
    assert item_confidence([0.9], "contradicted") < item_confidence([0.9], "unsupported") < item_confidence([0.9], None)


def test_the_writer_draft_is_validated_against_the_contract_types() -> None:
    from graphs.briefing_result import BriefingDraft
    from nodes.policy.structured import parse_structured

    bad = draft(key_intelligence=[{"category": "gossip", "content": "x", "impact_level": "huge", "actionable": "y"}])
    parsed, problem = parse_structured("```json\n" + json.dumps(bad) + "\n```", BriefingDraft)
    assert parsed is None and problem is not None
    assert "key_intelligence.0.category" in problem and "key_intelligence.0.impact_level" in problem
    parsed, problem = parse_structured("Sure! " + draft_json() + " Hope it helps.", BriefingDraft)
    assert parsed is not None and problem is None
