"""`strategist chat | playbook | scenario` against the fake providers (real clients, streamed answers)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import cli
from providers.testing.servers import FakeGemini, Reply

PLAYBOOK = {
    "title": "Booth-level engagement",
    "objectives": ["Meet every booth committee"],
    "key_messages": ["Water by March"],
    "talking_points": ["Twelve tankers added"],
    "channels": ["WhatsApp"],
    "timeline": [{"when": "Week 1", "action": "Booth meetings"}],
    "success_metrics": ["40 meetings"],
    "risks": [],
    "confidence": 0.7,
}
SCENARIO = {
    "key_impact": "Turnout rises among first-time voters.",
    "strategic_recommendations": ["Announce with a date"],
    "impact_breakdown": [{"metric": "turnout", "baseline": 0.52, "projected": 0.56}],
    "risk_factors": ["Seen as a gimmick"],
    "mitigation_strategies": ["Publish the tender timeline"],
    "confidence": 0.6,
    "confidence_low": 0.4,
    "confidence_high": 0.7,
}


@pytest.fixture()
def gemini(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        config = tmp_path / "strategist.toml"
        config.write_text("[confidence]\nescalate_below = 0.0\n\n[resilience.hedge]\nenabled = false\n")
        env = {
            "GEMINI_API_KEY": "test-key",
            "GEMINI_BASE_URL": server.base_url,
            "STRATEGIST_DATA_DIR": str(tmp_path / "data"),
            "STRATEGIST_CONFIG": str(config),
            "LOCAL_MODEL_PATH": "/nonexistent/model.gguf",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        for var in ("REDIS_URL", "PERPLEXITY_API_KEY", "LOCAL_BASE_URL", "ROUTING_MODE"):
            monkeypatch.delenv(var, raising=False)
        yield server


def test_chat_streams_answers_and_the_second_message_sees_the_first(
    gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gemini.behaviour = Reply(text="Map every booth, then go door to door.\nConfidence: 0.7")
    monkeypatch.setattr("sys.stdin", io.StringIO("Design a 12-week plan for Malakpet\nShorten that\n/quit\n"))

    assert cli.main(["chat", "--ward", "Malakpet"]) == 0

    out, err = capsys.readouterr()
    assert out.count("Map every booth, then go door to door.") == 2 and "[gemini; confidence 0.70]" in out
    assert "Confidence: 0.7" not in out
    session = err.split()[1]
    assert all(r.path.endswith(":streamGenerateContent") for r in gemini.requests)
    assert "Design a 12-week plan" in json.dumps(gemini.requests[1].body)
    # The conversation lives in the store: it can be continued.
    monkeypatch.setattr("sys.stdin", io.StringIO("And the risks?\n"))
    assert cli.main(["chat", "--session", session]) == 0
    assert "Shorten that" in json.dumps(gemini.requests[2].body)


def test_playbook_and_scenario_commands(gemini: FakeGemini, capsys: pytest.CaptureFixture[str]) -> None:
    gemini.script([Reply(text=json.dumps(PLAYBOOK))])
    assert cli.main(["playbook", "community_engagement", "Malakpet", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["title"] == "Booth-level engagement" and body["provider"] == "gemini"

    gemini.script([Reply(text=json.dumps(SCENARIO))])
    assert cli.main(["scenario", "Malakpet", "What if the metro extension is announced?"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Turnout rises among first-time voters.") and "confidence 0.60" in out

    gemini.behaviour = Reply(text="no json here")
    assert cli.main(["playbook", "media_relations", "Malakpet"]) == 1
    assert "no provider wrote a valid playbook" in capsys.readouterr().err
    assert cli.main(["playbook", "memes", "Malakpet"]) == 2
    assert cli.main(["scenario", "Malakpet", "short"]) == 2
