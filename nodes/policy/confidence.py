"""Confidence in [0, 1] from the factors that could be measured on an answer, combined and calibrated.

Each factor is in [0, 1] and carries its weight. A factor that cannot be measured for this answer is left out
and the remaining weights are renormalised: no factor ever gets a made-up default value. The weighted mean is
the *raw* confidence. The calibration model learned from outcome feedback (nodes/policy/calibration.py) turns
the factors into the probability that the answer is right, which is the confidence's value; with no feedback it
is the raw value, labelled uncalibrated, and once it is fitted each factor's detail shows its learned log-odds
weight. When nothing at all could be measured the raw value is missing and the confidence is 0.5 before feedback,
stated as uninformative. Degenerate output (nodes/policy/degenerate.py) caps model certainty and the confidence
itself. The review gate (nodes/policy/conformal.py) says whether the answer can be accepted without a person.

A :class:`Judge` is shared by validate (the cascade's preliminary confidence), cross_check (which of two
disagreeing answers is better supported) and score, so all three judge an answer the same way.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from graphs.result import Factor, Review
from graphs.state import AnalysisState, Candidate, CitationDict, CrossCheck
from nodes.policy.calibration import Learned
from nodes.policy.degenerate import Degeneracy, degeneracy
from nodes.policy.prompt import build_prompt
from providers.config import Settings, SourceTable
from providers.finish import finish_kind

# How much each kind of stop lowers certainty: a partly withheld answer lost content the model meant to give. A
# cut answer is degenerate output (nodes/policy/degenerate.py), capped instead.
FINISH_PENALTY = {"withheld": 0.4, "unexplained": 0.85}


def model_certainty(
    answer: Candidate, degenerate: Degeneracy | None = None, cap: float = 1.0
) -> tuple[float, str] | None:
    """Measure the model's own certainty: token probabilities, else its stated confidence; lowered by a bad stop.

    A degenerate answer's certainty is capped: an echo or a loop is easy to predict, so its tokens are likely,
    and a cut or empty answer's stated confidence is about an answer that is not there.
    """
    if answer["mean_logprob"] is not None:
        # exp(mean log-probability) is the geometric mean probability of the tokens the model chose.
        value, detail = math.exp(answer["mean_logprob"]), "geometric mean token probability"
    elif answer["stated_confidence"] is not None:
        value, detail = answer["stated_confidence"], "the model's stated confidence"
    else:
        return None
    kind = finish_kind(answer["finish_reason"])
    if kind in FINISH_PENALTY:
        value *= FINISH_PENALTY[kind]
        detail += f"; answer {kind} (finish_reason={answer['finish_reason']}, x{FINISH_PENALTY[kind]})"
    if degenerate:
        value = min(value, cap)
        detail += f"; capped at {cap:.2f}, degenerate output ({degenerate.detail})"
    return min(1.0, max(0.0, value)), detail


def recency_of(date: str, today: dt.date) -> float | None:
    """Return a source's recency in [0, 1] from its ISO date (None when undated or unreadable)."""
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
    recencies = [r for r in (recency_of(c["date"], today) for c in citations if c["date"]) if r is not None]
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


def prompt_text(state: AnalysisState) -> str:
    """Return all the text a model was given for this state's query (what an echo would copy); empty for a state
    that carries no query of its own (a briefing judges its written overview, whose prompts are its own)."""
    if "query" not in state:
        return ""
    prompt = build_prompt(state)
    return "\n".join((prompt.system, prompt.user, prompt.brief))


def measure(
    answer: Candidate,
    state: AnalysisState,
    settings: Settings,
    learned: Learned,
    today: dt.date,
    check: CrossCheck | None = None,
    degenerate: Degeneracy | None = None,
) -> dict[str, tuple[float, str]]:
    """Measure every factor that can be measured on this answer."""
    measured: dict[str, tuple[float, str]] = {}
    certainty = model_certainty(answer, degenerate, settings.confidence.degenerate_cap)
    if certainty is not None:
        measured["model_certainty"] = certainty
    needs_sources = state["classification"]["needs_fresh"] or state.get("constraints", {}).get(
        "require_citations", False
    )
    if needs_sources:
        measured["source_quality"] = source_quality(answer["citations"], settings.sources, today)
    if check is not None:
        detail = f"{check['method']} ({check['provider']})" + (f": {check['detail']}" if check.get("detail") else "")
        measured["cross_validation"] = (check["agreement"], detail)
    history = learned.history(answer["provider"], state["classification"]["task"])
    if history is not None:
        measured["historical_accuracy"] = history
    return measured


def review_of(
    learned: Learned, provider: str, task: str, factors: Mapping[str, float], raw: float | None, degenerate: Degeneracy
) -> Review:
    """Decide whether the answer needs a person's review, by its provider's certified gate (policy/conformal.py)."""
    gate = learned.gate(provider)
    score = round(learned.gate_calibrator.predict(raw, factors, provider, task), 4)
    review = Review(
        needs_review=True,
        certified=gate.threshold is not None,
        alpha=gate.alpha or None,
        delta=gate.delta or None,
        threshold=None if gate.threshold is None else round(gate.threshold, 4),
        coverage=round(gate.coverage, 4),
        n=gate.n,
        score=score,
        reason=gate.reason,
    )
    if degenerate:
        review.reason = f"degenerate output ({', '.join(degenerate.kinds)}); {gate.reason}"
    elif gate.threshold is not None:
        review.needs_review = score < gate.threshold
        verdict = "below" if review.needs_review else "at or above"
        review.reason = f"score {score:.3f} {verdict} the certified threshold {gate.threshold:.3f}: {gate.reason}"
    return review


@dataclass(frozen=True)
class Assessment:
    raw: float | None  # None when no factor could be measured
    value: float  # calibrated
    factors: list[Factor]
    method: str
    calibration: str
    calibrated: bool
    degenerate: tuple[str, ...]
    review: Review


@dataclass(frozen=True)
class Judge:
    """Everything an answer is judged by: the settings, what was learned from outcomes, and today's date."""

    settings: Settings
    learned: Learned
    today: dt.date

    def assess(self, answer: Candidate, state: AnalysisState, check: CrossCheck | None = None) -> Assessment:
        """Score an answer: measure its factors, combine them with the configured weights, calibrate, gate."""
        cfg = self.settings.confidence
        degenerate = degeneracy(answer["text"], prompt_text(state), answer["finish_reason"])
        measured = measure(answer, state, self.settings, self.learned, self.today, check, degenerate)
        raw, factors = combine(measured, cfg.weights)
        calibrator = self.learned.calibrator
        values = {name: v for name, (v, _) in measured.items()}
        task = state["classification"]["task"]
        value = round(calibrator.predict(raw, values, answer["provider"], task), 4)
        for f in factors:
            coefficient = calibrator.coefficient(f.name, answer["provider"])
            if coefficient is not None:
                f.detail += f"; learned log-odds weight {coefficient:+.2f}"
        if raw is None:
            method = "uninformative: no factor could be measured"
        else:
            method = "weighted mean of measured factors, weights renormalised"
        if degenerate and value > cfg.degenerate_cap:
            value = cfg.degenerate_cap
            method += f"; capped at {cfg.degenerate_cap:.2f}: degenerate output ({degenerate.detail})"
        review = review_of(self.learned, answer["provider"], task, values, raw, degenerate)
        return Assessment(
            raw, value, factors, method, calibrator.describe(), calibrator.calibrated, degenerate.kinds, review
        )
