"""Historical accuracy: a provider's track record on a task type, as a Beta posterior.

The prior for a task is the provider's own record over all tasks (so a task with two outcomes is not taken at
face value), and a provider without outcomes has no track record at all: a default here would be a made-up
number. The track record is a factor of the result; it is never an input of the calibration fit
(nodes/policy/calibration.py), which learns per-provider and per-task intercepts from the same outcomes and would
otherwise count them twice.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Record:
    """Outcomes right and wrong: counts here; weighted counts in routing's learned adequacy, which pools a
    person's feedback with cross-check verdicts worth a fraction of an outcome (nodes/policy/learned_adequacy.py).
    """

    right: float = 0
    wrong: float = 0

    @property
    def n(self) -> float:
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
