"""Learning from outcomes: per-(provider, task) adequacy the router uses once there is enough evidence.

The router's adequacy of a provider for a query is a stated model (tier shares, the local measurement). Recorded
evidence corrects it per provider and task with a Beta posterior whose prior is the router's own estimate,
weighted as ``PRIOR_STRENGTH`` outcomes; below ``MIN_EVIDENCE`` outcomes for the pair nothing changes, so a few
unlucky answers cannot flip a route (bench/learning.py shows the shift). Evidence is of two kinds:

- feedback (``strategist feedback THREAD --correct|--wrong``): a person's judgment of the served answer;
- cross-check verdicts: an independent answer of another vendor judged the served answer's claims. A claim the
  checker contradicts marks the answer wrong; claims it supports (at least half, none contradicted) mark it
  right; anything in between teaches nothing. The verdict is kept in the feedback store as an outcome with
  ``VERDICT_NOTE`` and its own key, so a person's feedback on the same answer overrides it here, and the
  confidence model, which scores cross-validation itself, never learns from it.

Evidence is weighted (``verdict_weight``): a person's judgment counts as one outcome, a verdict as a fraction of
one, so ``MIN_EVIDENCE`` is met by 10 judgments or by 20 verdicts of a checker at least as capable as the answer.
"""

from __future__ import annotations

import threading
import weakref
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from nodes.policy.calibration import VERDICT_NOTE, Outcome, OutcomeSource
from nodes.policy.track_record import Record, beta_posterior
from providers.config import Tier

PRIOR_STRENGTH = 10.0
MIN_EVIDENCE = 10
# Without per-claim verdicts (a checker that only answered), the claim agreement of the two answers decides:
# this close counts as a confirmation, this far apart as a contradiction; in between teaches nothing.
AGREE_FROM = 0.8
DISAGREE_BELOW = 0.3
# A verdict outcome's key: the thread's own key stays free for a person's feedback.
VERDICT_SUFFIX = "#cross-check"

# How much one outcome teaches, in units of a person's judgment of the served answer (FEEDBACK_WEIGHT).
# A verdict is a noisy label: the checker is a model too and can be the one that is wrong (its own answer may
# be stale or mistaken, it may misread a claim), and it judges claims, not whether the answer served the user.
# If a checker is wrong about one answer in four, a verdict moves an estimate (1 - 2 x 1/4) = half as far as a
# clean label would: VERDICT_WEIGHT. A checker of a lower tier than the answerer (premium > realtime > local, the
# order checkers are picked in, nodes/policy/checkers.py) is more often the one that is wrong, so each tier
# below halves it again: a realtime checker's verdict on a premium answer counts 0.25, a local one's 0.125. The
# error rates are assumptions, not measurements; the weights only have to rank the evidence and keep verdicts
# from moving a route as fast as people's judgments do.
FEEDBACK_WEIGHT = 1.0
VERDICT_WEIGHT = 0.5
LOWER_TIER_DISCOUNT = 0.5
_CAPABILITY: dict[Tier, int] = {"premium": 2, "realtime": 1, "local": 0}


def verdict_weight(answered_by: Tier, checked_by: Tier) -> float:
    """Return what a verdict of a ``checked_by`` checker on a ``answered_by`` answer counts as (see above)."""
    below = max(0, _CAPABILITY[answered_by] - _CAPABILITY[checked_by])
    return VERDICT_WEIGHT * LOWER_TIER_DISCOUNT**below


def weight_of(outcome: Outcome) -> float:
    """Return the weight of an outcome; one recorded without a weight (before weights existed) has its kind's."""
    if outcome.weight is not None:
        return outcome.weight
    return VERDICT_WEIGHT if outcome.note == VERDICT_NOTE else FEEDBACK_WEIGHT


@dataclass(frozen=True)
class Learned:
    """Weighted outcome counts per (provider, task)."""

    records: Mapping[tuple[str, str], Record]

    @classmethod
    def from_outcomes(cls, outcomes: Iterable[Outcome]) -> Learned:
        """Sum feedback and cross-check verdicts by weight; a verdict on an answer a person judged is left out."""
        rows = list(outcomes)
        # What a person judged is the served answer; a verdict on the answer the checker's replaced is kept.
        judged = {(o.thread_id, o.provider) for o in rows if o.note != VERDICT_NOTE}
        right: defaultdict[tuple[str, str], float] = defaultdict(float)
        wrong: defaultdict[tuple[str, str], float] = defaultdict(float)
        for o in rows:
            if o.note == VERDICT_NOTE and (o.thread_id.removesuffix(VERDICT_SUFFIX), o.provider) in judged:
                continue
            (right if o.correct else wrong)[(o.provider, o.task)] += weight_of(o)
        keys = set(right) | set(wrong)
        return cls({k: Record(right[k], wrong[k]) for k in keys})

    def adequacy(self, provider: str, task: str, prior: float) -> tuple[float, Record] | None:
        """Return the posterior adequacy of the provider on the task, or None before enough (weighted) evidence."""
        record = self.records.get((provider, task), Record())
        if record.n < MIN_EVIDENCE:
            return None
        alpha, beta = beta_posterior(record, min(max(prior, 0.0), 1.0), PRIOR_STRENGTH)
        return alpha / (alpha + beta), record


NOTHING_LEARNED = Learned({})


def verdict_of(verdicts: Sequence[Mapping[str, object]], agreement: float) -> bool | None:
    """Return what a cross-check says of the served answer: right (True), wrong (False) or nothing (None)."""
    labels = [str(v.get("verdict")) for v in verdicts]
    if labels:
        if "contradicts" in labels:
            return False
        supports = labels.count("supports")
        return True if supports and 2 * supports >= len(labels) else None
    if agreement >= AGREE_FROM:
        return True
    if agreement < DISAGREE_BELOW:
        return False
    return None


def verdict_outcome(
    thread_id: str,
    at: float,
    provider: str,
    task: str,
    check: Mapping[str, object],
    *,
    answered_by: Tier,
    checked_by: Tier,
) -> Outcome | None:
    """Turn a finished analysis's cross-check into an outcome for routing to learn from (None: no verdict).

    ``provider`` (of tier ``answered_by``) gave the answer the checker (of tier ``checked_by``) judged.
    """
    raw_verdicts = check.get("verdicts")
    verdicts = [v for v in raw_verdicts if isinstance(v, Mapping)] if isinstance(raw_verdicts, list) else []
    agreement = check.get("agreement")
    correct = verdict_of(verdicts, float(agreement) if isinstance(agreement, int | float) else 0.5)
    if correct is None:
        return None
    return Outcome(
        thread_id=thread_id + VERDICT_SUFFIX,
        at=at,
        provider=provider,
        task=task,
        raw=0.5,
        correct=correct,
        note=VERDICT_NOTE,
        weight=verdict_weight(answered_by, checked_by),
    )


_cache: weakref.WeakKeyDictionary[object, tuple[str, Learned]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def learned_from(source: OutcomeSource | None) -> Learned:
    """Return what the source's outcomes teach routing, rebuilt only when its version changed."""
    if source is None:
        return NOTHING_LEARNED
    version = source.version()
    with _cache_lock:
        hit = _cache.get(source)
    if hit is not None and hit[0] == version:
        return hit[1]
    learned = Learned.from_outcomes(source.outcomes())
    with _cache_lock:
        _cache[source] = (version, learned)
    return learned
