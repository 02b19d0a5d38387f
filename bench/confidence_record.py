"""Record the real local model's answers to data/confidence_questions.jsonl (for bench/confidence.py).

Runs the configured local provider (by default the embedded SmolLM2-135M-Instruct, in process through llama.cpp,
token log-probabilities on) through its real adapter, one question at a time, and writes one JSON line per
answer: text, finish reason, mean token log-probability, model, seconds. bench/confidence.py replays this file
(or, with ``--live``, asks the model again). The prompt is the question plus "Answer briefly." and not the
graph's analyst brief: with that brief the 135M model answers almost nothing right (see the bench's docstring).

Usage: PYTHONPATH=. python bench/confidence_record.py [--out data/confidence_local_answers.jsonl] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from providers.base import Prompt
from providers.config import load_settings
from providers.registry import ProviderRegistry

DATA = Path(__file__).resolve().parent.parent / "data"
QUESTIONS = DATA / "confidence_questions.jsonl"
RECORDED = DATA / "confidence_local_answers.jsonl"
BRIEF = "Answer briefly."


def questions(path: Path = QUESTIONS) -> list[dict[str, Any]]:
    """Read the question set."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def local_prompt(question: str) -> Prompt:
    """Return the prompt the local model is asked with."""
    return Prompt(system=BRIEF, user=question, brief=BRIEF)


def answer_all(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Ask the real local model each question; yield one record per answer."""
    with tempfile.TemporaryDirectory() as tmp:
        registry = ProviderRegistry(load_settings({"STRATEGIST_DATA_DIR": tmp}))
        adapter = registry.adapter("local")
        for item in items:
            started = time.monotonic()
            reply = adapter.invoke(local_prompt(item["prompt"]), timeout_s=600)
            yield {
                "id": item["id"],
                "text": reply.text,
                "finish_reason": reply.finish_reason,
                "mean_logprob": reply.mean_logprob,
                "model": reply.model,
                "seconds": round(time.monotonic() - started, 2),
            }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=RECORDED)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    items = questions()[: args.limit]
    with args.out.open("w") as out:
        for n, record in enumerate(answer_all(items), start=1):
            out.write(json.dumps(record) + "\n")
            out.flush()
            if n % 25 == 0:
                print(f"{n}/{len(items)} answered", file=sys.stderr, flush=True)
    print(f"recorded {len(items)} answers of the local model to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
