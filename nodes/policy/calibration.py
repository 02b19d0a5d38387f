"""The calibration model: from an answer's factors to the probability that it is right, learned from outcomes.

Pure numpy, no storage: ``graphs/stores/feedback.py`` stores outcomes, this module fits on them. The model
is a penalised logistic regression that cannot go the wrong way:

- **intercepts** per provider and per provider and task type, as deviations from a global intercept that the
  ridge pulls toward it (a task with three outcomes moves its provider's rate a little, not to 0 or 1);
- **slopes constrained to their sign**: each factor can only raise the probability of being right as it rises
  (a bounded fit), so a small or unlucky sample can flatten a factor but never invert it - the pooled
  Platt stage it replaces fitted a negative slope at 40 outcomes and turned a raw 0.13 into 0.65;
- model certainty has a **slope per provider** (one vendor's stated 0.9 is another's 0.6, and the local model's
  token probability is another scale again);
- the **track record is not an input**: historical accuracy (nodes/policy/track_record.py) is computed from the
  same outcomes the intercepts are fitted on, and feeding it back would count them twice.

The stage - base rates only, Platt scaling of the raw combination, or the full factor model - is the one with the
lowest cross-validated log-loss on the outcomes so far (the raw combination itself competes too). With fewer than
``calibration_min_outcomes`` outcomes, or only one kind, nothing is fitted: the value is the raw combination and
the result says it is uncalibrated.

The fitted state is cached per outcome source and rebuilt only when the source's version changes, so a graph step
pays for a version check, not a refit.
"""

from __future__ import annotations

import functools
import math
import threading
import weakref
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from nodes.policy.conformal import Gate, certify
from nodes.policy.quality import log_loss
from nodes.policy.track_record import Record, historical_accuracy
from providers.config import ConfidenceSettings

FloatArray = npt.NDArray[np.float64]
Stage = Literal["uncalibrated", "raw", "base_rate", "platt", "factors"]
# The factors the fit reads; historical accuracy is left out on purpose (see the module docstring).
FIT_FACTORS = ("model_certainty", "source_quality", "cross_validation")
CV_FOLDS = 5


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
    # How many outcomes this one counts as in routing's learned adequacy (nodes/policy/learned_adequacy.py: a
    # cross-check verdict is weaker evidence than a person's judgment). None: the default of its kind, which is
    # also how outcomes recorded before weights existed read.
    weight: float | None = None


# An outcome recorded from a cross-check verdict rather than a person's feedback (nodes/policy/learned_adequacy.py):
# routing learns from it; the confidence model does not, because cross-validation is already one of its factors.
VERDICT_NOTE = "cross-check verdict"


@runtime_checkable  # so pydantic can describe a Context that holds one (graphs/context.py)
class OutcomeSource(Protocol):
    """Where outcomes come from: a feedback store (``graphs/stores/feedback.py``)."""

    def version(self) -> str: ...

    def outcomes(self) -> list[Outcome]: ...


def _scalar_logit(p: float) -> float:
    # Factors of exactly 0 or 1 (no sources; a perfect agreement) must not become infinite log-odds.
    q = min(max(p, 0.01), 0.99)
    return math.log(q / (1 - q))


def _sigmoid(z: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))), dtype=np.float64)


def fit_raw(factors: Mapping[str, float], weights: Mapping[str, float]) -> float | None:
    """Return the weighted mean of the fit's factors that were measured (None when none was)."""
    present = [name for name in FIT_FACTORS if name in factors and weights.get(name, 0.0) > 0]
    total = sum(weights[name] for name in present)
    return sum(weights[name] * factors[name] for name in present) / total if total else None


# --- the design: which columns a stage has, and one answer's row --------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    sign: Literal["free", "positive"]
    penalised: bool


@dataclass(frozen=True)
class Design:
    """The columns of one stage, over the providers and (provider, task) cells seen in the outcomes."""

    stage: Stage
    providers: tuple[str, ...]
    cells: tuple[tuple[str, str], ...]

    def columns(self) -> list[Column]:
        cols = [Column("intercept", "free", False)]
        cols += [Column(f"provider:{p}", "free", True) for p in self.providers]
        cols += [Column(f"task:{p}:{t}", "free", True) for p, t in self.cells]
        if self.stage == "platt":
            cols += [Column("raw", "positive", True), Column("missing:raw", "free", True)]
        if self.stage == "factors":
            cols += [Column(f"model_certainty:{p}", "positive", True) for p in self.providers]
            cols += [Column(name, "positive", True) for name in FIT_FACTORS[1:]]
            cols += [Column(f"missing:{name}", "free", True) for name in FIT_FACTORS]
        return cols

    def index(self) -> dict[str, int]:
        return _column_index(self)

    def row(self, factors: Mapping[str, float], provider: str, task: str, weights: Mapping[str, float]) -> FloatArray:
        """Return one answer's inputs; a provider or task the fit never saw gets the pooled columns only."""
        values: dict[str, float] = {"intercept": 1.0, f"provider:{provider}": 1.0, f"task:{provider}:{task}": 1.0}
        if self.stage == "platt":
            raw = fit_raw(factors, weights)
            if raw is None:
                values["missing:raw"] = 1.0
            else:
                values["raw"] = _scalar_logit(raw)
        if self.stage == "factors":
            for name in FIT_FACTORS:
                if name not in factors:
                    values[f"missing:{name}"] = 1.0
                    continue
                key = f"model_certainty:{provider}" if name == "model_certainty" else name
                values[key] = _scalar_logit(factors[name])
        index = self.index()
        row = np.zeros(len(index))
        for name, value in values.items():
            position = index.get(name)
            if position is not None:
                row[position] = value
        return row


@functools.cache
def _column_index(design: Design) -> dict[str, int]:
    return {c.name: i for i, c in enumerate(design.columns())}


def fit_logistic(x: FloatArray, y: FloatArray, columns: Sequence[Column], ridge: float) -> FloatArray:
    """Minimise the log-loss plus ``ridge / 2`` times the squared penalised coefficients, each within its sign.

    Projected Newton with an active set, by hand: the problem is convex with a few dozen variables, so Newton
    converges in about ten steps with numpy alone, where scipy's L-BFGS-B took about 20 ms per iteration in
    BLAS thread contention on a loaded two-core machine (12 s for one cross-validated fit of 200 outcomes).
    """
    penalty = np.array([ridge if c.penalised else 0.0 for c in columns])
    positive = np.array([c.sign == "positive" for c in columns])

    def loss(beta: FloatArray) -> float:
        z = x @ beta
        return float(np.sum(np.logaddexp(0.0, z) - y * z)) + 0.5 * float(np.sum(penalty * beta**2))

    beta = np.zeros(x.shape[1])
    current = loss(beta)
    for _ in range(100):
        p = _sigmoid(x @ beta)
        gradient = x.T @ (p - y) + penalty * beta
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        # A coefficient at its bound whose gradient pushes it further out stays there this step.
        free = ~(positive & (beta <= 0) & (gradient > 0))
        step = np.zeros_like(beta)
        step[free] = np.linalg.solve(hessian[np.ix_(free, free)], gradient[free])
        t = 1.0
        while True:
            candidate = beta - t * step
            candidate[positive] = np.maximum(candidate[positive], 0.0)
            value = loss(candidate)
            if value <= current - 1e-4 * float(gradient @ (beta - candidate)) or t < 1e-6:
                break
            t /= 2
        moved = float(np.abs(candidate - beta).max())
        beta, current = candidate, value
        if moved < 1e-8:
            break
    return beta


# --- the calibrator -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibrator:
    """A fitted stage (or none): turns an answer's factors into P(right)."""

    stage: Stage = "uncalibrated"
    n: int = 0  # outcomes it was fitted on
    min_outcomes: int = 0
    design: Design | None = None
    params: tuple[float, ...] = ()
    weights: Mapping[str, float] = field(default_factory=dict)
    cv_log_loss: Mapping[str, float] = field(default_factory=dict)  # each candidate stage's, for the description

    @property
    def calibrated(self) -> bool:
        return self.stage != "uncalibrated"

    def predict(self, raw: float | None, factors: Mapping[str, float], provider: str, task: str) -> float:
        """Return P(right); ``raw`` (the configured weighted mean, None when nothing was measured) is the fallback."""
        if self.stage == "raw":
            raw = fit_raw(factors, self.weights)
        if self.design is None:
            return 0.5 if raw is None else min(1.0, max(0.0, raw))
        x = self.design.row(factors, provider, task, self.weights)
        return float(_sigmoid(np.array([x @ np.array(self.params)]))[0])

    def coefficient(self, factor: str, provider: str) -> float | None:
        """Return the learned log-odds weight of a factor for a provider, when the factor model is in use."""
        if self.design is None or self.design.stage != "factors" or factor not in FIT_FACTORS:
            return None
        key = f"model_certainty:{provider}" if factor == "model_certainty" else factor
        names = [c.name for c in self.design.columns()]
        return self.params[names.index(key)] if key in names else None

    def describe(self) -> str:
        if self.stage == "uncalibrated":
            if self.min_outcomes == 0:
                return "uncalibrated: no outcome feedback available"
            return (
                f"uncalibrated: {self.n} outcomes recorded, a model is fitted from {self.min_outcomes} "
                "with both right and wrong answers"
            )
        names = {
            "raw": "the raw combination (it had the lowest cross-validated log-loss)",
            "base_rate": "base rates per provider and task",
            "platt": "Platt scaling of the raw combination, intercepts per provider and task",
            "factors": "sign-constrained logistic model of the factors, intercepts per provider and task",
        }
        losses = ", ".join(f"{k} {v:.3f}" for k, v in self.cv_log_loss.items())
        return f"{names[self.stage]}; fitted on {self.n} outcomes (cross-validated log-loss: {losses})"


def _design(stage: Stage, outcomes: Sequence[Outcome]) -> Design:
    providers = tuple(sorted({o.provider for o in outcomes}))
    cells = tuple(sorted({(o.provider, o.task) for o in outcomes}))
    return Design(stage, providers, cells)


def _fit_stage(stage: Stage, outcomes: Sequence[Outcome], cfg: ConfidenceSettings) -> Calibrator:
    if stage == "raw":
        return Calibrator("raw", len(outcomes), cfg.calibration_min_outcomes, weights=cfg.weights)
    design = _design(stage, outcomes)
    x = np.array([design.row(o.factors, o.provider, o.task, cfg.weights) for o in outcomes])
    y = np.array([1.0 if o.correct else 0.0 for o in outcomes])
    beta = fit_logistic(x, y, design.columns(), cfg.calibration_ridge)
    return Calibrator(stage, len(outcomes), cfg.calibration_min_outcomes, design, tuple(beta.tolist()), cfg.weights)


def _predict(calibrator: Calibrator, o: Outcome) -> float:
    factors = {k: v for k, v in o.factors.items() if k in FIT_FACTORS}
    return calibrator.predict(fit_raw(factors, calibrator.weights), factors, o.provider, o.task)


def fit_calibrator(outcomes: Sequence[Outcome], cfg: ConfidenceSettings) -> Calibrator:
    """Fit the stage with the lowest cross-validated log-loss, once the outcomes allow any fit at all."""
    rows = list(outcomes)
    n, right = len(rows), sum(o.correct for o in rows)
    if n < cfg.calibration_min_outcomes or right in (0, n):
        return Calibrator(n=n, min_outcomes=cfg.calibration_min_outcomes)
    losses: dict[str, float] = {}
    stages: tuple[Stage, ...] = ("raw", "base_rate", "platt", "factors")
    for stage in stages:
        predictions: list[float] = []
        labels: list[bool] = []
        # Interleaved folds: each holds outcomes from every period, and the split is the same on every refit.
        for fold in range(CV_FOLDS):
            train = [o for i, o in enumerate(rows) if i % CV_FOLDS != fold]
            test = [o for i, o in enumerate(rows) if i % CV_FOLDS == fold]
            model = _fit_stage(stage, train, cfg)
            predictions += [_predict(model, o) for o in test]
            labels += [o.correct for o in test]
        losses[stage] = log_loss(predictions, labels)
    best = min(stages, key=lambda s: losses[s])
    fitted = _fit_stage(best, rows, cfg)
    return Calibrator(
        fitted.stage,
        n,
        fitted.min_outcomes,
        fitted.design,
        fitted.params,
        fitted.weights,
        {k: round(v, 4) for k, v in losses.items()},
    )


# --- what the score reads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Learned:
    """The calibration model, the review gates and the track records, as of one version of the outcome store."""

    calibrator: Calibrator = field(default_factory=Calibrator)
    # The review gate scores answers with a calibrator fitted on the older half of the outcomes, and each
    # provider's threshold is certified on the newer half, which that calibrator never saw.
    gate_calibrator: Calibrator = field(default_factory=Calibrator)
    gates: Mapping[str, Gate] = field(default_factory=dict)
    records: Mapping[tuple[str, str], Record] = field(default_factory=dict)
    provider_records: Mapping[str, Record] = field(default_factory=dict)
    history_prior_strength: float = 4.0
    n: int = 0

    def history(self, provider: str, task: str) -> tuple[float, str] | None:
        return historical_accuracy(
            self.provider_records.get(provider, Record()),
            self.records.get((provider, task), Record()),
            task,
            self.history_prior_strength,
        )

    def gate(self, provider: str) -> Gate:
        return self.gates.get(provider) or Gate(provider, None, 0, 0.0, f"no outcomes recorded for {provider}")


def gates_for(outcomes: Sequence[Outcome], cfg: ConfidenceSettings) -> tuple[Calibrator, dict[str, Gate]]:
    """Fit the gate's calibrator on the older half of the outcomes and certify a threshold per provider on the rest."""
    rows = sorted(outcomes, key=lambda o: o.at)
    half = len(rows) // 2
    calibrator = fit_calibrator(rows[:half], cfg)
    newer = rows[half:]
    gates: dict[str, Gate] = {}
    for provider in sorted({o.provider for o in rows}):
        mine = [o for o in newer if o.provider == provider]
        scores = [_predict(calibrator, o) for o in mine]
        gates[provider] = certify(provider, scores, [o.correct for o in mine], cfg.review_alpha, cfg.review_delta)
    return calibrator, gates


def learn(outcomes: Iterable[Outcome], cfg: ConfidenceSettings) -> Learned:
    """Build the track records, fit the calibration model and certify the review gates from outcomes."""
    rows = [o for o in outcomes if o.note != VERDICT_NOTE]
    right = Counter((o.provider, o.task) for o in rows if o.correct)
    wrong = Counter((o.provider, o.task) for o in rows if not o.correct)
    records = {k: Record(right[k], wrong[k]) for k in right.keys() | wrong.keys()}
    by_provider: dict[str, Record] = {}
    for (provider, _task), r in records.items():
        p = by_provider.get(provider, Record())
        by_provider[provider] = Record(p.right + r.right, p.wrong + r.wrong)
    gate_calibrator, gates = gates_for(rows, cfg)
    return Learned(
        fit_calibrator(rows, cfg), gate_calibrator, gates, records, by_provider, cfg.history_prior_strength, len(rows)
    )


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
