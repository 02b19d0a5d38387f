"""End to end: the real graph, the real LangChain clients against the local fake Gemini and Perplexity
servers, the real classifier and the real local model (the embedded SmolLM2), through the CLI and the service."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cli
from graphs.request import parse_request
from graphs.service import Orchestrator
from graphs.stores import open_stores
from providers.config import load_settings
from providers.registry import ProviderRegistry
from providers.testing.checker import verdict_text
from providers.testing.servers import Fail, FakeGemini, FakePerplexity, Hang, Reply, Source

FRESH = "Who is leading in Serilingampally right now?"
COMPLEX = "Design a 12-week mobilisation plan for Jubilee Hills"
SIMPLE = "Translate this leaflet line into Telugu: Vote for clean water and safe roads."
PLAN = "Week 1-2: map every booth and name a captain. Week 3-6: door-to-door on water supply.\nConfidence: 0.7"
CITED = Reply(
    text="The incumbent leads narrowly according to two surveys this week.\nConfidence: 0.6",
    citations=[
        Source("https://epaper.thehindu.com/news/cities/Hyderabad/survey", "Survey", "2026-11-25"),
        Source("https://news.telanganatoday.com/serilingampally-race", "Race tightens", "2026-11-24"),
    ],
)


def write_config(tmp_path: Path, gemini_timeout_s: float = 60.0) -> None:
    """Write the tests' configuration: no step may depend on the machine's speed.

    The confidence-gated cascade is off, because these tests count provider calls (tests/test_confidence.py
    covers the cascade); hedging is off and every timeout generous, so a local model slowed down by a loaded
    machine is waited for rather than hedged or failed over (issue 10: 15 s under load sent the simple query to
    Gemini). Only the hang test shortens Gemini's timeout: a server that never answers fails the same way at any
    timeout.
    """
    (tmp_path / "strategist.toml").write_text(
        f"[providers.gemini]\ntimeout_s = {gemini_timeout_s}\n\n"
        "[providers.local]\ntimeout_s = 900.0\n\n"
        "[confidence]\nescalate_below = 0.0\n\n"
        "[resilience.hedge]\nenabled = false\n\n"
        "[resilience.deadlines]\ncold_s = 900.0\nmin_s = 900.0\n"
    )


@pytest.fixture()
def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeGemini, FakePerplexity]]:
    with FakeGemini() as gemini, FakePerplexity() as perplexity:
        write_config(tmp_path)
        env = {
            "GEMINI_API_KEY": "test-key",
            "GEMINI_BASE_URL": gemini.base_url,
            "PERPLEXITY_API_KEY": "test-key",
            "PERPLEXITY_BASE_URL": perplexity.base_url,
            "STRATEGIST_DATA_DIR": str(tmp_path / "data"),
            "STRATEGIST_CONFIG": str(tmp_path / "strategist.toml"),
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        for var in ("REDIS_URL", "LOCAL_MODEL_PATH", "LOCAL_BASE_URL", "ROUTING_MODE"):
            monkeypatch.delenv(var, raising=False)
        gemini.behaviour = Reply(text=PLAN, input_tokens=1500, output_tokens=800, thinking_tokens=1000)
        perplexity.behaviour = CITED
        yield gemini, perplexity


def analyze_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    status = cli.main(["analyze", *argv, "--json"])
    out = capsys.readouterr().out
    result: dict[str, Any] = json.loads(out)
    assert status == (0 if result["answer"] else 1)
    return result


def test_each_kind_of_query_reaches_its_tier(
    servers: tuple[FakeGemini, FakePerplexity], capsys: pytest.CaptureFixture[str]
) -> None:
    gemini, perplexity = servers
    fresh = analyze_json(capsys, FRESH)
    assert (fresh["provider"], fresh["tier"]) == ("perplexity", "realtime")
    citations: list[dict[str, str]] = fresh["citations"]
    assert citations[0]["url"].startswith("https://epaper.thehindu.com")
    assert perplexity.request_count == 1 and gemini.request_count == 0

    complex_ = analyze_json(capsys, COMPLEX)
    assert (complex_["provider"], complex_["tier"]) == ("gemini", "premium")
    assert gemini.request_count == 1
    attempt = complex_["attempts"][0]
    assert (attempt["input_tokens"], attempt["output_tokens"]) == (1500, 1800)  # thinking billed as output
    assert complex_["cost_usd"] == pytest.approx((1500 * 0.75 + 1800 * 3.75) / 1e6)

    simple = analyze_json(capsys, SIMPLE, "--depth", "quick")
    assert (simple["provider"], simple["tier"]) == ("local", "local")
    assert simple["cost_usd"] == 0.0 and simple["baseline_cost_usd"] > 0
    assert gemini.request_count == 1 and perplexity.request_count == 1


@pytest.mark.parametrize("failure", [Fail(500), Hang()], ids=["http-500", "hang"])
def test_failed_premium_is_answered_by_the_next_provider(
    servers: tuple[FakeGemini, FakePerplexity],
    capsys: pytest.CaptureFixture[str],
    failure: Fail | Hang,
    tmp_path: Path,
) -> None:
    gemini, perplexity = servers
    write_config(tmp_path, gemini_timeout_s=1.5)
    gemini.script([failure])
    result = analyze_json(capsys, COMPLEX)
    first = result["attempts"][0]
    assert (first["provider"], first["outcome"]) == ("gemini", "error")
    assert first["error_class"] == ("server_error" if isinstance(failure, Fail) else "timeout")
    assert result["provider"] == "perplexity" and result["fallback_mode"] is True
    assert gemini.request_count == 1 and perplexity.request_count == 1


def test_deep_analysis_is_cross_checked_by_another_vendor(
    servers: tuple[FakeGemini, FakePerplexity], capsys: pytest.CaptureFixture[str]
) -> None:
    _gemini, perplexity = servers
    # The checker answers in the verdict schema: its own answer, and a verdict on each of the plan's two claims.
    check = verdict_text(PLAN.split("\nConfidence")[0], ["supports", "supports"], 0.8)
    perplexity.behaviour = Reply(text=check, citations=[Source("https://ghmc.gov.in/wards", "GHMC")])
    result = analyze_json(capsys, COMPLEX, "--depth", "deep")
    check = result["cross_check"]
    assert check["provider"] == "perplexity" and check["agreement"] > 0.9
    assert "cross_validation" in [f["name"] for f in result["confidence"]["factors"]]


def test_no_keys_local_answers_and_cloud_is_reported_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STRATEGIST_DATA_DIR", str(tmp_path))
    for var in ("GEMINI_API_KEY", "PERPLEXITY_API_KEY", "REDIS_URL", "STRATEGIST_CONFIG", "LOCAL_MODEL_PATH"):
        monkeypatch.delenv(var, raising=False)
    assert cli.main(["analyze", COMPLEX, "--depth", "quick"]) == 0
    captured = capsys.readouterr()
    assert "answered by local" in captured.out
    assert "gemini (premium) skipped: no API key" in captured.out
    assert "-> asking local" in captured.err  # progress while the model works
    assert "confidence" in captured.out and "attempts:" in captured.out


def test_resume_of_a_finished_analysis_returns_it_without_calling_again(
    servers: tuple[FakeGemini, FakePerplexity], capsys: pytest.CaptureFixture[str]
) -> None:
    gemini, _ = servers
    first = analyze_json(capsys, COMPLEX, "--thread-id", "t-1")
    assert cli.main(["resume", "t-1", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["answer"] == first["answer"] and gemini.request_count == 1


def test_service_checkpoints_every_step_and_records_the_ledger(servers: tuple[FakeGemini, FakePerplexity]) -> None:
    settings = load_settings()
    with open_stores(settings) as stores:
        orchestrator = Orchestrator(ProviderRegistry(settings), stores.checkpointer, stores.ledger)
        result = orchestrator.analyze(parse_request({"query": COMPLEX}), thread_id="t-2")
        history = list(orchestrator.graph.get_state_history({"configurable": {"thread_id": "t-2"}}))
        entries = stores.ledger.entries()
    steps = [h.metadata.get("step") for h in history if h.metadata]
    assert len(history) >= 6 and max(s for s in steps if s is not None) >= 5
    assert [e.thread_id for e in entries] == ["t-2"] and entries[0].cost_usd == result.cost_usd


def test_cost_is_priced_at_the_model_that_answered(
    servers: tuple[FakeGemini, FakePerplexity], capsys: pytest.CaptureFixture[str]
) -> None:
    gemini, _ = servers
    # Asked for gemini-3.8-flash; the provider answered with (and bills) gemini-2.5-pro.
    gemini.behaviour = Reply(
        text=PLAN, input_tokens=1500, output_tokens=800, thinking_tokens=1000, model="gemini-2.5-pro-001"
    )
    result = analyze_json(capsys, COMPLEX)
    answer = next(a for a in result["attempts"] if a["provider"] == "gemini")
    assert (answer["model"], answer["configured_model"]) == ("gemini-2.5-pro-001", "gemini-3.8-flash")
    # gemini-2.5-pro: 1500 x $1.25 + (800 + 1000 thinking) x $10.00 per 1M tokens; at 3.8-flash it would be $0.007875.
    assert answer["cost_usd"] == pytest.approx(0.019875)
