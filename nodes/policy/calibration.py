"""What the confidence score learns from outcome feedback: the track record and the calibration model.

Pure numpy, no storage: ``graphs/stores/feedback.py`` stores outcomes, this module turns them into

- **historical accuracy** per provider and task type, a Beta posterior whose prior is the provider's own record
  over all tasks (so a task with two outcomes is not taken at face value) - and nothing at all for a provider
  without outcomes, because a default here would be a made-up number;
- a **calibration model** from the factors to the probability of being right, in three stages by the number of
  recorded outcomes n (both right and wrong ones are needed):

  - n < ``calibration_min_outcomes``: the identity on the raw combination (the configured weighted mean);
  - then Platt scaling of the raw combination: sigmoid(a * logit(raw) + b), two parameters, stable on little data;
  - from ``multifactor_min_outcomes``: Platt scaling of the factor vector - a ridge-regularised logistic
    regression on each factor's log-odds, with an indicator per factor for "not measured", and per provider an
    intercept and a model-certainty slope, as deviations the ridge pulls toward the pooled fit. It learns how
    much each factor actually predicts being right, how an unmeasured factor shifts the odds, and how each
    provider's stated confidence is biased (one vendor's 0.9 is another's 0.6). A one-dimensional map of a
    fixed-weight mean can do none of this: on bench/calibration.py the fixed weights rank right above wrong
    answers with an AUROC of about 0.73, the learned combination above 0.8.

  The fitted model is blended with the identity by ``n / (n + calibration_prior_outcomes)``, so early feedback
  moves confidence gradually. Logistic regression stays consistent when the sample is selected on its inputs,
  which the cascade does (only low-confidence answers are cross-checked), where a step-function map fitted on
  the same data would extrapolate flat into the region it rarely sees.

The fitted state is cached per outcome source and rebuilt only when the source's version changes, so a graph
step pays for a version check, not a refit.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from providers.config import FACTORS, ConfidenceSettings

FloatArray = npt.NDArray[np.float64]
MapKind = Literal["identity", "platt", "logistic"]


@dataclass(frozen=True)
class Outcome:
    """One judged analysis: what was scored, and whether the answer turned out right."""

    thread_id: str
    at: float  # epoch seconds when the outcome was recorded
    provider: str
    task: str
    raw: float  # the uncalibrated weighted combination of factors
    correct: bool
    factors: dict[str, float] = field(default_factory=dict)
    calibrated: float | None = None
    note: str = ""


@runtime_checkable  # so pydantic can describe a Context that holds one (graphs/context.py)
class OutcomeSource(Protocol):
    """Where outcomes come from: a feedback store (``graphs/stores/feedback.py``)."""

    def version(self) -> str: ...

    def outcomes(self) -> list[Outcome]: ...


# --- historical accuracy -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    right: int = 0
    wrong: int = 0

    @property
    def n(self) -> int:
        return self.right + self.wrong


def beta_posterior(record: Record, prior_mean: float, prior_strength: float) -> tuple[float, float]:
    """Return (alpha, beta) of the Beta posterior after ``record``, from a prior of that mean and strength."""
    return record.right + prior_strength * prior_mean, record.wrong + prior_strength * (1.0 - prior_mean)


def historical_accuracy(
    provider_record: Record, task_record: Record, task: str, prior_strength: float
) -> tuple[float, str] | None:
    """Return the posterior mean accuracy of a provider on a task, or None when the provider has no outcomes.

    The prior for the task is the provider's Laplace-smoothed rate over all its tasks, weighted as
    ``prior_strength`` outcomes: a new task starts at the provider's general record and moves to its own.
    """
    if provider_record.n == 0:
        return None
    prior_mean = (provider_record.right + 1) / (provider_record.n + 2)
    alpha, beta = beta_posterior(task_record, prior_mean, prior_strength)
    value = alpha / (alpha + beta)
    detail = (
        f"Beta({alpha:.1f}, {beta:.1f}): {task_record.right}/{task_record.n} right on {task}, "
        f"{provider_record.right}/{provider_record.n} on all tasks"
    )
    return value, detail


# --- calibration models ----------------------------------------------------------------------------------------


def _logit(p: FloatArray) -> FloatArray:
    # Factors of exactly 0 or 1 (no sources; a perfect agreement) must not become infinite log-odds.
    q = np.clip(p, 0.01, 0.99)
    return np.asarray(np.log(q / (1 - q)), dtype=np.float64)


def _sigmoid(z: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def logistic_fit(x: FloatArray, y: FloatArray, ridge: float, iterations: int = 100) -> FloatArray:
    """Fit P(y=1) = sigmoid(x @ beta) by Newton's method; column 0 is the intercept and is not penalised.

    Minimises the log-loss plus ``ridge / 2`` times the squared norm of the other coefficients (scikit-learn's
    LogisticRegression with C = 1 / ridge). The ridge also keeps the Hessian invertible when a column is constant.
    """
    n_features = x.shape[1]
    penalty = np.full(n_features, ridge)
    penalty[0] = 1e-8
    beta = np.zeros(n_features)
    for _ in range(iterations):
        p = _sigmoid(x @ beta)
        gradient = x.T @ (p - y) + penalty * beta
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        beta = beta - step
        if float(np.abs(step).max()) < 1e-10:
            break
    return beta


def platt_fit(raw: Sequence[float], y: npt.ArrayLike) -> tuple[float, float]:
    """Fit P(right) = sigmoid(a * logit(raw) + b); return (a, b).

    Targets are smoothed as Platt (1999) recommends, so a perfectly separated sample does not send the slope
    to infinity.
    """
    labels = np.asarray(y, dtype=np.float64)
    positives, negatives = labels.sum(), len(labels) - labels.sum()
    targets = np.where(labels > 0.5, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    x = np.column_stack([np.ones(len(labels)), _logit(np.asarray(raw, dtype=np.float64))])
    b, a = logistic_fit(x, targets, ridge=1e-6)
    return float(a), float(b)


def factor_features(factors: Mapping[str, float], provider: str, providers: Sequence[str]) -> FloatArray:
    """Return the model's inputs for one answer.

    [1, log-odds of each factor (0 when not measured)..., 1 per factor not measured..., then for each provider
    of ``providers``: is it this one, and its model-certainty log-odds if so]. A provider not among
    ``providers`` gets the pooled fit.
    """
    logits = [float(_logit(np.array([factors[name]]))[0]) if name in factors else 0.0 for name in FACTORS]
    missing = [0.0 if name in factors else 1.0 for name in FACTORS]
    certainty = logits[FACTORS.index("model_certainty")]
    own = [v for p in providers for v in ((1.0, certainty) if p == provider else (0.0, 0.0))]
    return np.array([1.0, *logits, *missing, *own])


@dataclass(frozen=True)
class Calibrator:
    """A model from factors (or their raw combination) to P(right), blended with the identity by ``weight``."""

    kind: MapKind = "identity"
    n: int = 0  # outcomes it was fitted on
    weight: float = 0.0  # share of the fitted model; the rest is the identity on the raw combination
    base_rate: float = 0.5  # share of right answers among the outcomes (Laplace-smoothed)
    params: tuple[float, ...] = ()  # platt: (a, b); logistic: coefficients in factor_features order
    min_outcomes: int = 0  # outcomes needed before a model is fitted (for the description)
    providers: tuple[str, ...] = ()  # logistic: the providers with their own intercept and certainty slope

    def fitted(self, raw: float | None, factors: Mapping[str, float], provider: str) -> float:
        if self.kind == "logistic":
            x = factor_features(factors, provider, self.providers)
            return float(_sigmoid(np.array([x @ np.array(self.params)]))[0])
        if raw is None:
            return self.base_rate
        if self.kind == "platt":
            a, b = self.params
            return float(_sigmoid(np.array([a * float(_logit(np.array([raw]))[0]) + b]))[0])
        return raw

    def __call__(self, raw: float | None, factors: Mapping[str, float], provider: str) -> float:
        """Return the calibrated probability; ``raw`` is None when no factor could be measured."""
        prior = 0.5 if raw is None else raw
        value = self.weight * self.fitted(raw, factors, provider) + (1.0 - self.weight) * prior
        return min(1.0, max(0.0, value))

    def coefficient(self, factor: str, provider: str) -> float | None:
        """Return the learned log-odds weight of a factor for a provider, when the multi-factor model is in use."""
        if self.kind != "logistic":
            return None
        value = self.params[1 + FACTORS.index(factor)]
        if factor == "model_certainty" and provider in self.providers:
            value += self.params[1 + 2 * len(FACTORS) + 2 * self.providers.index(provider) + 1]
        return value

    def describe(self) -> str:
        if self.kind == "identity":
            if self.min_outcomes == 0:
                return "identity: no outcome feedback available"
            return f"identity: {self.n} outcomes recorded, a model is fitted from {self.min_outcomes} of both kinds"
        name = (
            "Platt scaling of the raw combination"
            if self.kind == "platt"
            else "logistic regression on the factors' log-odds (multi-factor Platt scaling)"
        )
        return f"{name}, fitted on {self.n} outcomes, blended {self.weight:.2f} with the identity prior"


def fit_calibrator(outcomes: Sequence[Outcome], cfg: ConfidenceSettings) -> Calibrator:
    """Fit the calibration model on recorded outcomes, as far as their number and mix allow."""
    n = len(outcomes)
    right = sum(o.correct for o in outcomes)
    base_rate = (right + 1) / (n + 2)
    # Both classes must be present: a model fitted on all-right (or all-wrong) outcomes is a constant.
    if n < cfg.calibration_min_outcomes or right in (0, n):
        return Calibrator(n=n, base_rate=base_rate, min_outcomes=cfg.calibration_min_outcomes)
    weight = n / (n + cfg.calibration_prior_outcomes)
    y = np.array([1.0 if o.correct else 0.0 for o in outcomes])
    if n < cfg.multifactor_min_outcomes:
        a, b = platt_fit([o.raw for o in outcomes], y)
        return Calibrator("platt", n, weight, base_rate, (a, b), cfg.calibration_min_outcomes)
    providers = tuple(sorted({o.provider for o in outcomes}))
    x = np.array([factor_features(o.factors, o.provider, providers) for o in outcomes])
    beta = logistic_fit(x, y, cfg.calibration_ridge)
    return Calibrator("logistic", n, weight, base_rate, tuple(beta.tolist()), cfg.calibration_min_outcomes, providers)


# --- what the score reads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Learned:
    """The calibration model and the track records, as of one version of the outcome store."""

    calibrator: Calibrator = field(default_factory=Calibrator)
    records: Mapping[tuple[str, str], Record] = field(default_factory=dict)
    provider_records: Mapping[str, Record] = field(default_factory=dict)
    history_prior_strength: float = 4.0

    def history(self, provider: str, task: str) -> tuple[float, str] | None:
        return historical_accuracy(
            self.provider_records.get(provider, Record()),
            self.records.get((provider, task), Record()),
            task,
            self.history_prior_strength,
        )


def learn(outcomes: Iterable[Outcome], cfg: ConfidenceSettings) -> Learned:
    """Build the track records and fit the calibration model from outcomes."""
    rows = list(outcomes)
    right = Counter((o.provider, o.task) for o in rows if o.correct)
    wrong = Counter((o.provider, o.task) for o in rows if not o.correct)
    records = {k: Record(right[k], wrong[k]) for k in right.keys() | wrong.keys()}
    by_provider: dict[str, Record] = {}
    for (provider, _task), r in records.items():
        p = by_provider.get(provider, Record())
        by_provider[provider] = Record(p.right + r.right, p.wrong + r.wrong)
    calibrator = fit_calibrator(rows, cfg)
    return Learned(calibrator, records, by_provider, cfg.history_prior_strength)


_cache: weakref.WeakKeyDictionary[object, tuple[str, ConfidenceSettings, Learned]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def learned_from(source: OutcomeSource | None, cfg: ConfidenceSettings) -> Learned:
    """Return what the outcomes of ``source`` teach, refitting only when its version changed."""
    if source is None:
        return Learned(history_prior_strength=cfg.history_prior_strength)
    version = source.version()
    with _cache_lock:
        hit = _cache.get(source)
    if hit is not None and hit[0] == version and hit[1] == cfg:
        return hit[2]
    learned = learn(source.outcomes(), cfg)
    with _cache_lock:
        _cache[source] = (version, cfg, learned)
    return learned


# --- quality of a confidence score (bench and tests) ---------------------------------------------------------


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
