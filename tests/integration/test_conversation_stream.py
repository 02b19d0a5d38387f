"""Token streaming of /conversation/stream end to end: the real LangChain clients against the fake providers'
streaming endpoints (Gemini ``streamGenerateContent?alt=sse``, Perplexity's Responses API with
``"stream": true``), and the real embedded local model (llama.cpp, token by token)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from providers.config import load_settings
from providers.registry import ProviderRegistry
from providers.testing.servers import FakeGemini, FakePerplexity, Reply, Source

sys.path.insert(0, str(Path(__file__).parent.parent / "unit"))
from conversation_app import ChatApp, serve_chat

PLAN = "Week 1-2: map every booth and name a captain. Week 3-6: door-to-door on water supply.\nConfidence: 0.7"
NEWS = Reply(
    text="The incumbent leads narrowly according to two surveys published this week.\nConfidence: 0.6",
    citations=[Source("https://epaper.thehindu.com/news/cities/Hyderabad/survey", "Survey", "2026-11-25")],
)


def chunks_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "content_chunk"]


@pytest.fixture()
def cloud(tmp_path: Path) -> Iterator[tuple[ChatApp, FakeGemini, FakePerplexity]]:
    with FakeGemini() as gemini, FakePerplexity() as perplexity:
        config = tmp_path / "strategist.toml"
        # One call per reply (no second opinion, no hedge on a loaded machine): the test counts them.
        config.write_text("[confidence]\nescalate_below = 0.0\n\n[resilience.hedge]\nenabled = false\n")
        settings = load_settings(
            {
                "GEMINI_API_KEY": "test-key",
                "GEMINI_BASE_URL": gemini.base_url,
                "PERPLEXITY_API_KEY": "test-key",
                "PERPLEXITY_BASE_URL": perplexity.base_url,
                "STRATEGIST_DATA_DIR": str(tmp_path / "data"),
                "LOCAL_MODEL_PATH": "/nonexistent/model.gguf",
                "STRATEGIST_CONFIG": str(config),
            }
        )
        gemini.behaviour = Reply(text=PLAN)
        perplexity.behaviour = NEWS
        for chat in serve_chat(ProviderRegistry(settings), tmp_path):
            yield chat, gemini, perplexity


def test_tokens_stream_from_the_cloud_providers_streaming_endpoints(
    cloud: tuple[ChatApp, FakeGemini, FakePerplexity],
) -> None:
    chat, gemini, perplexity = cloud
    sid = chat.session("Serilingampally")
    chat.say(sid, "Design a 12-week mobilisation plan for Serilingampally")
    planned = chat.events("/conversation/stream", sessionId=sid)
    chat.say(sid, "Who is leading in Serilingampally right now, according to today's news?")
    fresh = chat.events("/conversation/stream", sessionId=sid)

    [plan_call] = gemini.requests
    assert plan_call.path.endswith(":streamGenerateContent") and plan_call.query.get("alt") == ["sse"]
    [news_call] = perplexity.requests
    assert news_call.path == "/v1/responses" and news_call.body["stream"] is True
    for events, provider in ((planned, "gemini"), (fresh, "perplexity")):
        chunks = chunks_of(events)
        assert len(chunks) >= 2, events
        assert events[-1]["type"] == "analysis_complete" and events[-1]["providers_used"] == [provider]
        assert events[-1]["content"] == chunks[-1]["accumulated_content"].strip()
    # Perplexity's stream sends one delta per word; its sources survive streaming.
    assert len(chunks_of(fresh)) >= 10
    assert fresh[-1]["sources"][0]["url"].startswith("https://epaper.thehindu.com")
    # The second question's prompt carried the first turn.
    sent = str(news_call.body["input"])
    assert "Design a 12-week mobilisation plan" in sent and "map every booth" in sent


def test_tokens_stream_from_the_real_local_model(tmp_path: Path) -> None:
    settings = load_settings({"STRATEGIST_DATA_DIR": str(tmp_path / "data")})  # no keys: only the local tier
    for chat in serve_chat(ProviderRegistry(settings), tmp_path):
        sid = chat.session("Malakpet", chatType="quick")
        chat.say(sid, "Fix the grammar: the voters is angry about water.")
        events = chat.events("/conversation/stream", sessionId=sid)
        chunks = chunks_of(events)
        assert events[-1]["type"] == "analysis_complete", events[-3:]
        assert events[-1]["providers_used"] == ["local"]
        assert len(chunks) >= 3  # token by token, not one block at the end
        assert "".join(c["content"] for c in chunks) == chunks[-1]["accumulated_content"]
        assert events[-1]["content"] == chunks[-1]["accumulated_content"].strip()
