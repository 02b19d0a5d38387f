"""Estimate what a strategist query needs: fresh facts, how much reasoning, and which kind of task.

Inference only, from the JSON artifact written by data/train_classifier.py. It reproduces sklearn's
TfidfVectorizer (lowercase, token pattern, word and char_wb n-grams, sublinear tf, idf, l2 norm) and the
temperature-scaled logistic-regression heads with numpy and the standard library, so the graph's `classify`
node needs neither scikit-learn nor network access, and scores a query in well under a millisecond.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

DEFAULT_MODEL_PATH = Path(__file__).with_name("classifier_model.json")
ARTIFACT_FORMAT = "strategist-query-classifier/1"

COMPLEXITY_LABELS: tuple[str, ...] = ("simple", "moderate", "complex")
TASK_LABELS: tuple[str, ...] = (
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

FloatArray = NDArray[np.float64]

# A quoted span is the text a light job works on ("Fix the grammar: 'They was late.'"). An opening straight quote
# follows no letter and a closing one precedes none, so the apostrophes of "don't" and "women's" stay inside.
_QUOTED = re.compile(r"""(?<!\w)'.*?'(?!\w)|"[^"]*"|‘[^’]*’|“[^”]*”""", re.DOTALL)
QUOTED_PLACEHOLDER = " _quoted_ "


def instruction_text(text: str) -> str:
    """Return the text with each quoted span replaced by one placeholder word: what is asked, not of what.

    The trained "instruction" feature block reads this view, so the words of a pasted sentence (a rally, a
    booth, a candidate) weigh less against the words of the job itself (fix, translate, tag, summarise).
    """
    return _QUOTED.sub(QUOTED_PLACEHOLDER, text)


@dataclass(frozen=True)
class QueryNeeds:
    """Calibrated probabilities describing a query; the router decides what to do with them."""

    fresh_p: float  # P(needs fresh facts)
    complexity_p: dict[str, float]  # simple / moderate / complex, sums to 1
    task_p: dict[str, float]  # the 10 task labels, sums to 1

    @classmethod
    def confident(cls, fresh: float = 0.05, complexity: str = "simple", task: str = "summary") -> QueryNeeds:
        """Return a confident classification: complexity at 0.98, task at 0.91 (for tests and benchmarks).

        No sharper than the trained classifier on clear queries: it gives the separately written light jobs a
        median P(complex) of 0.002 and 0.01 at the 80th percentile. At 0.02 a light job sat on the edge between
        the local model and a premium call, so a small change of price flipped what tests of other concerns saw.
        """
        complexity_p = {c: (0.98 if c == complexity else 0.01) for c in COMPLEXITY_LABELS}
        task_p = {t: (0.91 if t == task else 0.01) for t in TASK_LABELS}
        return cls(fresh_p=fresh, complexity_p=complexity_p, task_p=task_p)

    @property
    def complexity(self) -> str:
        return max(self.complexity_p, key=self.complexity_p.__getitem__)

    @property
    def task(self) -> str:
        return max(self.task_p, key=self.task_p.__getitem__)


class ArtifactError(ValueError):
    """The classifier artifact is missing, malformed or of an unsupported format."""


@dataclass(frozen=True)
class _FeatureBlock:
    """One tf-idf vectorizer of the trained feature union, with its columns' offset in the weight matrix."""

    columns: Callable[[str], list[int]]  # the text's n-grams that are in the vocabulary, as columns, in text order
    idf: FloatArray
    offset: int
    sublinear_tf: bool
    l2_norm: bool
    weight: float


@dataclass(frozen=True)
class _Head:
    """A slice of the weight matrix's columns plus how to turn its logits into probabilities."""

    classes: tuple[Any, ...]
    columns: slice
    binary: bool
    inverse_temperature: float
    prior: tuple[float, ...]


# A char_wb block's columns are kept per word: most of a query's words are common ones (and a content analysis's
# fixed instructions are the same every time), so they are looked up once per process rather than once per query.
# Longer words (a pasted URL, junk) are not kept: an entry's size grows with its word's length.
_WORD_CACHE_SIZE = 8192
_CACHED_WORD_CHARS = 40


def _word_columns(
    token_pattern: str, ngram_range: tuple[int, int], lowercase: bool, vocabulary: dict[str, int]
) -> Callable[[str], list[int]]:
    # Mirrors sklearn's _word_ngrams: unigrams first, then space-joined n-grams.
    pattern = re.compile(token_pattern)
    min_n, max_n = ngram_range
    lookup = vocabulary.get

    def columns(text: str) -> list[int]:
        tokens: list[str] = pattern.findall(text.lower() if lowercase else text)
        grams = tokens if max_n == 1 else (list(tokens) if min_n == 1 else [])
        n_tokens = len(tokens)
        for n in range(max(min_n, 2), min(max_n + 1, n_tokens + 1)):
            grams.extend(" ".join(tokens[i : i + n]) for i in range(n_tokens - n + 1))
        return [column for column in map(lookup, grams) if column is not None]

    return columns


def _char_wb_columns(
    ngram_range: tuple[int, int], lowercase: bool, vocabulary: dict[str, int]
) -> Callable[[str], list[int]]:
    # Mirrors sklearn's _char_wb_ngrams, including the rule that a word shorter than n is counted once. Its
    # n-grams never cross a word's edges, so a text's columns are its words' columns in order, each word's
    # computed once (the classifier's cost was mostly building and looking up these n-grams).
    min_n, max_n = ngram_range
    lookup = vocabulary.get

    def of_word(word: str) -> tuple[int, ...]:
        grams: list[str] = []
        padded = " " + word + " "
        length = len(padded)
        for n in range(min_n, max_n + 1):
            if n >= length:
                grams.append(padded)
                break
            grams.extend([padded[i : i + n] for i in range(length - n + 1)])
        return tuple(column for column in map(lookup, grams) if column is not None)

    kept = functools.lru_cache(maxsize=_WORD_CACHE_SIZE)(of_word)

    def columns(text: str) -> list[int]:
        found: list[int] = []
        for word in (text.lower() if lowercase else text).split():
            found.extend(kept(word) if len(word) <= _CACHED_WORD_CHARS else of_word(word))
        return found

    return columns


def _on_instruction(columns: Callable[[str], list[int]]) -> Callable[[str], list[int]]:
    return lambda text: columns(instruction_text(text))


def _softmax(z: FloatArray) -> FloatArray:
    shifted = np.exp(z - z.max())
    result: FloatArray = shifted / shifted.sum()
    return result


class QueryClassifier:
    """Score queries with the trained tf-idf + logistic-regression model held in a JSON artifact."""

    def __init__(
        self,
        blocks: list[_FeatureBlock],
        weights: FloatArray,
        bias: FloatArray,
        heads: dict[str, _Head],
        metadata: Mapping[str, Any],
    ) -> None:
        self._blocks = blocks
        self._weights = weights
        self._bias = bias
        self._heads = heads
        self.metadata: Mapping[str, Any] = metadata

    @classmethod
    def load(cls, path: Path | None = None) -> QueryClassifier:
        """Load the artifact (default: classifier_model.json next to this module)."""
        source = DEFAULT_MODEL_PATH if path is None else Path(path)
        try:
            doc = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"cannot read classifier artifact {source}: {exc}") from exc
        if doc.get("format") != ARTIFACT_FORMAT:
            raise ArtifactError(f"{source}: unsupported artifact format {doc.get('format')!r}")
        try:
            return cls._from_document(doc)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{source}: malformed classifier artifact: {exc}") from exc

    @classmethod
    def _from_document(cls, doc: dict[str, Any]) -> QueryClassifier:
        blocks: list[_FeatureBlock] = []
        offset = 0
        for spec in doc["features"]:
            ngram_range = (int(spec["ngram_range"][0]), int(spec["ngram_range"][1]))
            lowercase = bool(spec["lowercase"])
            terms: list[str] = spec["terms"]
            vocabulary = {term: offset + i for i, term in enumerate(terms)}
            found_in: Callable[[str], list[int]]
            if spec["analyzer"] == "word":
                found_in = _word_columns(spec["token_pattern"], ngram_range, lowercase, vocabulary)
            elif spec["analyzer"] == "char_wb":
                found_in = _char_wb_columns(ngram_range, lowercase, vocabulary)
            else:
                raise ValueError(f"unsupported analyzer {spec['analyzer']!r}")
            preprocess = spec.get("preprocess")
            if preprocess == "instruction":
                found_in = _on_instruction(found_in)
            elif preprocess is not None:
                raise ValueError(f"unsupported preprocess {preprocess!r}")
            idf = np.asarray(spec["idf"], dtype=np.float64)
            if idf.shape != (len(terms),):
                raise ValueError(f"block {spec['name']!r}: {len(terms)} terms but {idf.size} idf weights")
            blocks.append(
                _FeatureBlock(
                    columns=found_in,
                    idf=idf,
                    offset=offset,
                    sublinear_tf=bool(spec["sublinear_tf"]),
                    l2_norm=spec["norm"] == "l2",
                    weight=float(spec["weight"]),
                )
            )
            offset += len(terms)

        # All heads share one (n_features, n_outputs) matrix so a query costs a single gather + matmul.
        columns: list[FloatArray] = []
        biases: list[float] = []
        heads: dict[str, _Head] = {}
        start = 0
        for name in ("fresh", "complexity", "task"):
            spec = doc["heads"][name]
            coef = np.asarray(spec["coef"], dtype=np.float64)
            if coef.ndim != 2 or coef.shape[1] != offset:
                raise ValueError(f"head {name!r}: coefficient shape {coef.shape} does not match {offset} features")
            columns.append(coef.T)
            biases.extend(float(b) for b in spec["intercept"])
            classes = tuple(spec["classes"])
            binary = spec["kind"] == "binary"
            if binary != (len(classes) == 2) or coef.shape[0] != (1 if binary else len(classes)):
                raise ValueError(f"head {name!r}: {coef.shape[0]} coefficient rows for classes {classes}")
            heads[name] = _Head(
                classes=classes,
                columns=slice(start, start + coef.shape[0]),
                binary=binary,
                inverse_temperature=float(spec["inverse_temperature"]),
                prior=tuple(float(p) / sum(spec["prior"]) for p in spec["prior"]),
            )
            if len(heads[name].prior) != len(classes):
                raise ValueError(f"head {name!r}: {len(heads[name].prior)} priors for classes {classes}")
            start += coef.shape[0]
        if set(heads["complexity"].classes) != set(COMPLEXITY_LABELS):
            raise ValueError(f"complexity classes {heads['complexity'].classes}")
        if set(heads["task"].classes) != set(TASK_LABELS):
            raise ValueError(f"task classes {heads['task'].classes}")
        if heads["fresh"].classes != (0, 1):
            raise ValueError(f"fresh classes {heads['fresh'].classes}")

        weights = np.ascontiguousarray(np.hstack(columns))
        metadata: dict[str, Any] = {
            k: doc[k] for k in ("script_version", "dataset_sha256", "dataset_counts") if k in doc
        }
        return cls(blocks, weights, np.asarray(biases, dtype=np.float64), heads, metadata)

    def _features(self, text: str) -> tuple[NDArray[np.intp], FloatArray]:
        index_parts: list[NDArray[np.intp]] = []
        value_parts: list[FloatArray] = []
        for block in self._blocks:
            # Counted by column, not by n-gram: the same counts in the same (first-seen) order, and so the same
            # floating-point sums as sklearn's vectorizer, with the vocabulary looked up before counting.
            counts = Counter(block.columns(text))
            if not counts:
                continue
            cols = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            if block.sublinear_tf:
                tf = np.log(tf) + 1.0
            tfidf = tf * block.idf[cols - block.offset]
            if block.l2_norm:
                norm = float(np.sqrt(np.dot(tfidf, tfidf)))
                if norm > 0.0:
                    tfidf = tfidf / norm
            index_parts.append(cols)
            value_parts.append(tfidf * block.weight)
        if not index_parts:
            return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.float64)
        return np.concatenate(index_parts), np.concatenate(value_parts)

    def predict_proba(self, text: str) -> dict[str, dict[Any, float]]:
        """Return each head's probabilities keyed by the artifact's class labels (fresh: 0 and 1)."""
        indices, values = self._features(text)
        if not indices.size:
            # Only blank text gets here: any word yields the padding-space char unigram, which is in the
            # vocabulary. Intercepts alone would be an extrapolation with no evidence; base rates are honest.
            return {
                name: {label: p for label, p in zip(head.classes, head.prior, strict=True)}
                for name, head in self._heads.items()
            }
        logits = self._bias + values @ self._weights[indices]
        result: dict[str, dict[Any, float]] = {}
        for name, head in self._heads.items():
            z = logits[head.columns]
            if head.binary:
                # sklearn's temperature scaling turns a binary decision value x into the logits (-x, x).
                z = np.array([-z[0], z[0]])
            proba = _softmax(head.inverse_temperature * z)
            result[name] = {label: float(p) for label, p in zip(head.classes, proba, strict=True)}
        return result

    def predict(self, text: str) -> QueryNeeds:
        """Classify one query; never raises on empty or odd input."""
        proba = self.predict_proba(text)
        return QueryNeeds(
            fresh_p=proba["fresh"][1],
            complexity_p={label: proba["complexity"][label] for label in COMPLEXITY_LABELS},
            task_p={label: proba["task"][label] for label in TASK_LABELS},
        )


@functools.cache
def default_classifier() -> QueryClassifier:
    """Return the process-wide classifier loaded from the shipped artifact."""
    return QueryClassifier.load()
