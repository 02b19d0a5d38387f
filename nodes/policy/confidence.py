"""Confidence in [0, 1] from the factors that could be measured on an answer, combined and calibrated.

Each factor is in [0, 1] and carries its weight. A factor that cannot be measured for this answer is left out
and the remaining weights are renormalised: no factor ever gets a made-up default value. The weighted mean is
the *raw* confidence. The calibration model learned from outcome feedback (nodes/policy/calibration.py) turns
the factors into the probability that the answer is right, which is the confidence's value; with no feedback it
is the identity on the raw value, and once it is fitted each factor's detail shows its learned log-odds weight.
When nothing at all could be measured the raw value is missing and the confidence is 0.5 before feedback,
stated as uninformative.

A :class:`Judge` is shared by validate (the cascade's preliminary confidence), cross_check (which of two
disagreeing answers is better supported) and score, so all three judge an answer the same way.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from graphs.result import Factor
from graphs.state import AnalysisState, Candidate, CitationDict, CrossCheck
from nodes.policy.calibration import Learned
from providers.config import Settings, SourceTable
from providers.finish import finish_kind

# How much each kind of stop lowers certainty. A cut answer may have lost its conclusion; a partly withheld
# one lost content the model meant to give.
FINISH_PENALTY = {"truncated": 0.7, "withheld": 0.4, "unexplained": 0.85}


def model_certainty(answer: Candidate) -> tuple[float, str] | None:
    """Measure the model's own certainty: token probabilities, else its stated confidence; lowered by a bad stop."""
    if answer["mean_logprob"] is not None:
        # exp(mean log-probability) is the geometric mean probability of the tokens the model chose.
        value, detail = math.exp(answer["mean_logprob"]), "geometric mean token probability"
    elif answer["stated_confidence"] is not None:
        value, detail = answer["stated_confidence"], "the model's stated confidence"
    else:
        return None
    kind = finish_kind(answer["finish_reason"])
    if kind is not None:
        value *= FINISH_PENALTY[kind]
        detail += f"; answer {kind} (finish_reason={answer['finish_reason']}, x{FINISH_PENALTY[kind]})"
    return min(1.0, max(0.0, value)), detail


def _recency(date: str, today: dt.date) -> float | None:
    try:
        when = dt.date.fromisoformat(date[:10])
    except ValueError:
        return None
    age = (today - when).days
    # Campaign facts go stale in weeks: full credit within a week, half at about two months.
    return 1.0 if age <= 7 else max(0.1, 0.5 ** ((age - 7) / 60))


def source_quality(citations: list[CitationDict], table: SourceTable, today: dt.date) -> tuple[float, str]:
    """Measure the cited sources: reputation, independence and recency."""
    if not citations:
        return 0.0, "fresh facts needed, no sources cited"
    reputations = [table.score(urlsplit(c["url"]).hostname or "") for c in citations]
    reputation = sum(sorted(reputations, reverse=True)[:5]) / min(5, len(reputations))
    # Three independent sources are where corroboration stops adding much.
    count = min(1.0, len({urlsplit(c["url"]).hostname for c in citations}) / 3)
    recencies = [r for r in (_recency(c["date"], today) for c in citations if c["date"]) if r is not None]
    recency = sum(recencies) / len(recencies) if recencies else None
    parts = [reputation, 0.5 + 0.5 * count] + ([recency] if recency is not None else [])
    value = math.prod(parts) ** (1 / len(parts))
    detail = f"{len(citations)} sources, reputation {reputation:.2f}" + (
        f", recency {recency:.2f}" if recency is not None else ", undated"
    )
    return value, detail


def combine(
    measured: Mapping[str, tuple[float, str]], weights: Mapping[str, float]
) -> tuple[float | None, list[Factor]]:
    """Return the weighted mean of the measured factors (None if none), with weights renormalised over them."""
    total = sum(weights.get(name, 0.0) for name in measured)
    if total == 0:
        return None, []
    factors = [
        Factor(name=name, value=round(value, 4), weight=round(weights.get(name, 0.0) / total, 4), detail=detail)
        for name, (value, detail) in measured.items()
    ]
    value = sum(weights.get(name, 0.0) / total * v for name, (v, _) in measured.items())
    return round(min(1.0, max(0.0, value)), 4), factors


def measure(
    answer: Candidate,
    state: AnalysisState,
    settings: Settings,
    learned: Learned,
    today: dt.date,
    check: CrossCheck | None = None,
) -> dict[str, tuple[float, str]]:
    """Measure every factor that can be measured on this answer."""
    measured: dict[str, tuple[float, str]] = {}
    certainty = model_certainty(answer)
    if certainty is not None:
        measured["model_certainty"] = certainty
    needs_sources = state["classification"]["needs_fresh"] or state.get("constraints", {}).get(
        "require_citations", False
    )
    if needs_sources:
        measured["source_quality"] = source_quality(answer["citations"], settings.sources, today)
    if check is not None:
        measured["cross_validation"] = (check["agreement"], f"{check['method']} ({check['provider']})")
    history = learned.history(answer["provider"], state["classification"]["task"])
    if history is not None:
        measured["historical_accuracy"] = history
    return measured


@dataclass(frozen=True)
class Assessment:
    raw: float | None  # None when no factor could be measured
    value: float  # calibrated
    factors: list[Factor]
    method: str
    calibration: str


@dataclass(frozen=True)
class Judge:
    """Everything an answer is judged by: the settings, what was learned from outcomes, and today's date."""

    settings: Settings
    learned: Learned
    today: dt.date

    def assess(self, answer: Candidate, state: AnalysisState, check: CrossCheck | None = None) -> Assessment:
        """Score an answer: measure its factors, combine them with the configured weights, calibrate."""
        cfg = self.settings.confidence
        measured = measure(answer, state, self.settings, self.learned, self.today, check)
        raw, factors = combine(measured, cfg.weights)
        calibrator = self.learned.calibrator
        value = round(calibrator(raw, {name: v for name, (v, _) in measured.items()}, answer["provider"]), 4)
        for f in factors:
            coefficient = calibrator.coefficient(f.name, answer["provider"])
            if coefficient is not None:
                f.detail += f"; learned log-odds weight {coefficient:+.2f}"
        if raw is None:
            method = "uninformative: no factor could be measured"
        else:
            method = "weighted mean of measured factors, weights renormalised"
        return Assessment(raw, value, factors, method, calibrator.describe())


def recency_of(date: str, today: dt.date) -> float | None:
    """Return a source's recency in [0, 1] from its ISO date (None when undated or unreadable)."""
    return _recency(date, today)
