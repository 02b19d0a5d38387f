"""Every benchmark runs and prints its table, so each figure in the README's table can always be measured again.

bench/load.py's CPU comparison once built its bare graph around a chat model after ``bare_graph`` had come to take
a call, and nobody knew until the whole bench was run: a bench that no test runs rots. Each runs here at its
smallest size. Nothing here reads a time: the figures are the benches' to print, not the suite's to judge.

Not here: bench/local.py on the embedded model (every labelled light job through the real model, minutes on two
cores; the local model is run by tests/integration/test_local_provider.py), which is run below against a fake
local server instead, as a user measures a model of their own; and load.py's scaling runs (real gunicorn and Celery
worker processes; tests/integration/test_workers.py runs the workers), whose CPU comparison is tested below.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.load import orchestration_cpu
from nodes.policy.local_adequacy import configured_local_adequacy
from providers.config import load_settings
from providers.testing import redis_servers
from providers.testing.openai_server import Answer, FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[2]

# bench -> (its smallest arguments, lines its table must print)
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "routing": ([], ["production mix:", "adequacy (labels):"]),
    "classifier": ([], ["query classifier:", "separately written light-job split"]),
    "learning": ([], ["learning bench:"]),
    "checkpoint": (["--runs", "3", "--ops", "5"], ["InMemorySaver", "RedisSaver"]),
    "budget": (["--analyses", "3"], ["sqlite cap", "redis  cap"]),
    "budget_briefings": (["--analyses", "3", "--briefings"], ["sqlite cap", "redis  cap"]),
    "calibration": (["--learn", "60", "--evaluate", "60"], ["linked:", "no links:"]),
    "confidence": (["--splits", "3", "--resamples", "10"], ["review gate:", "claim comparison"]),
    "chaos": (
        ["--analyses", "8", "--skip-runs", "4", "--cli-runs", "1"],
        ["== healthy", "== random-20pct-hang", "== 429-storms", "last line printed -> process exit"],
    ),
    "briefing": ([], ["standard: latency / (slowest call + writer call)", "cost per briefing"]),
    "thread_lease": (["--stores", "sqlite"], ["sqlite |"]),
    "overhead": (
        ["--rounds", "1", "--calls", "3", "--profile", "0"],
        [
            "direct ",
            "abortable ",
            "nodes, no graph ",
            "bare/none ",
            "project/none ",
            "project/sqlite ",
            "the graph runtime (project/none - nodes, no graph)",
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(BENCHES))
def test_the_bench_runs_and_prints_its_table(name: str, tmp_path: Path) -> None:
    args, expected = BENCHES[name]
    script = ROOT / "bench" / f"{name.removesuffix('_briefings')}.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STRATEGIST_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    missing = [line for line in expected if line not in done.stdout]
    assert not missing, f"{missing} not in:\n{done.stdout[-3000:]}"


def test_the_load_bench_compares_orchestration_cpu_with_a_bare_graph(
    redis_server: redis_servers.RedisServer,
) -> None:
    bare, project = orchestration_cpu(f"{redis_server.url}/12", runs=3)
    assert bare > 0 and project > 0


def test_the_local_bench_measures_a_model_of_the_users_own_for_the_router(tmp_path: Path) -> None:
    """bench/local.py --write PATH against a local server (LOCAL_BASE_URL): the artifact is that model's, and
    LOCAL_ADEQUACY_PATH gives it to the router (tests/unit/test_routing.py: how the router then judges it)."""
    written = tmp_path / "my-llama.json"
    server = FakeOpenAIServer().start()
    try:
        server.script([Answer(text="positive")] * 200)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "STRATEGIST_DATA_DIR": str(tmp_path),
            "LOCAL_BASE_URL": server.base_url,
            "LOCAL_MODEL": "my-llama",
        }
        args = [sys.executable, str(ROOT / "bench" / "local.py"), "--write", str(written)]
        done = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    assert "local model my-llama on" in done.stdout
    settings = load_settings({"STRATEGIST_DATA_DIR": str(tmp_path), "LOCAL_ADEQUACY_PATH": str(written)})
    measured = configured_local_adequacy(str(settings.providers["local"].adequacy_path))
    jobs = (ROOT / "data" / "local_jobs.jsonl").read_text(encoding="utf-8").splitlines()
    assert measured.model == "my-llama"
    assert sum(c.n for c in measured.by_task.values()) == len([j for j in jobs if j.strip()])
    # One word for every job: right only where the expected label is that word.
    assert 0 < sum(c.correct for c in measured.by_task.values()) < len(jobs)
