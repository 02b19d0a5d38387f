"""Outcomes move with the store: `strategist feedback export` from SQLite, `import` into Redis (the test's own
server), the same counts and values, idempotent re-import, clear errors on a bad file; a fresh store says how
many outcomes confidence learns from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cli
from graphs.stores import open_stores
from nodes.policy.calibration import Outcome
from providers.config import load_settings


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in list(os.environ):
        if var.startswith(("GEMINI_", "GOOGLE_", "PERPLEXITY_", "LOCAL_", "STRATEGIST_", "REDIS_", "ROUTING_")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("STRATEGIST_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def outcomes(n: int) -> list[Outcome]:
    return [
        Outcome(f"t-{i}", 1000.0 + i, "local", "summary", 0.5 + i / 100, i % 3 != 0, {"model_certainty": 0.6}, 0.55)
        for i in range(n)
    ]


def test_outcomes_move_from_sqlite_to_redis_and_back_unchanged(
    env: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_stores(load_settings()) as stores:
        for outcome in outcomes(25):
            stores.feedback.record(outcome)
    exported = env / "outcomes.jsonl"
    assert cli.main(["feedback", "export", str(exported)]) == 0
    assert "exported 25 outcomes from SQLite database" in capsys.readouterr().err

    monkeypatch.setenv("REDIS_URL", redis_url)
    assert cli.main(["feedback", "import", str(exported)]) == 0
    assert "imported 25 new outcomes, replaced 0; Redis at" in capsys.readouterr().out
    assert cli.main(["feedback", "import", str(exported)]) == 0  # idempotent: replaces, never duplicates
    assert "imported 0 new outcomes, replaced 25" in capsys.readouterr().out
    with open_stores(load_settings()) as stores:
        assert stores.feedback.outcomes() == outcomes(25)

    assert cli.main(["feedback", "export", "-"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == '{"format": "strategist-outcomes/1", "outcomes": 25}' and len(lines) == 26


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json\n", "line 1: not JSON"),
        ('{"format": "something-else/9"}\n', "unknown format"),
        ('{"thread_id": "x", "surprise": 1}\n', "unknown field(s) surprise"),
        ('{"thread_id": "x", "at": 1}\n', "line 1:"),
    ],
)
def test_a_bad_import_file_is_one_line_and_exit_2_and_records_nothing(
    env: Path, content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = env / "bad.jsonl"
    bad.write_text(content)
    assert cli.main(["feedback", "import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("strategist: error: ") and message in err and err.count("\n") == 1
    with open_stores(load_settings()) as stores:
        assert stores.feedback.outcomes() == []
    assert cli.main(["feedback", "import", str(env / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_a_verdict_is_still_required_to_judge_a_thread(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["feedback", "some-thread"]) == 2
    assert "needs --correct or --incorrect" in capsys.readouterr().err


def test_a_new_store_says_how_many_outcomes_confidence_learns_from() -> None:
    assert "0 recorded outcomes in Redis at x (uncalibrated)" in cli.outcome_notice(0, "Redis at x")
    assert "feedback import FILE" in cli.outcome_notice(0, "Redis at x")
    assert (
        cli.outcome_notice(12, "SQLite database y")
        == "confidence learns from 12 recorded outcomes in SQLite database y"
    )
