"""Playbooks and scenarios through the real HTTP stack: validated structured documents, failover on schema
violations, grounding in fresh facts where the type needs them, history that persists, bad input as 4xx JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conversation_app import ChatApp, serve_chat
from langchain_core.messages import BaseMessage

from graphs.playbook_service import Playbooks
from graphs.stores.records import SqliteRecords
from providers.testing import fake_registry, reply
from providers.testing.documents import FACTS, FACTS_SOURCE, PLAYBOOK, SCENARIO


class Writer:
    """A provider that answers writer prompts with a script of texts and research prompts with FACTS."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.prompts: list[str] = []

    def __call__(self, messages: list[BaseMessage]) -> Any:
        text = "\n".join(m.text for m in messages)
        self.prompts.append(text)
        if "JSON Schema" not in text:
            return reply(FACTS, citations=[FACTS_SOURCE])
        return reply(self.texts.pop(0) if len(self.texts) > 1 else self.texts[0])


@pytest.fixture()
def writers() -> dict[str, Writer]:
    # Gemini breaks the schema twice (a missing field, then prose); Perplexity answers valid JSON.
    broken = json.dumps({k: v for k, v in PLAYBOOK.items() if k != "key_messages"})
    return {
        "gemini": Writer([broken, "Here is your playbook: be positive!"]),
        "perplexity": Writer([json.dumps(PLAYBOOK)]),
    }


@pytest.fixture()
def app(tmp_path: Path, writers: dict[str, Writer], monkeypatch: pytest.MonkeyPatch) -> Iterator[ChatApp]:
    for var in ("STRATEGIST_API_TOKEN", "STRATEGIST_ENABLED", "STRATEGIST_ADMIN_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    yield from serve_chat(fake_registry({name: [w] for name, w in writers.items()}), tmp_path)


def test_a_schema_violation_fails_over_to_the_next_writer(app: ChatApp, writers: dict[str, Writer]) -> None:
    response = app.http.post(
        "/playbook/generate",
        json={"playbook_type": "community_engagement", "ward": "Malakpet", "language": "te"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["playbook_id"].startswith("pb_") and body["playbook_type"] == "community_engagement"
    assert (body["ward"], body["language"], body["provider"]) == ("Malakpet", "te", "perplexity")
    for key in ("title", "objectives", "key_messages", "talking_points", "channels", "timeline"):
        assert body[key] == PLAYBOOK[key]
    assert body["confidence_score"] == 0.8 and body["generated_at"].endswith("+00:00")
    gemini = [p for p in writers["gemini"].prompts if "JSON Schema" in p]
    assert len(gemini) == 2  # asked once more with the validation error, then the next provider
    assert "key_messages" in gemini[1] and "previous answer was invalid" in gemini[1]
    assert "Telugu" in gemini[0]
    # Not a crisis or opposition playbook: no research call.
    assert all("JSON Schema" in p for w in writers.values() for p in w.prompts)


def test_crisis_and_opposition_playbooks_are_grounded_in_fresh_facts(app: ChatApp, writers: dict[str, Writer]) -> None:
    writers["gemini"].texts = [json.dumps(PLAYBOOK)]
    crisis = app.http.post(
        "/playbook/generate",
        json={"playbook_type": "crisis_response", "ward": "Malakpet", "context": {"situation": "water protest"}},
    )
    assert crisis.status_code == 200, crisis.text
    assert crisis.json()["sources"] == [{"url": "https://www.thehindu.com/news/malakpet-water", "title": ""}]
    written = [p for w in writers.values() for p in w.prompts if "JSON Schema" in p]
    assert "protested water shortages" in written[-1] and "thehindu.com" in written[-1]

    counter = app.http.post(
        "/playbook/opposition-response",
        json={"opposition_message": "The MLA never fixed a single water pipe in five years.", "ward": "Malakpet"},
    )
    assert counter.status_code == 200, counter.text
    body = counter.json()
    assert body["playbook_type"] == "opposition_counter" and body["opposition_message"].startswith("The MLA")
    assert body["sources"]

    custom = app.http.post("/playbook/customize", json={"base_playbook": body, "user_preferences": {"tone": "warmer"}})
    assert custom.status_code == 200 and custom.json()["customized_from"] == body["playbook_id"]


def test_scenarios_are_stored_and_their_history_outlives_the_service(
    app: ChatApp, writers: dict[str, Writer], tmp_path: Path
) -> None:
    writers["gemini"].texts = [json.dumps(SCENARIO)]
    ids = []
    for ward in ("Malakpet", "Amberpet"):
        response = app.http.post(
            "/scenario/simulate",
            json={"scenario_query": "What if the metro extension is announced next month?", "ward": ward},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["scenario_type"], body["timeframe"]) == ("electoral", "3_months")
        assert body["confidence_intervals"] == {"low": 0.4, "high": 0.7}
        assert body["visualization_data"] == {"labels": ["turnout"], "baseline": [0.52], "projected": [0.56]}
        ids.append(body["scenario_id"])
    history = app.http.get("/scenarios/history").json()
    assert history["total"] == 2 and history["limit"] == 10 and history["ward_filter"] is None
    assert {s["scenario_id"] for s in history["scenarios"]} == set(ids)
    only = app.http.get("/scenarios/history", params={"ward": "Amberpet", "limit": 5}).json()
    assert [s["scenario_id"] for s in only["scenarios"]] == [ids[1]]
    # A new service over the same store (a restarted process) sees the same history.
    reopened = Playbooks(fake_registry({}), None, SqliteRecords(tmp_path / "records.sqlite"))
    assert {s["scenario_id"] for s in reopened.history(None, 10)} == set(ids)


def test_no_valid_document_is_a_500_with_the_contract_message(app: ChatApp, writers: dict[str, Writer]) -> None:
    writers["perplexity"].texts = ["not json either"]
    response = app.http.post("/playbook/generate", json={"playbook_type": "media_relations", "ward": "Malakpet"})
    assert response.status_code == 500 and response.json()["error"] == "Playbook generation failed"


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/playbook/generate", {"ward": "Malakpet"}, "playbook_type and ward are required"),
        (
            "/playbook/generate",
            {"playbook_type": "crisis_response", "ward": " "},
            "playbook_type and ward are required",
        ),
        (
            "/playbook/generate",
            {"playbook_type": "memes", "ward": "Malakpet"},
            "Invalid playbook_type. Must be one of:",
        ),
        ("/playbook/opposition-response", {"ward": "Malakpet"}, "opposition_message and ward are required"),
        ("/playbook/opposition-response", {"opposition_message": "short", "ward": "X"}, "at least 10 characters"),
        ("/playbook/customize", {}, "base_playbook is required"),
        ("/scenario/simulate", {"ward": "Malakpet"}, "scenario_query and ward are required"),
        ("/scenario/simulate", {"scenario_query": "too short", "ward": "X"}, "at least 10 characters"),
        (
            "/scenario/simulate",
            {"scenario_query": "What if turnout drops?", "ward": "X", "scenario_type": "war"},
            "Invalid scenario_type",
        ),
        (
            "/scenario/simulate",
            {"scenario_query": "What if turnout drops?", "ward": "X", "timeframe": "2_days"},
            "Invalid timeframe",
        ),
        ("/playbook/generate", {"playbook_type": 3, "ward": "X"}, "playbook_type"),
        ("/playbook/customize", {"base_playbook": {"playbook_type": "memes"}}, "Invalid playbook_type"),
        ("/playbook/customize", {"base_playbook": {"playbook_type": ["crisis_response"]}}, "Invalid playbook_type"),
    ],
)
def test_bad_input_is_a_400_json_error(
    app: ChatApp, writers: dict[str, Writer], path: str, body: Any, error: str
) -> None:
    response = app.http.post(path, json=body)
    assert response.status_code == 400
    assert error in response.json()["error"]
    assert all(not w.prompts for w in writers.values())


def test_a_customised_playbook_has_a_new_playbooks_fields_whatever_the_client_sent(
    app: ChatApp, writers: dict[str, Writer]
) -> None:
    # The base playbook is the client's JSON: its ward, language and id were answered back as they came (a ward
    # of spaces, language "xx", an id that was an object), outside the documented response.
    base = {"ward": "   ", "language": "xx", "playbook_id": {"not": "an id"}, "title": "Old"}
    response = app.http.post("/playbook/customize", json={"base_playbook": base})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["ward"], body["language"], body["playbook_type"]) == ("Unknown", "en", "campaign_messaging")
    assert body["customized_from"] is None
    long_ward = {"ward": "  " + "W" * 100, "language": "te", "playbook_type": "media_relations", "playbook_id": "pb_1"}
    body = app.http.post("/playbook/customize", json={"base_playbook": long_ward}).json()
    assert (body["ward"], body["language"], body["playbook_type"]) == ("W" * 64, "te", "media_relations")
    assert body["customized_from"] == "pb_1"
