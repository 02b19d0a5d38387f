"""Learning from outcomes: per-(provider, task) adequacy the router uses once there is enough evidence.

The router's adequacy of a provider for a query is a stated model (tier shares, the local measurement). Recorded
outcomes (feedback: was the answer right?) correct it per provider and task with a Beta posterior whose prior is
the router's own estimate, weighted as ``PRIOR_STRENGTH`` outcomes; below ``MIN_EVIDENCE`` outcomes for the pair
nothing changes, so a few unlucky answers cannot flip a route (bench/learning.py shows the shift).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nodes.policy.calibration import Outcome
from nodes.policy.track_record import Record, beta_posterior

PRIOR_STRENGTH = 10.0
MIN_EVIDENCE = 10


@dataclass(frozen=True)
class Learned:
    """Outcome counts per (provider, task)."""

    records: Mapping[tuple[str, str], Record]

    @classmethod
    def from_outcomes(cls, outcomes: Iterable[Outcome]) -> Learned:
        right: Counter[tuple[str, str]] = Counter()
        wrong: Counter[tuple[str, str]] = Counter()
        for o in outcomes:
            (right if o.correct else wrong)[(o.provider, o.task)] += 1
        keys = set(right) | set(wrong)
        return cls({k: Record(right[k], wrong[k]) for k in keys})

    def adequacy(self, provider: str, task: str, prior: float) -> tuple[float, Record] | None:
        """Return the posterior adequacy of the provider on the task, or None before enough evidence."""
        record = self.records.get((provider, task), Record())
        if record.n < MIN_EVIDENCE:
            return None
        alpha, beta = beta_posterior(record, min(max(prior, 0.0), 1.0), PRIOR_STRENGTH)
        return alpha / (alpha + beta), record


NOTHING_LEARNED = Learned({})
