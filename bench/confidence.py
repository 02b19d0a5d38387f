"""Benchmark confidence on real answers: per factor and combined, AUROC, ECE and Brier with 95% intervals.

The question set (data/confidence_questions.jsonl: arithmetic, short facts, extraction, sentiment labels, grammar
fixes, "do these agree?" pairs) is graded by program. Its answers:

- **local**: the real SmolLM2-135M-Instruct (in process, llama.cpp, token log-probabilities), replayed from
  data/confidence_local_answers.jsonl, which bench/confidence_record.py wrote by running the model; ``--live``
  asks the model again (about 5-15 minutes on two cores);
- **gemini**: the fake Gemini server, through the real LangChain client and adapter, replaying the answers in
  data/confidence_cloud_answers.jsonl. Those are written by data/make_confidence_questions.py, NOT recorded from
  Google (no keys, no network here): their rows measure the plumbing and the calibrator on a stated confidence
  that carries no information by construction, not a real vendor.

Outcomes are fed back in question order (the "time" of the set): the calibration model and the track record are
learned from the first 20, 50 and 200 outcomes and evaluated on the same later window (questions 200 on), so
every row is scored on answers its model has not seen. Factors are measured by the production code
(nodes/policy/confidence.py: degenerate-output caps, track record, calibration, review gate). Then: the review
gate's realised error among accepted answers over random held-out splits, the degenerate-output detector, and the
claim comparison on the labelled pair set (data/agreement_pairs.jsonl).

Prints its tables and exits 0. From the repository root: PYTHONPATH=. python bench/confidence.py [--live]
[--splits N] [--resamples N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.confidence_record import DATA, QUESTIONS, RECORDED, answer_all, local_prompt, questions
from graphs.state import AnalysisState, Candidate
from nodes.classify import classification_of
from nodes.policy.agreement import compare
from nodes.policy.calibration import Learned, Outcome, fit_calibrator, learn
from nodes.policy.confidence import Judge
from nodes.policy.conformal import certify
from nodes.policy.prompt import split_stated_confidence
from nodes.policy.quality import Metric, auroc, bootstrap_interval, brier, ece
from nodes.policy.query_classifier import default_classifier
from providers.config import Settings, load_settings
from providers.registry import ProviderRegistry
from providers.testing.servers import FakeGemini, RecordedRequest, Reply

CLOUD = DATA / "confidence_cloud_answers.jsonl"
PAIRS = DATA / "agreement_pairs.jsonl"
TEST_FROM = 200
STAGES = (20, 50, 200)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


# --- grading -------------------------------------------------------------------------------------------------


def grade(item: dict[str, Any], text: str) -> bool:
    """Grade an answer against the item's gold, by the item's grader."""
    low = text.lower()
    golds = [g.lower() for g in str(item["gold"]).split("|")]
    if item["grader"] == "number":
        numbers = _NUMBER.findall(text.replace(",", ""))
        return bool(numbers) and float(numbers[-1]) == float(golds[0])
    if item["grader"] == "label":
        found = sorted((m.start(), label) for label in item["labels"] for m in re.finditer(rf"\b{label}\b", low))
        return bool(found) and found[0][1] == golds[0]
    contains = any(g in low for g in golds)
    if item["grader"] == "short":
        return contains and len(text.split()) <= int(item["max_words"])
    return contains


# --- answers -------------------------------------------------------------------------------------------------


@dataclass
class Row:
    item: dict[str, Any]
    provider: str
    text: str
    candidate: Candidate
    state: AnalysisState
    correct: bool
    factors: dict[str, float] = field(default_factory=dict)  # measured with no track record yet
    raw: float = 0.5
    certainty: float | None = None  # before any degenerate cap
    degenerate: tuple[str, ...] = ()


def candidate(provider: str, tier: Any, vendor: str, text: str, finish: str, logprob: float | None) -> Candidate:
    body, stated = split_stated_confidence(text)
    return {
        "text": body,
        "provider": provider,
        "model": provider,
        "tier": tier,
        "vendor": vendor,
        "finish_reason": finish,
        "citations": [],
        "mean_logprob": logprob,
        "stated_confidence": stated,
    }


def state_for(item: dict[str, Any], settings: Settings) -> AnalysisState:
    needs = default_classifier().predict(item["prompt"])
    return {
        "query": item["prompt"],
        "depth": "quick",
        "classification": classification_of(needs, settings.routing.fresh_threshold),
        "attempts": [],
        "rejections": [],
        "budget_extra": [],
    }


def local_rows(items: list[dict[str, Any]], settings: Settings, live: bool) -> tuple[list[Row], str]:
    if live:
        records = list(answer_all(items))
        source = "asked live"
    else:
        records = [json.loads(line) for line in RECORDED.read_text().splitlines() if line.strip()]
        source = f"replayed from {RECORDED.relative_to(DATA.parent)}"
    by_id = {r["id"]: r for r in records}
    rows = []
    for item in items:
        if item["id"] not in by_id:
            continue  # a partial recording (an interrupted bench/confidence_record.py): the rows it has
        r = by_id[item["id"]]
        c = candidate("local", "local", "local", r["text"], r["finish_reason"], r["mean_logprob"])
        rows.append(Row(item, "local", c["text"], c, state_for(item, settings), grade(item, c["text"])))
    model = records[0]["model"] if records else "?"
    return rows, f"{model}, {source}"


def gemini_rows(items: list[dict[str, Any]], settings: Settings) -> list[Row]:
    """Ask the fake Gemini server, through the real client, for each item; it replays the written answers."""
    answers = {json.loads(line)["id"]: json.loads(line) for line in CLOUD.read_text().splitlines() if line.strip()}
    by_prompt = {item["prompt"]: answers[item["id"]]["text"] for item in items}

    def behaviour(_index: int, request: RecordedRequest) -> Reply:
        body = json.dumps(request.body)
        text = next(t for p, t in by_prompt.items() if json.dumps(p)[1:-1] in body)
        return Reply(text=text)

    rows = []
    with FakeGemini(behaviour=behaviour) as server, tempfile.TemporaryDirectory() as tmp:
        env = {"GEMINI_API_KEY": "bench-key", "GEMINI_BASE_URL": server.base_url, "STRATEGIST_DATA_DIR": tmp}
        registry = ProviderRegistry(load_settings(env))
        adapter = registry.adapter("gemini")
        for item in items:
            reply = adapter.invoke(local_prompt(item["prompt"]), timeout_s=30)
            c = candidate("gemini", "premium", "google", reply.text, reply.finish_reason, None)
            rows.append(Row(item, "gemini", c["text"], c, state_for(item, settings), grade(item, c["text"])))
    return rows


def measure_base(rows: list[Row], settings: Settings, today: dt.date) -> None:
    """Measure each answer's factors as production does, before any outcome is known."""
    judge = Judge(settings, Learned(), today)
    for row in rows:
        a = judge.assess(row.candidate, row.state)
        row.factors = {f.name: f.value for f in a.factors}
        row.raw = a.raw if a.raw is not None else 0.5
        row.degenerate = a.degenerate
        if row.candidate["mean_logprob"] is not None:
            row.certainty = math.exp(row.candidate["mean_logprob"])
        else:
            row.certainty = row.candidate["stated_confidence"]


def outcome(row: Row, at: float) -> Outcome:
    return Outcome(
        f"{row.provider}-{row.item['id']}",
        at,
        row.provider,
        row.state["classification"]["task"],
        row.raw,
        row.correct,
        row.factors,
    )


# --- metrics -------------------------------------------------------------------------------------------------


def cell(metric: Metric, scores: Sequence[float], correct: Sequence[bool], resamples: int) -> str:
    value, low, high = bootstrap_interval(metric, scores, correct, resamples=resamples)
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def evaluate(rows: list[Row], settings: Settings, today: dt.date, resamples: int) -> list[tuple[str, ...]]:
    """Return table lines: per stage of learning, each signal's AUROC, ECE and Brier on the later window."""
    test = rows[TEST_FROM:]
    y = [r.correct for r in test]
    lines: list[tuple[str, ...]] = []
    certainty = [r.certainty if r.certainty is not None else 0.5 for r in test]
    capped = [r.factors.get("model_certainty", 0.5) for r in test]
    for name, scores in (("certainty, uncapped", certainty), ("model_certainty (capped)", capped)):
        lines.append(("-", name, *(cell(m, scores, y, resamples) for m in (auroc, ece, brier))))
    for k in STAGES:
        learned = learn([outcome(r, float(i)) for i, r in enumerate(rows[:k])], settings.confidence)
        judge = Judge(settings, learned, today)
        assessed = [judge.assess(r.candidate, r.state) for r in test]
        history = [{f.name: f.value for f in a.factors}.get("historical_accuracy", 0.5) for a in assessed]
        raw = [a.raw if a.raw is not None else 0.5 for a in assessed]
        value = [a.value for a in assessed]
        label = f"{k} ({learned.calibrator.stage})"
        for name, scores in (("historical_accuracy", history), ("raw combination", raw), ("COMBINED", value)):
            lines.append((label, name, *(cell(m, scores, y, resamples) for m in (auroc, ece, brier))))
    return lines


def gate_splits(rows: list[Row], settings: Settings, splits: int, alpha: float) -> str:
    """Over random splits in thirds (fit / certify / held out): how often the realised error is <= alpha."""
    cfg = settings.confidence
    rng = random.Random(7)
    certified = kept = kept_certified = 0
    coverages: list[float] = []
    for _ in range(splits):
        order = list(range(len(rows)))
        rng.shuffle(order)
        third = len(order) // 3
        fit = [outcome(rows[i], float(n)) for n, i in enumerate(order[:third])]
        cal = [outcome(rows[i], 0.0) for i in order[third : 2 * third]]
        held = [outcome(rows[i], 0.0) for i in order[2 * third :]]
        model = fit_calibrator(fit, cfg)

        def score(o: Outcome, model: Any = model) -> float:
            return float(model.predict(o.raw, o.factors, o.provider, o.task))

        gate = certify(rows[0].provider, [score(o) for o in cal], [o.correct for o in cal], alpha, cfg.review_delta)
        if gate.threshold is None:
            kept += 1  # nothing accepted, nothing wrong among the accepted
            continue
        certified += 1
        accepted = [o.correct for o in held if score(o) >= gate.threshold]
        coverages.append(len(accepted) / len(held))
        ok = not accepted or accepted.count(False) / len(accepted) <= alpha
        kept += ok
        kept_certified += ok
    coverage = sum(coverages) / len(coverages) if coverages else 0.0
    among = f"{kept_certified / certified:.1%}" if certified else "-"
    return (
        f"alpha {alpha:.2f}, delta {cfg.review_delta:.2f}: certified in {certified}/{splits} splits (mean held-out "
        f"coverage {coverage:.1%}); realised error <= alpha in {kept / splits:.1%} of splits ({among} of certified)"
    )


def pair_table() -> list[str]:
    rows = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    by_label: Counter[str] = Counter()
    right: Counter[str] = Counter()
    for r in rows:
        by_label[r["label"]] += 1
        right[r["label"]] += (compare(r["a"], r["b"]).agreement >= 0.5) == (r["label"] != "contradict")
    total = sum(right.values()) / len(rows)
    parts = [f"{label} {right[label]}/{n}" for label, n in sorted(by_label.items())]
    return [f"claim comparison on {len(rows)} labelled pairs: accuracy {total:.3f} ({', '.join(parts)})"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--live", action="store_true", help="ask the local model now instead of replaying")
    parser.add_argument("--splits", type=int, default=200, help="random splits for the review gate")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per interval")
    args = parser.parse_args(argv)
    started = time.monotonic()
    today = dt.date(2026, 12, 1)
    items = questions(QUESTIONS)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({"STRATEGIST_DATA_DIR": tmp})
    local, source = local_rows(items, settings, args.live)
    gemini = gemini_rows(items, settings)
    header = ("outcomes", "signal", "AUROC [95% CI]", "ECE [95% CI]", "Brier [95% CI]")
    print(f"confidence bench: {len(items)} graded questions; learn from the first 20/50/200, score {TEST_FROM}-")
    for rows, title in (
        (local, f"local: {source}"),
        (gemini, "gemini: fake server replaying WRITTEN answers (not Google's), stated confidence uninformative"),
    ):
        measure_base(rows, settings, today)
        accuracy = sum(r.correct for r in rows) / len(rows)
        print(f"\n{title}; accuracy {accuracy:.3f}")
        print(f"{header[0]:<14} {header[1]:<26} {header[2]:<24} {header[3]:<24} {header[4]:<24}")
        for line in evaluate(rows, settings, today, args.resamples):
            print(f"{line[0]:<14} {line[1]:<26} {line[2]:<24} {line[3]:<24} {line[4]:<24}")
        flagged = [r for r in rows if r.degenerate]
        kinds = Counter(k for r in flagged for k in r.degenerate)
        learned = learn([outcome(r, float(i)) for i, r in enumerate(rows[:TEST_FROM])], settings.confidence)
        judge = Judge(settings, learned, today)
        top = max((judge.assess(r.candidate, r.state).value for r in flagged), default=0.0)
        right = sum(r.correct for r in flagged)
        print(
            f"degenerate: {len(flagged)} answers flagged ({', '.join(f'{k} {n}' for k, n in kinds.most_common())}); "
            f"{right} of them graded right; highest confidence among them {top:.3f}"
        )
        for alpha in (settings.confidence.review_alpha, 0.2):
            print("review gate: " + gate_splits(rows, settings, args.splits, alpha))
    print()
    for pair_line in pair_table():
        print(pair_line)
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
