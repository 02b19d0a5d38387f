"""The review gate: an acceptance threshold per provider with a guaranteed error rate among accepted answers.

Learn-then-Test (Angelopoulos et al., 2021) with fixed-sequence testing. For a candidate threshold t, the
answers scored at least t are accepted; given the scores, their outcomes are independent draws from the error
rate among accepted answers, so an exact binomial test of "error > alpha" is valid at each t. Thresholds are
tested from the strictest down (the order depends on the scores only, never on the outcomes), and the search
stops at the first one the test cannot reject: the family-wise error is at most delta, so with probability at
least 1 - delta the error rate among answers auto-accepted at the chosen threshold is at most alpha.

The sequence starts at the strictest threshold that accepts enough outcomes for a rejection to be possible at
all ((1 - alpha)^n <= delta); a provider with fewer outcomes than that certifies nothing, and says so. The
scores must come from a model fitted on other outcomes (nodes/policy/calibration.py fits the gate's calibrator
on the older half and certifies on the newer half).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import binom  # type: ignore[import-untyped]  # scipy ships no type hints


@dataclass(frozen=True)
class Gate:
    """One provider's certified threshold (None: nothing certified), what it rests on, and why."""

    provider: str
    threshold: float | None
    n: int  # outcomes the certification rests on
    coverage: float  # share of those outcomes the threshold accepts
    reason: str
    alpha: float = 0.0
    delta: float = 0.0


def min_outcomes(alpha: float, delta: float) -> int:
    """Return the fewest accepted outcomes with which an error-free sample rejects "error > alpha" at level delta."""
    return math.ceil(math.log(delta) / math.log(1 - alpha))


def p_value(errors: int, accepted: int, alpha: float) -> float:
    """Return P(at most ``errors`` errors among ``accepted`` answers | the error rate is alpha): exact binomial."""
    return float(binom.cdf(errors, accepted, alpha))


def certify(provider: str, scores: Sequence[float], correct: Sequence[bool], alpha: float, delta: float) -> Gate:
    """Choose the most permissive threshold whose error among accepted answers is <= alpha with prob. >= 1 - delta."""
    n = len(scores)
    need = min_outcomes(alpha, delta)
    if n < need:
        reason = (
            f"certifies nothing: {n} outcomes of {provider}, at least {need} needed for alpha={alpha}, delta={delta}"
        )
        return Gate(provider, None, n, 0.0, reason, alpha, delta)
    pairs = sorted(zip(scores, correct, strict=True), key=lambda pair: -pair[0])
    chosen: float | None = None
    accepted_at_chosen = 0
    errors = 0
    for i, (score, ok) in enumerate(pairs):
        errors += not ok
        accepted = i + 1
        # A threshold is a distinct score: only test where the next answer scores lower (ties are accepted together).
        if accepted < need or (accepted < n and pairs[accepted][0] == score):
            continue
        if p_value(errors, accepted, alpha) > delta:
            break
        chosen, accepted_at_chosen = score, accepted
    if chosen is None:
        reason = f"certifies nothing: no threshold keeps the error of accepted answers <= {alpha} on {n} outcomes"
        return Gate(provider, None, n, 0.0, reason, alpha, delta)
    coverage = accepted_at_chosen / n
    reason = (
        f"confidence >= {chosen:.3f} accepted: error <= {alpha:.0%} among accepted answers with probability >= "
        f"{1 - delta:.0%}; {coverage:.0%} of {n} outcomes accepted"
    )
    return Gate(provider, chosen, n, coverage, reason, alpha, delta)
