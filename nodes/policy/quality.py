"""How good a confidence score is: ECE, Brier score, AUROC, log-loss, and bootstrap intervals (bench and tests)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np


def ece(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = 10) -> float:
    """Return the expected calibration error over equal-width bins (the usual binary definition)."""
    p = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    bins = np.clip(np.digitize(p, np.linspace(0.0, 1.0, n_bins + 1)[1:-1], right=True), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += float(mask.mean()) * abs(float(p[mask].mean()) - float(y[mask].mean()))
    return total


def brier(confidence: Sequence[float], correct: Sequence[bool]) -> float:
    """Return the Brier score: the mean squared gap between confidence and outcome (0 is perfect)."""
    p = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(correct, dtype=np.float64)
    return float(np.mean((p - y) ** 2))


def log_loss(confidence: Sequence[float], correct: Sequence[bool]) -> float:
    """Return the mean negative log-likelihood of the outcomes (probabilities clipped away from 0 and 1)."""
    p = np.clip(np.asarray(confidence, dtype=np.float64), 1e-6, 1 - 1e-6)
    y = np.asarray(correct, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def auroc(confidence: Sequence[float], correct: Sequence[bool]) -> float:
    """Return the probability that a right answer outscores a wrong one (ties count half); NaN if one class."""
    p = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(correct, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    # Mann-Whitney U from average ranks, which handles ties exactly.
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), dtype=np.float64)
    sorted_p = p[order]
    _, start, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    avg = start + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


Metric = Callable[[Sequence[float], Sequence[bool]], float]


def bootstrap_interval(
    metric: Metric,
    confidence: Sequence[float],
    correct: Sequence[bool],
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Return (estimate, low, high): the metric and its percentile bootstrap interval over resampled answers."""
    p = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(correct, dtype=bool)
    rng = np.random.default_rng(seed)
    values: list[float] = []
    for _ in range(resamples):
        index = rng.integers(0, len(p), len(p))
        value = metric(list(p[index]), list(y[index]))
        if not math.isnan(value):
            values.append(value)
    estimate = metric(list(p), list(y))
    if not values:
        return estimate, math.nan, math.nan
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return estimate, float(low), float(high)
