"""Every benchmark runs and prints its table, so each figure in the README's table can always be measured again.

bench/load.py's CPU comparison once built its bare graph around a chat model after ``bare_graph`` had come to take
a call, and nobody knew until the whole bench was run: a bench that no test runs rots. Each runs here at its
smallest size. Nothing here reads a time: the figures are the benches' to print, not the suite's to judge.

Not here: bench/local.py (the real local model on every labelled light job, minutes on two cores; the local model
is run by tests/integration/test_local_provider.py) and load.py's scaling runs (real gunicorn and Celery worker
processes; tests/integration/test_workers.py runs the workers), whose CPU comparison is tested below.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.load import orchestration_cpu
from providers.testing import redis_servers

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
