"""Measure what the local tier can do: a labelled set of light jobs, run through the real local model, graded.

Each job of data/local_jobs.jsonl carries its task, complexity, language and an automatic grade (a label among
labels, items that must appear, a fix with the errors that must be gone, a number). Every job goes through the
production path: the graph's prompt (nodes/policy/prompt.py) rendered by the local adapter, with the configured
local model (LOCAL_MODEL_PATH, or LOCAL_BASE_URL and LOCAL_MODEL; default: the embedded SmolLM2-135M-Instruct,
fixed seed). Prints accuracy per task and per (task, language) and, with --write, writes the integer counts the
router reads for the local tier's adequacy (nodes/policy/local_adequacy.py), under the measured model's name, so
the routing table follows a measurement: bare --write replaces nodes/policy/local_adequacy.json (the embedded
model's, shipped); --write PATH measures a model of your own, for LOCAL_ADEQUACY_PATH=PATH.

    PYTHONPATH=. python bench/local.py [--write [PATH]] [--show]

Counts are integers over a fixed-seed model, so a rerun on the same build reproduces the artifact; another CPU
can flip a borderline answer (llama.cpp's float order), which shows up as a one-count diff.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from graphs.state import AnalysisState
from nodes.policy.local_adequacy import ARTIFACT_FORMAT, DEFAULT_PATH
from nodes.policy.prompt import build_prompt
from providers.config import ProviderSettings, load_settings
from providers.registry import build_adapter

ROOT = Path(__file__).resolve().parent.parent
JOBS = ROOT / "data" / "local_jobs.jsonl"
# Router language keys: the local model reads Latin script (English, Hinglish) or Telugu script.
ROUTER_LANGUAGE = {"en": "latin", "hi-Latn": "latin", "te": "te"}
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def numbers_in(text: str) -> list[float]:
    """Return the numbers written in a text, Indian or Western digit grouping alike."""
    return [float(m.replace(",", "")) for m in _NUMBER.findall(text)]


_QUOTED = re.compile(r"'([^']{25,})'")


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9\u0900-\u0c7f]+", " ", text.lower()).strip()


def echoes(answer: str, job_text: str) -> bool:
    """Say whether the answer repeats the job's quoted text whole: the small model's favourite non-answer."""
    squashed = _squash(answer)
    return any(_squash(q) in squashed for q in _QUOTED.findall(job_text))


def grade(answer: str, rule: Mapping[str, Any], job_text: str = "") -> bool:
    """Grade one answer by its job's rule; pure, so the grading itself is unit-tested without a model.

    An answer that repeats the job's quoted text whole fails whatever the rule: it would otherwise pass every
    extraction and label job whose expected items are in the text.
    """
    if job_text and echoes(answer, job_text):
        return False
    kind = rule["kind"]
    folded = answer if rule.get("case_sensitive") else answer.lower()

    def has(item: str) -> bool:
        return (item if rule.get("case_sensitive") else item.lower()) in folded

    if kind == "label":
        # The expected label and no other: "positive or negative" is not an answer.
        others = [lab for lab in rule["labels"] if lab != rule["expected"]]
        return has(rule["expected"]) and not any(has(o) for o in others)
    if kind == "contains_all":
        return all(has(i) for i in rule["items"])
    if kind == "fix":
        return all(has(i) for i in rule["items"]) and not any(has(f) for f in rule["forbidden"])
    if kind == "number":
        return any(abs(x - float(rule["value"])) < 1e-9 for x in numbers_in(answer))
    raise ValueError(f"unknown grading rule {kind!r}")


def load_jobs(path: Path = JOBS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def local_tier() -> ProviderSettings:
    """The configured local tier, given time for a model bigger than the embedded one on two cores."""
    configured = next(p for p in load_settings().providers.values() if p.tier == "local")
    return configured.model_copy(update={"timeout_s": 300.0})


def run_jobs(
    jobs: Sequence[Mapping[str, Any]], show: bool, tier: ProviderSettings
) -> list[tuple[Mapping[str, Any], str, bool, float]]:
    adapter = build_adapter(tier)
    preload = getattr(adapter, "preload", None)
    if preload is not None:  # a model in this process: loaded before the clock starts
        preload()
    results = []
    for job in jobs:
        state: AnalysisState = {"query": job["text"], "classification": {"task": job["task"]}}  # type: ignore[typeddict-item]
        start = time.perf_counter()
        reply = adapter.invoke(build_prompt(state))
        elapsed = time.perf_counter() - start
        ok = grade(reply.text, job["grade"], job["text"])
        if show:
            print(f"[{'ok ' if ok else 'BAD'}] {job['id']} {job['task']}/{job['language']}: {reply.text[:160]!r}")
        results.append((job, reply.text, ok, elapsed))
    return results


def artifact(results: Sequence[tuple[Mapping[str, Any], str, bool, float]], sha: str, model: str) -> dict[str, Any]:
    by_task: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_lang: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for job, _, ok, _ in results:
        for cell in (by_task[job["task"]], by_lang[job["task"]][ROUTER_LANGUAGE[job["language"]]]):
            cell[0] += 1
            cell[1] += int(ok)
    return {
        "format": ARTIFACT_FORMAT,
        "model": model,
        "jobs_sha256": sha,
        "prompt": "production (nodes/policy/prompt.py via the local adapter), depth standard",
        "by_task": {t: {"n": n, "correct": c} for t, (n, c) in sorted(by_task.items())},
        "by_task_language": {
            t: {lang: {"n": n, "correct": c} for lang, (n, c) in sorted(langs.items())}
            for t, langs in sorted(by_lang.items())
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write",
        nargs="?",
        const=DEFAULT_PATH,
        type=Path,
        help=f"write the measurement for the router: to PATH (for LOCAL_ADEQUACY_PATH), or bare to {DEFAULT_PATH.name}",
    )
    parser.add_argument("--show", action="store_true", help="print every answer and its grade")
    args = parser.parse_args(argv)
    raw = JOBS.read_bytes()
    jobs = load_jobs()
    tier = local_tier()
    results = run_jobs(jobs, args.show, tier)
    cells: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for job, _, ok, elapsed in results:
        for key in ((job["task"], "all"), (job["task"], job["language"]), ("ALL", "all")):
            cells[key][0] += 1
            cells[key][1] += int(ok)
            cells[key][2] += elapsed
    print(f"local model {tier.model} on {len(jobs)} light jobs ({JOBS.name}); 2-core machine shared")
    print(f"{'task':<20}{'language':<10}{'n':>4}{'correct':>9}{'accuracy':>10}{'mean s':>8}")
    for (task, lang), (n, c, s) in sorted(cells.items()):
        print(f"{task:<20}{lang:<10}{int(n):>4}{int(c):>9}{c / n:>10.2f}{s / n:>8.1f}")
    if args.write:
        doc = artifact(results, hashlib.sha256(raw).hexdigest(), tier.model)
        args.write.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
