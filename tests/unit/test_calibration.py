"""Calibration: uncalibrated until enough outcomes, sign-constrained fits, stages by cross-validation, the review
gate's guarantee, the track record, and the quality metrics."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest

from nodes.policy.calibration import Outcome, fit_calibrator, gates_for, learned_from
from nodes.policy.conformal import certify, min_outcomes, p_value
from nodes.policy.quality import auroc, bootstrap_interval, brier, ece, log_loss
from nodes.policy.track_record import Record, historical_accuracy
from providers.config import ConfidenceSettings

CFG = ConfidenceSettings()


def outcome(provider: str, task: str, correct: bool, at: float = 0.0, **factors: float) -> Outcome:
    raw = factors.get("model_certainty", 0.7)
    return Outcome(str(uuid.uuid4()), at, provider, task, raw, correct, factors or {"model_certainty": raw})


class ListSource:
    """An outcome source over a list, counting how often it is read."""

    def __init__(self, outcomes: list[Outcome]) -> None:
        self.rows = outcomes
        self.reads = 0

    def version(self) -> str:
        return str(len(self.rows))

    def outcomes(self) -> list[Outcome]:
        self.reads += 1
        return list(self.rows)


def test_uncalibrated_before_enough_outcomes_of_both_kinds() -> None:
    few = fit_calibrator(
        [outcome("local", "summary", i % 2 == 0) for i in range(CFG.calibration_min_outcomes - 1)], CFG
    )
    all_right = fit_calibrator([outcome("local", "summary", True) for _ in range(100)], CFG)
    for c in (few, all_right):
        assert not c.calibrated and c.predict(0.8, {"model_certainty": 0.8}, "local", "summary") == 0.8
        assert c.predict(None, {}, "local", "summary") == 0.5
    assert few.describe().startswith("uncalibrated: 19 outcomes recorded")


def test_a_negative_relation_in_a_small_sample_never_inverts_a_factor() -> None:
    # The reported failure: 40 outcomes where, by chance, higher certainty was more often wrong. An unconstrained
    # Platt fit turned a raw 0.13 into 0.65; the constrained fit can flatten the factor, never invert it.
    rng = np.random.default_rng(4)
    rows = []
    for _ in range(40):
        c = float(rng.uniform(0.05, 0.95))
        rows.append(outcome("local", "summary", bool(rng.random() < 0.9 - 0.6 * c), model_certainty=c))
    model = fit_calibrator(rows, CFG)
    assert model.calibrated
    low = model.predict(0.13, {"model_certainty": 0.13}, "local", "summary")
    high = model.predict(0.9, {"model_certainty": 0.9}, "local", "summary")
    assert high >= low - 1e-9
    coefficient = model.coefficient("model_certainty", "local")
    assert coefficient is None or coefficient >= 0


def test_the_stage_with_the_lowest_cross_validated_log_loss_is_chosen() -> None:
    rng = np.random.default_rng(11)
    # Certainty carries real signal here: the factor model must win over base rates and the raw combination.
    rows = []
    for _ in range(300):
        c = float(rng.uniform(0.05, 0.95))
        rows.append(outcome("local", "summary", bool(rng.random() < c**2), model_certainty=c))
    model = fit_calibrator(rows, CFG)
    assert set(model.cv_log_loss) == {"raw", "base_rate", "platt", "factors"}
    assert model.cv_log_loss[model.stage] == min(model.cv_log_loss.values())
    assert model.stage in ("platt", "factors") and "cross-validated log-loss" in model.describe()
    # Noise only: certainty says nothing, so the fit stays near the base rate, whatever stage wins.
    noise = [
        outcome("local", "summary", bool(rng.random() < 0.3), model_certainty=float(rng.uniform())) for _ in range(300)
    ]
    flat = fit_calibrator(noise, CFG)
    assert flat.predict(0.9, {"model_certainty": 0.9}, "local", "summary") < 0.5


def test_provider_and_task_intercepts_and_per_provider_certainty_slopes() -> None:
    rng = np.random.default_rng(5)
    rows = []
    for _ in range(400):
        # "bold" states 0.8-0.98 and is right 30-80% of the time, "modest" states 0.4-0.7 and is right 75-95%;
        # within each, a higher stated confidence means more often right.
        c = float(rng.uniform(0.8, 0.98))
        rows.append(outcome("bold", "t", bool(rng.random() < 0.3 + 0.5 * (c - 0.8) / 0.18), model_certainty=c))
        c = float(rng.uniform(0.4, 0.7))
        rows.append(outcome("modest", "t", bool(rng.random() < 0.75 + 0.2 * (c - 0.4) / 0.3), model_certainty=c))
    model = fit_calibrator(rows, CFG)

    def p(provider: str, certainty: float) -> float:
        return model.predict(certainty, {"model_certainty": certainty}, provider, "t")

    assert p("bold", 0.9) == pytest.approx(0.58, abs=0.1) and p("modest", 0.6) == pytest.approx(0.88, abs=0.08)
    assert p("bold", 0.95) >= p("bold", 0.85) and p("modest", 0.65) >= p("modest", 0.45)


def test_the_track_record_is_not_an_input_of_the_fit() -> None:
    rng = np.random.default_rng(8)
    rows = [
        outcome("local", "summary", bool(rng.random() < 0.5), model_certainty=0.6, historical_accuracy=h)
        for h in rng.uniform(0.1, 0.9, 200)
    ]
    model = fit_calibrator(rows, CFG)
    a = model.predict(0.6, {"model_certainty": 0.6, "historical_accuracy": 0.1}, "local", "summary")
    b = model.predict(0.6, {"model_certainty": 0.6, "historical_accuracy": 0.9}, "local", "summary")
    assert a == b


def test_learned_state_is_refit_only_when_the_store_changes() -> None:
    source = ListSource([outcome("local", "summary", True)])
    first = learned_from(source, CFG)
    assert learned_from(source, CFG) is first and source.reads == 1
    source.rows.append(outcome("local", "summary", False))
    assert learned_from(source, CFG).records[("local", "summary")] == Record(1, 1) and source.reads == 2
    assert learned_from(None, CFG).history("local", "summary") is None


def test_historical_accuracy_is_a_beta_posterior_shrunk_to_the_providers_record() -> None:
    assert historical_accuracy(Record(), Record(), "summary", 4.0) is None
    # Provider 8/10 overall: prior mean (8+1)/(10+2) = 0.75, as 4 pseudo-outcomes: Beta(3+3, 1+1) for 3/4 on task.
    value, detail = historical_accuracy(Record(8, 2), Record(3, 1), "summary", 4.0) or (0, "")
    assert value == pytest.approx(6 / 8)
    assert detail.startswith("Beta(6.0, 2.0): 3/4 right on summary, 8/10 on all tasks")
    unseen, _ = historical_accuracy(Record(8, 2), Record(), "x", 4.0) or (0, "")
    assert unseen == pytest.approx(0.75)


# --- the review gate --------------------------------------------------------------------------------------------


def test_too_few_outcomes_certify_nothing_and_say_so() -> None:
    need = min_outcomes(0.1, 0.1)
    assert need == 22  # 0.9^22 < 0.1 <= 0.9^21
    gate = certify("local", [0.9] * (need - 1), [True] * (need - 1), 0.1, 0.1)
    assert gate.threshold is None and gate.n == need - 1 and "certifies nothing" in gate.reason
    assert certify("local", [0.9] * need, [True] * need, 0.1, 0.1).threshold == 0.9


def test_the_gate_picks_the_most_permissive_threshold_the_test_rejects_at() -> None:
    # 40 right answers scored 0.9..0.6, then 40 wrong ones scored 0.5..0.1: the errors start below 0.6.
    scores = [0.9 - 0.3 * i / 39 for i in range(40)] + [0.5 - 0.4 * i / 39 for i in range(40)]
    correct = [True] * 40 + [False] * 40
    gate = certify("p", scores, correct, 0.1, 0.1)
    assert gate.threshold is not None and gate.threshold <= 0.6 + 1e-9
    accepted = [ok for s, ok in zip(scores, correct, strict=True) if s >= gate.threshold]
    errors = accepted.count(False)
    assert p_value(errors, len(accepted), 0.1) <= 0.1 and gate.coverage == len(accepted) / 80


def test_the_gate_keeps_its_promise_on_held_out_answers() -> None:
    # Scores that carry real but imperfect signal; over many draws, the realised error among accepted fresh
    # answers exceeds alpha in at most about delta of them.
    alpha, delta = 0.1, 0.1
    rng = np.random.default_rng(0)
    misses, certified = 0, 0
    for _ in range(200):
        s = rng.uniform(0, 1, 600)
        y = rng.random(600) < 0.4 + 0.6 * s
        gate = certify("p", s[:300].tolist(), y[:300].tolist(), alpha, delta)
        if gate.threshold is None:
            continue
        certified += 1
        accepted = y[300:][s[300:] >= gate.threshold]
        misses += bool(accepted.size and 1 - accepted.mean() > alpha)
    assert certified > 80 and misses / certified <= delta


def test_gates_are_certified_per_provider_on_outcomes_the_gate_model_did_not_see() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(400):
        c = float(rng.uniform(0.05, 0.95))
        rows.append(outcome("local", "summary", bool(rng.random() < 1.5 * c), at=float(i), model_certainty=c))
    rows += [outcome("rare", "summary", True, at=1000.0 + i, model_certainty=0.9) for i in range(5)]
    calibrator, gates = gates_for(rows, CFG)
    assert calibrator.n == len(rows) // 2  # fitted on the older half only
    assert gates["local"].threshold is not None and 0 < gates["local"].coverage < 1
    assert gates["rare"].threshold is None and "certifies nothing" in gates["rare"].reason


# --- quality metrics ------------------------------------------------------------------------------------------


def test_quality_metrics_match_their_definitions() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    p = np.round(rng.random(300), 1)  # ties on purpose
    y = rng.random(300) < p
    assert auroc(p.tolist(), y.tolist()) == pytest.approx(metrics.roc_auc_score(y, p))
    assert brier(p.tolist(), y.tolist()) == pytest.approx(metrics.brier_score_loss(y, p))
    assert log_loss(p.tolist(), y.tolist()) == pytest.approx(metrics.log_loss(y, np.clip(p, 1e-6, 1 - 1e-6)))
    # Bin [0.0, 0.1]: said 0.1, right 1 of 2 -> 0.4 off; bin (0.8, 0.9]: said 0.9, right 2 of 2 -> 0.1 off.
    assert ece([0.1, 0.1, 0.9, 0.9], [False, True, True, True]) == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    assert math.isnan(auroc([0.2, 0.4], [True, True]))


def test_bootstrap_interval_brackets_the_estimate() -> None:
    rng = np.random.default_rng(2)
    p = rng.random(200)
    y = rng.random(200) < p
    estimate, low, high = bootstrap_interval(auroc, p.tolist(), y.tolist(), resamples=300)
    assert low < estimate < high and high - low < 0.3
