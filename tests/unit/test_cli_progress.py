"""`strategist analyze | brief` show progress live: plain lines off a terminal, a status display on one, and
JSON lines with --stream --json (fake providers behind the real command)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import cli
from cli_progress import terminal_sink
from graphs.events import AttemptStarted, Completed, CostSoFar, GatherStarted, NodeFinished, parse_event
from providers.testing import fake_registry, reply
from providers.testing.briefings import briefing_registry

ANSWER = "Turnout rose in Malakpet, mainly among first-time voters.\nConfidence: 0.8"


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STRATEGIST_DATA_DIR", str(tmp_path))
    for var in ("GEMINI_API_KEY", "PERPLEXITY_API_KEY", "REDIS_URL", "STRATEGIST_CONFIG", "LOCAL_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    scripts = {"gemini": [reply(ANSWER)], "perplexity": [reply(ANSWER, citations=["https://x.in/a"])]}
    monkeypatch.setattr(cli, "ProviderRegistry", lambda _settings: fake_registry(scripts | {"local": [reply(ANSWER)]}))
    return tmp_path


def lines_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_analyze_stream_json_prints_every_event_then_the_result(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["analyze", "Summarise: turnout rose in Malakpet.", "--depth", "quick", "--stream", "--json"]) == 0
    captured = capsys.readouterr()
    lines = lines_of(captured.out)
    *events, last = lines
    typed = [parse_event(e) for e in events]  # every line but the last is an event of the model
    kinds = [e.event for e in typed]
    assert kinds[0] == "thread" and kinds[1] == "classified" and "routed" in kinds
    assert kinds.index("attempt_start") < kinds.index("attempt_end") < kinds.index("validated")
    assert kinds[-3:] == ["confidence", "complete", "node"]
    assert last["event"] == "result" and last["result"]["answer"] and last["result"]["thread_id"] in captured.err
    done = next(e for e in typed if isinstance(e, Completed))
    assert done.thread_id == last["result"]["thread_id"] and done.cost_usd == last["result"]["cost_usd"]


def test_analyze_json_without_stream_prints_only_the_result(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["analyze", "Summarise: turnout rose in Malakpet.", "--depth", "quick", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["answer"]


def test_analyze_off_a_terminal_prints_plain_stage_lines(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["analyze", "Summarise: turnout rose in Malakpet.", "--depth", "quick"]) == 0
    err = capsys.readouterr().err
    for stage in ("classify: ", "route: ", "  -> asking ", "answered in", "validate: ", "score: confidence", "done: "):
        assert stage in err
    assert "\x1b[" not in err  # no terminal control sequences in a log


def test_brief_stream_json(data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "ProviderRegistry", lambda _settings: briefing_registry())
    assert cli.main(["brief", "Jubilee Hills", "--depth", "quick", "--stream", "--json"]) == 0
    *events, last = lines_of(capsys.readouterr().out)
    kinds = [parse_event(e).event for e in events]
    assert kinds[:2] == ["thread", "plan"] and kinds.count("gather_start") == 2
    assert {"gather_end", "credibility", "attempt_start", "attempt_end", "cost", "sanitise", "confidence"} <= set(kinds)
    assert kinds[-2:] == ["complete", "node"]
    assert last["event"] == "result" and last["result"]["briefing"]["ward"] == "Jubilee Hills"
    starts = [e.get("stage") for e in events if e["event"] == "attempt_start"]
    assert starts == ["gather", "gather", "write"]


def test_the_terminal_display_prints_finished_steps_and_shows_the_running_one() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with terminal_sink(console) as sink:
        sink(GatherStarted(question="q1", text="Who leads?").wire())
        sink(AttemptStarted(provider="perplexity", model="sonar").wire())
        sink(CostSoFar(cost_usd=0.01, attempts=1).wire())
        sink(NodeFinished(node="gather").wire())
        sink(Completed(providers=["perplexity"], confidence=0.7, cost_usd=0.01).wire())
        sink({"event": "from_a_newer_version"})  # ignored, not fatal
    text = out.getvalue()
    assert "done: perplexity; confidence 0.70; cost $0.0100" in text
