"""Every code block of the README runs, against the fake providers, so no example can rot.

Blocks are found by their fences. A block may be marked by an HTML comment on the line before it:
``<!-- readme: setup -->`` for the two set-up commands (the install steps are what `.ci/run` and a fresh clone
check; the commands after them run here, except the test run itself, which must be what `.ci/run` runs), and
``<!-- readme: skip: <why> -->`` for a block that cannot run here (it needs real keys). Python blocks run in a fresh
interpreter, shell blocks in bash with the installed `strategist` command, both with the fake Gemini and
Perplexity servers, the real local model and a data directory of the test's own. The Mermaid block must be
what `strategist graph` prints.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from providers.testing.servers import FakeGemini, FakePerplexity, Reply, Source

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent
TIMEOUT_S = 600
_BLOCK = re.compile(
    r"(?:<!--\s*readme:\s*(?P<mark>[^>]*?)\s*-->\s*\n)?^```(?P<lang>[\w-]*)\n(?P<code>.*?)^```$", re.S | re.M
)


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    code: str
    mark: str

    @property
    def id(self) -> str:
        return f"line{self.line}-{self.lang or 'text'}"


def blocks() -> list[Block]:
    found = []
    for match in _BLOCK.finditer(README):
        line = README.count("\n", 0, match.start("lang")) + 1
        found.append(Block(line, match["lang"], match["code"], match["mark"] or ""))
    return found


RUNNABLE = [b for b in blocks() if b.lang in ("python", "sh") and not b.mark.startswith("skip")]
SETUP = [b for b in RUNNABLE if b.mark == "setup"]


def test_every_block_is_run_or_says_why_not() -> None:
    for block in blocks():
        if block.lang in ("python", "sh"):
            assert block.mark in ("", "setup") or re.match(r"skip: \S", block.mark), block
        else:
            assert block.lang in ("", "text", "mermaid"), f"README line {block.line}: unknown block {block.lang!r}"
    assert len(SETUP) == 2, "the README gives exactly two set-up commands"


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with FakeGemini() as gemini, FakePerplexity() as perplexity:
        gemini.behaviour = Reply(
            text="Weeks 1-2: map every booth and name a captain. Weeks 3-6: door-to-door on water supply.\n"
            "Confidence: 0.8"
        )
        perplexity.behaviour = Reply(
            text="The rally is on for 5 pm; police granted permission on Tuesday.\nConfidence: 0.8",
            citations=[Source("https://epaper.thehindu.com/news/rally", "Rally on", "2026-11-30")],
        )
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "PERPLEXITY_", "STRATEGIST_"))}
        keep.pop("REDIS_URL", None)
        keep.pop("LOCAL_MODEL_PATH", None)
        keep.pop("LOCAL_BASE_URL", None)
        yield keep | {
            "PATH": f"{BIN}{os.pathsep}{keep.get('PATH', '')}",
            "GEMINI_API_KEY": "test-key",
            "GEMINI_BASE_URL": gemini.base_url,
            "PERPLEXITY_API_KEY": "test-key",
            "PERPLEXITY_BASE_URL": perplexity.base_url,
            "STRATEGIST_DATA_DIR": str(tmp_path / "data"),
            "PYTHONPATH": str(ROOT),
        }


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


@pytest.mark.parametrize("block", [b for b in RUNNABLE if b.mark != "setup"], ids=lambda b: b.id)
def test_block_runs(block: Block, env: dict[str, str], tmp_path: Path) -> None:
    if block.lang == "python":
        done = run([sys.executable, "-c", block.code], env, tmp_path)
    else:
        done = run(["bash", "-euo", "pipefail", "-c", block.code], env, tmp_path)
    assert done.returncode == 0, f"README line {block.line} failed:\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr


def test_setup_commands_are_what_ci_runs_and_the_main_job_runs(env: dict[str, str], tmp_path: Path) -> None:
    main_job, tests = SETUP
    assert tests.code.strip() in (ROOT / ".ci" / "run").read_text(encoding="utf-8"), "`.ci/run` runs README's tests"
    steps = [step.strip() for step in main_job.code.strip().split("&&")]
    assert steps[0].startswith("python3 -m venv") and "pip install" in steps[1]
    job = " && ".join(steps[2:]).replace(".venv/bin/", f"{BIN}/")
    # The main job on the embedded default: no keys, no servers.
    bare = {k: v for k, v in env.items() if not k.startswith(("GEMINI_", "PERPLEXITY_"))}
    done = run(["bash", "-euo", "pipefail", "-c", job], bare, tmp_path)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "answered by local" in done.stdout


def test_the_drawn_graph_is_the_compiled_graph(env: dict[str, str], tmp_path: Path) -> None:
    (drawn,) = [b for b in blocks() if b.lang == "mermaid"]
    done = run([str(BIN / "strategist"), "graph"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert drawn.code.strip() == done.stdout.strip()
