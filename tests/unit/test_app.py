"""HTTP blueprint and CLI: contract shapes, bad input, resume, the route dry run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from langgraph.checkpoint.memory import InMemorySaver

import app as app_module
import cli
from graphs.service import Orchestrator
from providers.config import load_settings
from providers.testing import fake_registry, reply

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def client() -> FlaskClient:
    orchestrator = Orchestrator(fake_registry({"local": [reply("Sentiment is mixed; the key claim is X.")]}), None)
    orchestrator.graph = orchestrator.graph.builder.compile(checkpointer=InMemorySaver())
    return app_module.create_app(orchestrator).test_client()


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STRATEGIST_DATA_DIR", str(tmp_path))
    for var in ("GEMINI_API_KEY", "PERPLEXITY_API_KEY", "REDIS_URL", "STRATEGIST_CONFIG", "LOCAL_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "Text content is required"),
        ({"text": "   "}, "Text content is required"),
        ({"text": "too short"}, "Text too short for meaningful analysis"),
        ({"text": "x" * 10_001}, "Text too long - maximum 10,000 characters"),
    ],
)
def test_analyze_rejects_bad_text_with_contract_messages(
    client: FlaskClient, body: dict[str, Any], message: str
) -> None:
    response = client.post("/api/v1/strategist/analyze", json=body)
    assert response.status_code == 400
    assert response.get_json() == {"error": message}


def test_analyze_rejects_non_json_and_bad_depth(client: FlaskClient) -> None:
    response = client.post("/api/v1/strategist/analyze", data="not json", content_type="text/plain")
    assert response.status_code == 400 and "JSON object" in response.get_json()["error"]
    response = client.post("/api/v1/strategist/analyze", json={"text": "A long enough text.", "depth": "extreme"})
    assert response.status_code == 400 and "depth" in response.get_json()["error"]


def test_analyze_answers_the_result_with_contract_fields(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/strategist/analyze",
        json={"text": "The opposition promised free buses in Malakpet.", "ward": "Malakpet"},
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["analysis_type"] == "content_analysis"
    assert body["text_length"] == len("The opposition promised free buses in Malakpet.")
    assert body["ward"] == "Malakpet" and body["provider"] == "local"
    assert body["answer"].startswith("Sentiment is mixed")
    for key in ("attempts", "routing", "confidence", "cost_usd", "baseline_cost_usd", "fallback_mode", "thread_id"):
        assert key in body


def test_disabled_and_token_protection(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATEGIST_ENABLED", "false")
    response = client.get("/api/v1/strategist/health")
    assert response.status_code == 503 and response.get_json()["status"] == "service_unavailable"
    monkeypatch.delenv("STRATEGIST_ENABLED")
    monkeypatch.setenv("STRATEGIST_API_TOKEN", "s3cret")
    body = {"text": "Enough text for an analysis."}
    assert client.post("/api/v1/strategist/analyze", json=body).status_code == 401
    ok = client.post("/api/v1/strategist/analyze", json=body, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200


def test_health_reports_components(client: FlaskClient) -> None:
    response = client.get("/api/v1/strategist/health")
    body = response.get_json()
    assert response.status_code == 200
    assert body["components"]["gemini"]["available"] is False
    assert "no API key" in body["components"]["gemini"]["reason"]
    assert body["components"]["local"]["available"] is True
    assert body["system_status"] == "degraded"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["analyze", "   "], "query is empty"),
        (["analyze", "x" * 10_001], "maximum is 10,000"),
        (["resume", "no-such-thread"], "no analysis with thread id"),
        (["costs", "--since", "yesterday-ish"], "--since"),
    ],
)
def test_cli_bad_input_is_a_message_and_exit_2(
    data_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_cli_unknown_depth_exits_non_zero(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["analyze", "hello there", "--depth", "extreme"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_cli_malformed_config_file(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = data_dir / "bad.toml"
    bad.write_text("[providers.gemini\nmodel = ")
    monkeypatch.setenv("STRATEGIST_CONFIG", str(bad))
    assert cli.main(["route", "who is leading?", "--json"]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_cli_missing_model_file_is_reported(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOCAL_MODEL_PATH", str(data_dir / "missing.gguf"))
    assert cli.main(["analyze", "Summarise: the rally went well."]) == 1
    out = capsys.readouterr().out
    assert "NO ANSWER" in out and "missing.gguf" in out


def test_route_json_contract_and_stdin(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["route", "Design a 12-week mobilisation plan for Jubilee Hills", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert set(plan) >= {"classification", "chain", "reasons", "estimated_cost_usd", "baseline_cost_usd"}
    assert plan["chain"] == [{"provider": "local", "tier": "local", "model": "SmolLM2-135M-Instruct.Q4_1"}]
    assert {"fresh_p", "complexity_p", "task_p"} <= set(plan["classification"])

    import io

    # One output line per input line, blank lines included, each naming its line and query.
    monkeypatch.setattr("sys.stdin", io.StringIO("Is the rally still on?\n\nTranslate this leaflet into Telugu\n"))
    assert cli.main(["route", "--json"]) == 2  # the blank line is an error
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["line"], line["query"]) for line in lines] == [
        (1, "Is the rally still on?"),
        (2, ""),
        (3, "Translate this leaflet into Telugu"),
    ]
    assert "chain" in lines[0] and "chain" in lines[2]
    assert lines[1]["error"] == "query: query is empty" and "chain" not in lines[1]


def test_analyze_names_the_thread_on_stderr_first_even_with_json(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOCAL_MODEL_PATH", str(tmp_path / "none.gguf"))  # no provider: a quick, failed analysis
    assert cli.main(["analyze", "Summarise: the rally went well.", "--json", "--thread-id", "t-first"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "thread t-first"


def test_a_closed_pipe_ends_the_command_quietly(data_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    # `strategist health --json | head -1`: the reader leaves after one line.
    env = {**os.environ, "STRATEGIST_DATA_DIR": str(data_dir), "LOCAL_MODEL_PATH": str(tmp_path / "none.gguf")}
    writer = subprocess.Popen(
        [sys.executable, "-m", "cli", "health", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert writer.stdout is not None and writer.stderr is not None
    writer.stdout.readline()
    writer.stdout.close()
    stderr = writer.stderr.read().decode()
    writer.stderr.close()
    writer.wait(timeout=60)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


def test_graph_command_prints_mermaid(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    assert cli.main(["graph"]) == 0
    out = capsys.readouterr().out
    assert "graph TD;" in out and "call_model -.-> call_model" in out


# --- feedback (issue 6): POST /feedback and `strategist feedback` ------------------------------------------------


@pytest.fixture()
def feedback_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FlaskClient, Any]:
    from graphs.stores.feedback import SqliteFeedback

    # Feedback changes what confidence believes: it needs a configured token (tests/unit/test_http_edges.py).
    monkeypatch.setenv("STRATEGIST_API_TOKEN", "feedback-token")

    store = SqliteFeedback(tmp_path / "feedback.sqlite")
    orchestrator = Orchestrator(
        fake_registry({"local": [reply("Sentiment is mixed; the key claim is X.\nConfidence: 0.7")]}), None, None, store
    )
    orchestrator.graph = orchestrator.graph.builder.compile(checkpointer=InMemorySaver())
    client = app_module.create_app(orchestrator).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = "Bearer feedback-token"
    return client, store


def test_feedback_route_records_the_outcome(feedback_client: tuple[FlaskClient, Any]) -> None:
    client, store = feedback_client
    analysis = client.post("/api/v1/strategist/analyze", json={"text": "The opposition promised free buses."})
    thread_id = analysis.get_json()["thread_id"]
    response = client.post("/api/v1/strategist/feedback", json={"thread_id": thread_id, "correct": False})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["thread_id"], body["correct"], body["provider"], body["raw_confidence"]) == (
        thread_id,
        False,
        "local",
        0.7,
    )
    assert [(o.thread_id, o.correct) for o in store.outcomes()] == [(thread_id, False)]


@pytest.mark.parametrize(
    "body, status, needle",
    [
        ({"correct": True}, 400, "thread_id is required"),
        ({"thread_id": "t", "correct": "yes"}, 400, "correct must be true or false"),
        ({"thread_id": "no-such-thread", "correct": True}, 404, "no analysis with thread id"),
    ],
)
def test_feedback_route_rejects_bad_requests(
    feedback_client: tuple[FlaskClient, Any], body: dict[str, Any], status: int, needle: str
) -> None:
    client, _store = feedback_client
    response = client.post("/api/v1/strategist/feedback", json=body)
    assert response.status_code == status and needle in response.get_json()["error"]


def test_cli_feedback_records_and_reports_unknown_threads(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOCAL_MODEL_PATH", str(data_dir / "missing.gguf"))
    assert cli.main(["feedback", "no-such-thread", "--correct"]) == 2
    assert "no analysis with thread id" in capsys.readouterr().err
    assert cli.main(["feedback", "some-thread"]) == 2  # a verdict is required
    assert "needs --correct or --incorrect" in capsys.readouterr().err
    # The local model file is missing: the analysis has no answer, which cannot be judged.
    cli.main(["analyze", "Summarise: the rally went well.", "--thread-id", "t-cli"])
    capsys.readouterr()
    assert cli.main(["feedback", "t-cli", "--incorrect"]) == 2
    assert "no answer to judge" in capsys.readouterr().err


def test_circuit_breaker_reset_needs_the_admin_token(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "/api/v1/strategist/circuit-breaker/reset"
    assert client.post(url, json={}).status_code == 403
    registry = client.application.extensions["strategist"].registry
    for _ in range(registry.health.policy.failure_threshold):
        registry.health.record("local", ok=False, latency_ms=5.0, error_class="server_error")
    assert registry.health.breaker("local").state() == "open"
    monkeypatch.setenv("STRATEGIST_ADMIN_TOKEN", "admin-secret")
    # The registry read its settings before the variable was set: rebuild them as a new process would.
    registry.settings = load_settings({**os.environ, "STRATEGIST_DATA_DIR": "/nonexistent"})
    response = client.post(url, json={}, headers={"X-Admin-Token": "admin-secret"})
    body = response.get_json()
    assert response.status_code == 200
    assert (body["status"], body["action"]) == ("success", "circuit_breaker_reset")
    assert body["message"] == "All circuit breakers have been reset"
    assert registry.health.breaker("local").state() == "closed"


def test_cli_health_lists_every_provider(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["health", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["components"]) == {"gemini", "perplexity", "local"}
    assert report["components"]["gemini"]["available"] is False


# --- ward briefings: `strategist brief` ----------------------------------------------------------------------------


def test_cli_brief_shows_the_stages_and_the_briefing(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from providers.testing.briefings import briefing_registry

    monkeypatch.setattr(cli, "ProviderRegistry", lambda _settings: briefing_registry())
    assert cli.main(["brief", "Jubilee Hills", "--depth", "quick", "--context", "defensive"]) == 0
    captured = capsys.readouterr()
    for stage in (
        "plan: 2 research questions",
        "gather q1",
        "credibility: 3 sources",
        "write: asking gemini",
        "score:",
    ):
        assert stage in captured.err
    for section in ("WARD BRIEFING: Jubilee Hills (quick, defensive)", "Key intelligence", "confidence", "Sources"):
        assert section in captured.out
    assert cli.main(["brief", "Jubilee Hills", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["ward"] == "Jubilee Hills" and "compliance" in body


def test_cli_brief_bad_input(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["brief", "   "]) == 2
    assert "Ward parameter is required" in capsys.readouterr().err
    assert cli.main(["brief"]) == 2
    assert "give a WARD" in capsys.readouterr().err
    assert cli.main(["brief", "--resume", "no-such-thread"]) == 2
    assert "no briefing with thread id" in capsys.readouterr().err


def test_analysis_of_a_thread_running_elsewhere_is_a_409_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One runner per thread over HTTP too (graphs/stores/lease.py): a busy thread is a conflict, not a 500."""
    import uuid

    from graphs.stores.lease import FileThreadLeases, attach_leases

    saver = InMemorySaver()
    leases = FileThreadLeases(tmp_path / "leases")
    attach_leases(saver, leases)
    orchestrator = Orchestrator(fake_registry({"local": [reply("Fine.\nConfidence: 0.6")]}), saver)
    fixed = uuid.UUID("00000000-0000-4000-8000-000000000001")
    monkeypatch.setattr(uuid, "uuid4", lambda: fixed)
    held = leases.acquire(str(fixed))  # another runner holds the thread
    assert held is not None and leases.acquire(str(fixed)) is None  # held: a second holder is refused
    client = app_module.create_app(orchestrator).test_client()
    response = client.post("/api/v1/strategist/analyze", json={"text": "The water supply failed again this week."})
    assert response.status_code == 409
    body = response.get_json()
    assert body["status"] == "thread_busy" and body["thread_id"] == str(fixed)
    assert "already running" in body["error"]
    held.release()
    assert client.post("/api/v1/strategist/analyze", json={"text": "The water supply failed again."}).status_code == 200
