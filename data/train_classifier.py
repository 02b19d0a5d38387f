"""Train the query classifier on data/queries.jsonl and write nodes/policy/classifier_model.json.

The artifact is plain JSON (vocabularies, idf weights, coefficients, temperatures) so that the runtime in
nodes/policy/query_classifier.py can score queries with numpy alone and every number shipped can be inspected.
Training is deterministic: fixed seeds, single-threaded BLAS, and floats rounded before they are written, so
two runs produce byte-identical files.

Usage (from the repository root):
    PYTHONPATH=. python data/train_classifier.py [--data data/queries.jsonl] \
        [--out nodes/policy/classifier_model.json]
    PYTHONPATH=. python data/train_classifier.py --cv 5   # cross-validation on the train split; writes nothing
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from nodes.policy.query_classifier import instruction_text

SCRIPT_VERSION = "1.0.0"
ARTIFACT_FORMAT = "strategist-query-classifier/1"
SEED = 20240611

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT / "data" / "queries.jsonl"
DEFAULT_OUT = REPO_ROOT / "nodes" / "policy" / "classifier_model.json"

COMPLEXITY_LABELS = ("simple", "moderate", "complex")
TASK_LABELS = (
    "briefing",
    "opposition_research",
    "scenario",
    "crisis",
    "messaging",
    "sentiment_tagging",
    "summary",
    "translation",
    "extraction",
    "fact_lookup",
)

# sklearn's default token pattern; the runtime compiles the same string with the same `re` module.
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (1, 5)
# Words seen once are mostly names and typos; keeping them lets the model memorise rather than generalise.
WORD_MIN_DF = 2
CHAR_MIN_DF = 2
# Caps keep the JSON to a couple of MB and drop the long tail that only fits individual training queries.
WORD_MAX_FEATURES = 3000
CHAR_MAX_FEATURES = 12000
# A third block: word n-grams of the instruction alone, quoted spans replaced by one placeholder word (see
# nodes/policy/query_classifier.instruction_text). Kept for its cross-validated gain on the light rows.
INSTRUCTION_BLOCK = True
INSTRUCTION_MAX_FEATURES = 2000
# Chosen by leave-one-paraphrase-style-out validation on the train split (terse / Hinglish / typo / long).
HEAD_C = {"fresh": 16.0, "complexity": 16.0, "task": 16.0}
CALIBRATION_FOLDS = 5
# Enough digits that runtime and sklearn agree far below 1e-6, few enough to keep the file compact and
# immune to last-bit floating point noise.
FLOAT_DIGITS = 10


@dataclass(frozen=True)
class Query:
    """One labelled strategist query from data/queries.jsonl."""

    id: int
    text: str
    fresh: int
    complexity: str
    task: str
    split: str


@dataclass
class TrainedModel:
    """The fitted sklearn objects; the reference the JSON runtime must reproduce."""

    features: FeatureUnion
    heads: dict[str, CalibratedClassifierCV]


def load_dataset(path: Path) -> tuple[list[Query], str]:
    """Read and validate the dataset; return the queries and the file's sha256."""
    raw = path.read_bytes()
    queries: list[Query] = []
    for line_no, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        obj = json.loads(line)
        query = Query(
            id=int(obj["id"]),
            text=str(obj["text"]),
            fresh=int(obj["fresh"]),
            complexity=str(obj["complexity"]),
            task=str(obj["task"]),
            split=str(obj["split"]),
        )
        if (
            query.fresh not in (0, 1)
            or query.complexity not in COMPLEXITY_LABELS
            or query.task not in TASK_LABELS
            or query.split not in ("train", "test")
        ):
            raise ValueError(f"{path}:{line_no}: invalid labels in {obj!r}")
        queries.append(query)
    ids = [q.id for q in queries]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate ids")
    return queries, hashlib.sha256(raw).hexdigest()


def head_targets(queries: Sequence[Query]) -> dict[str, np.ndarray]:
    """Return the label vector of each head."""
    return {
        "fresh": np.array([q.fresh for q in queries], dtype=np.int64),
        "complexity": np.array([q.complexity for q in queries], dtype=object),
        "task": np.array([q.task for q in queries], dtype=object),
    }


def _instruction_lowercase(text: str) -> str:
    return instruction_text(text).lower()


class StableTfidfVectorizer(TfidfVectorizer):  # type: ignore[misc]  # scikit-learn ships no type hints
    """A TfidfVectorizer whose ``max_features`` breaks ties between equally frequent terms alphabetically.

    sklearn keeps the ``max_features`` most frequent terms with numpy's default, unstable argsort, so which of the
    terms tied at the cut are kept changed with the numpy version: under numpy 2.4 retraining kept other char
    n-grams than the shipped artifact had, and the artifact could not be reproduced from its data. The columns
    are in term order when the cut is made, so a stable sort keeps the alphabetically first. This overrides a
    private method; scikit-learn is pinned (==1.9.1) in pyproject.toml for the artifact's sake anyway.
    """

    def _limit_features(self, X: Any, vocabulary: Any, high: Any = None, low: Any = None, limit: Any = None) -> Any:
        X = super()._limit_features(X, vocabulary, high, low, None)  # document-frequency pruning only
        if limit is None or X.shape[1] <= limit:
            return X
        frequencies = np.asarray(X.sum(axis=0)).ravel()
        keep = np.sort(np.argsort(-frequencies, kind="stable")[:limit])
        term_at = {index: term for term, index in vocabulary.items()}
        vocabulary.clear()
        vocabulary.update({term_at[int(old)]: new for new, old in enumerate(keep)})
        return X[:, keep]


def build_features(instruction: bool = INSTRUCTION_BLOCK) -> FeatureUnion:
    """Build the word + char_wb tf-idf union, plus the instruction block when asked.

    Char n-grams inside word boundaries absorb typos, inflections and Hinglish spellings that words miss.
    """
    word = StableTfidfVectorizer(
        analyzer="word",
        lowercase=True,
        token_pattern=TOKEN_PATTERN,
        ngram_range=WORD_NGRAMS,
        min_df=WORD_MIN_DF,
        max_features=WORD_MAX_FEATURES,
        sublinear_tf=True,
        norm="l2",
        smooth_idf=True,
        dtype=np.float64,
    )
    char = StableTfidfVectorizer(
        analyzer="char_wb",
        lowercase=True,
        ngram_range=CHAR_NGRAMS,
        min_df=CHAR_MIN_DF,
        max_features=CHAR_MAX_FEATURES,
        sublinear_tf=True,
        norm="l2",
        smooth_idf=True,
        dtype=np.float64,
    )
    blocks: list[tuple[str, TfidfVectorizer]] = [("word", word), ("char", char)]
    if instruction:
        blocks.append(
            (
                "instruction",
                StableTfidfVectorizer(
                    analyzer="word",
                    # A preprocessor replaces sklearn's own lowercasing, so it lowercases too (as the runtime does).
                    preprocessor=_instruction_lowercase,
                    lowercase=True,
                    token_pattern=TOKEN_PATTERN,
                    ngram_range=WORD_NGRAMS,
                    min_df=WORD_MIN_DF,
                    max_features=INSTRUCTION_MAX_FEATURES,
                    sublinear_tf=True,
                    norm="l2",
                    smooth_idf=True,
                    dtype=np.float64,
                ),
            )
        )
    return FeatureUnion(blocks)


def build_head(c: float) -> CalibratedClassifierCV:
    """Build one head: an L2 logistic regression whose probabilities are temperature-scaled out of fold."""
    base = LogisticRegression(C=c, max_iter=10_000, tol=1e-8)
    return CalibratedClassifierCV(
        base,
        method="temperature",
        cv=StratifiedKFold(n_splits=CALIBRATION_FOLDS, shuffle=True, random_state=SEED),
        ensemble=False,
    )


def fit_model(
    queries: Sequence[Query], head_c: dict[str, float] | None = None, instruction: bool = INSTRUCTION_BLOCK
) -> TrainedModel:
    """Fit the feature union and the three heads on the given (training) queries."""
    c_by_head = dict(HEAD_C if head_c is None else head_c)
    with threadpool_limits(limits=1):
        features = build_features(instruction)
        x = features.fit_transform([q.text for q in queries])
        heads: dict[str, CalibratedClassifierCV] = {}
        for name, y in head_targets(queries).items():
            heads[name] = build_head(c_by_head[name]).fit(x, y)
    return TrainedModel(features=features, heads=heads)


def predict_proba(model: TrainedModel, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Return sklearn's calibrated probabilities per head, columns in each head's `classes_` order."""
    with threadpool_limits(limits=1):
        x = model.features.transform(list(texts))
        return {name: head.predict_proba(x) for name, head in model.heads.items()}


def _round(value: float) -> float:
    return float(f"{value:.{FLOAT_DIGITS}g}")


def _round_list(values: np.ndarray) -> list[float]:
    return [_round(float(v)) for v in np.asarray(values, dtype=np.float64).ravel()]


def export_artifact(
    model: TrainedModel, dataset_sha256: str, counts: dict[str, int], train: Sequence[Query]
) -> dict[str, Any]:
    """Turn the fitted model into the JSON document the runtime loads."""
    targets = head_targets(train)
    blocks: list[dict[str, Any]] = []
    for name, vectorizer in model.features.transformer_list:
        assert isinstance(vectorizer, TfidfVectorizer)
        vocab: dict[str, int] = vectorizer.vocabulary_
        terms = sorted(vocab, key=vocab.__getitem__)
        block: dict[str, Any] = {
            "name": name,
            "analyzer": vectorizer.analyzer,
            "ngram_range": list(vectorizer.ngram_range),
            "lowercase": vectorizer.lowercase,
            "sublinear_tf": vectorizer.sublinear_tf,
            "norm": vectorizer.norm,
            "weight": 1.0,
            "terms": terms,
            "idf": _round_list(vectorizer.idf_),
        }
        if vectorizer.analyzer == "word":
            block["token_pattern"] = vectorizer.token_pattern
        if vectorizer.preprocessor is _instruction_lowercase:
            block["preprocess"] = "instruction"
        blocks.append(block)

    heads: dict[str, Any] = {}
    for name, calibrated in model.heads.items():
        (calibrator,) = calibrated.calibrated_classifiers_
        estimator = calibrator.estimator
        assert isinstance(estimator, LogisticRegression)
        (temperature,) = calibrator.calibrators
        classes = [c.item() if isinstance(c, np.generic) else c for c in calibrated.classes_]
        heads[name] = {
            # "binary": one decision value x, which sklearn's temperature scaling turns into logits (-x, x).
            "kind": "binary" if len(classes) == 2 else "multinomial",
            "classes": classes,
            "coef": [_round_list(row) for row in estimator.coef_],
            "intercept": _round_list(estimator.intercept_),
            "inverse_temperature": _round(float(temperature.beta_)),
            # Class frequencies in training: what the runtime answers when a text has no features at all.
            "prior": [_round(float(np.mean(targets[name] == c))) for c in calibrated.classes_],
            "C": estimator.C,
        }

    return {
        "format": ARTIFACT_FORMAT,
        "script_version": SCRIPT_VERSION,
        "dataset_sha256": dataset_sha256,
        "dataset_counts": counts,
        "seed": SEED,
        "float_digits": FLOAT_DIGITS,
        "features": blocks,
        "heads": heads,
    }


def write_artifact(doc: dict[str, Any], out: Path) -> None:
    """Write the artifact with stable key order and separators so reruns are byte-identical."""
    text = json.dumps(doc, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n", encoding="ascii")


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> float:
    """Return the top-label ECE over equal-width confidence bins."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.mean() * abs(float(confidence[mask].mean()) - float(correct[mask].mean()))
    return total


def evaluate(model: TrainedModel, queries: Sequence[Query]) -> dict[str, dict[str, float]]:
    """Score each head on the given queries: accuracy, log-loss, Brier and ECE."""
    probas = predict_proba(model, [q.text for q in queries])
    results: dict[str, dict[str, float]] = {}
    for name, y in head_targets(queries).items():
        proba = probas[name]
        classes = list(model.heads[name].classes_)
        onehot = np.array([[1.0 if label == c else 0.0 for c in classes] for label in y])
        predicted = np.array([classes[i] for i in proba.argmax(axis=1)], dtype=y.dtype)
        correct = (predicted == y).astype(np.float64)
        # Binary Brier is the usual mean squared error of P(positive); multiclass sums over classes.
        if len(classes) == 2:
            brier = float(np.mean((proba[:, 1] - onehot[:, 1]) ** 2))
        else:
            brier = float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))
        results[name] = {
            "accuracy": float(accuracy_score(y, predicted)),
            "log_loss": float(log_loss(onehot, proba)),
            "brier": brier,
            "ece": expected_calibration_error(proba.max(axis=1), correct),
        }
    return results


def format_metrics(metrics: dict[str, dict[str, float]], title: str) -> str:
    """Render per-head metrics as a fixed-width table."""
    lines = [title, f"{'head':<12}{'accuracy':>10}{'log_loss':>10}{'brier':>10}{'ece':>10}"]
    for head, m in metrics.items():
        lines.append(f"{head:<12}{m['accuracy']:>10.3f}{m['log_loss']:>10.3f}{m['brier']:>10.3f}{m['ece']:>10.3f}")
    return "\n".join(lines)


# Tasks of the short text jobs the local tier may serve; CV reports the task head on the light rows separately.
LIGHT_TASKS = ("messaging", "sentiment_tagging", "summary", "translation", "extraction", "fact_lookup")


def is_light(query: Query) -> bool:
    """Return whether a query is a light job: no fresh facts, simple, a short text task."""
    return query.fresh == 0 and query.complexity == "simple" and query.task in LIGHT_TASKS


def cross_validate(
    train: Sequence[Query], folds: int, instruction: bool = INSTRUCTION_BLOCK
) -> dict[str, dict[str, float]]:
    """Return out-of-fold accuracy per head on the train split, on all rows and on the light rows only.

    Folds are stratified by task and shuffled with the fixed seed. Each fold refits the feature union and the heads
    (calibration included) on the other folds, exactly as `fit_model` does for the shipped artifact.
    """
    tasks = np.array([q.task for q in train], dtype=object)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    correct: dict[str, np.ndarray] = {
        name: np.zeros(len(train), dtype=bool) for name in ("fresh", "complexity", "task")
    }
    for fit_idx, held_idx in splitter.split(np.zeros(len(train)), tasks):
        model = fit_model([train[i] for i in fit_idx], instruction=instruction)
        held = [train[i] for i in held_idx]
        probas = predict_proba(model, [q.text for q in held])
        for name, y in head_targets(held).items():
            classes = list(model.heads[name].classes_)
            predicted = np.array([classes[i] for i in probas[name].argmax(axis=1)], dtype=y.dtype)
            correct[name][held_idx] = predicted == y
    light = np.array([is_light(q) for q in train], dtype=bool)
    return {
        "all": {name: float(c.mean()) for name, c in correct.items()},
        "light": {name: float(c[light].mean()) for name, c in correct.items()},
        "n": {"all": float(len(train)), "light": float(light.sum())},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quiet", action="store_true", help="skip the evaluation printout")
    parser.add_argument("--cv", type=int, default=0, metavar="K", help="K-fold CV on the train split; write nothing")
    parser.add_argument(
        "--no-instruction-block", action="store_true", help="leave out the instruction feature block (ablation)"
    )
    args = parser.parse_args(argv)

    queries, sha = load_dataset(args.data)
    train = [q for q in queries if q.split == "train"]
    test = [q for q in queries if q.split == "test"]
    if args.cv:
        cv = cross_validate(train, args.cv, instruction=not args.no_instruction_block)
        blocks = "word + char" + ("" if args.no_instruction_block else " + instruction")
        print(f"{args.cv}-fold CV ({blocks}) on the train split of {args.data} (sha256={sha[:12]}): accuracy")
        print(f"{'rows':<22}{'n':>6}{'fresh':>12}{'complexity':>12}{'task':>12}")
        for rows in ("all", "light"):
            accuracy = cv[rows]
            print(
                f"{rows:<22}{int(cv['n'][rows]):>6}"
                + "".join(f"{accuracy[h]:>12.3f}" for h in ("fresh", "complexity", "task"))
            )
        return 0
    model = fit_model(train, instruction=not args.no_instruction_block)
    doc = export_artifact(model, sha, {"train": len(train), "test": len(test)}, train)
    write_artifact(doc, args.out)

    if not args.quiet:
        n_features = sum(len(b["terms"]) for b in doc["features"])
        print(f"dataset {args.data} sha256={sha[:12]} train={len(train)} test={len(test)} features={n_features}")
        temps = ", ".join(f"{k}={1 / v['inverse_temperature']:.3f}" for k, v in doc["heads"].items())
        print(f"temperatures: {temps}")
        print(format_metrics(evaluate(model, test), "test split (never used for fitting):"))
        size = args.out.stat().st_size
        print(f"wrote {args.out} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
