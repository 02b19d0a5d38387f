"""bench/overhead.py runs and prints its table, so its README row can always be measured again.

Its "nodes, no graph" row runs the analysis graph's nodes by a plain loop built from the graph's wiring, with
LangGraph internals (the builder's channels, branches and wrapped functions); the bench checks that loop's result
against the graph's before it times anything, and this run makes that check part of the suite. Nothing here
reads a time: the figures are the bench's to print, not the suite's to judge.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_overhead_bench_runs_and_splits_the_overhead(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STRATEGIST_DATA_DIR": str(tmp_path)}
    args = [sys.executable, str(ROOT / "bench" / "overhead.py"), "--rounds", "1", "--calls", "3", "--profile", "0"]
    done = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split("  ")[0] for line in done.stdout.splitlines()}
    assert {"direct", "abortable", "nodes, no graph", "bare/none", "project/none", "project/sqlite"} <= rows
    assert "the graph runtime (project/none - nodes, no graph)" in done.stdout
