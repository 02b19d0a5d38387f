"""Per-call sub-deadlines: how long one call may take, from the time left and its provider's observed latency.

Without them a hung provider took the request's whole share (54 s of a 90 s deadline) and the cross-check
waited out its adapter's 30 s timeout. A call gets ``p95_multiple`` x its provider's robust p95 (median +
k x MAD of successful calls, so a hang cannot inflate it), at least ``min_s``, ``cold_s`` while there are too
few samples, only its usual latency while it is suspect (its last call failed), and never more than the time
left allows.
"""

from __future__ import annotations

from providers.config import ResilienceSettings
from providers.registry import ProviderRegistry
from providers.resilience.breaker import LatencyView


def cold_floor_of(registry: ProviderRegistry, name: str) -> float:
    """Return the cold limit a provider known to be slow gets: ``p95_multiple`` x its own ``hedge_after_s``
    (the local model's 15 s gives 45 s), so a CPU model is not cut off at a cloud provider's ``cold_s``."""
    if name not in registry.names():
        return 0.0
    hedge_after = registry.provider_settings(name).hedge_after_s
    return 0.0 if hedge_after is None else hedge_after * registry.settings.resilience.deadlines.p95_multiple


def own_limit_s(latency: LatencyView, settings: ResilienceSettings, *, cold_floor_s: float = 0.0) -> float:
    """Return how long a call to this provider may take on its own account (ignoring the request's deadline).

    ``cold_floor_s`` raises the cold limit for a provider known to be slow (the local model's ``hedge_after_s``).
    """
    d = settings.deadlines
    warm = latency.robust_p95_s is not None and latency.samples >= d.min_samples
    if latency.suspect:
        # Its last call failed: a short leash (its usual latency, at least min_s), so that when hedging is out of
        # budget a provider that has started hanging costs each request seconds, not cold_s or a p95 multiple.
        return max(d.min_s, latency.robust_p95_s or 0.0) if warm else max(d.min_s, cold_floor_s)
    if not warm:
        return max(d.cold_s, cold_floor_s)
    assert latency.robust_p95_s is not None
    return max(d.min_s, d.p95_multiple * latency.robust_p95_s)


def call_deadline_s(
    remaining_s: float,
    fallbacks_left: bool,
    latency: LatencyView,
    settings: ResilienceSettings,
    *,
    cold_floor_s: float = 0.0,
) -> float:
    """Return one answer call's timeout: its share of the time left, and with fallbacks left no more than its
    provider's own limit (the last provider of the chain keeps the whole share: nothing comes after it)."""
    share = remaining_s * settings.retry.attempt_share if fallbacks_left else remaining_s
    if not fallbacks_left:
        return share
    return min(share, own_limit_s(latency, settings, cold_floor_s=cold_floor_s))


def cross_check_deadline_s(
    remaining_s: float,
    latency: LatencyView,
    settings: ResilienceSettings,
    *,
    cold_floor_s: float = 0.0,
    answer_s: float | None = None,
    held_s: float = 0.0,
) -> float:
    """Return the cross-check call's timeout: its provider's own limit, within its share of the time left, and
    within what a check may hold the answer back (:func:`check_allowance_s`) less what earlier checks of the same
    answer took (``held_s``); never below zero (nothing left: the answer is served unchecked).
    """
    d = settings.deadlines
    bound = min(remaining_s * d.cross_check_share, own_limit_s(latency, settings, cold_floor_s=cold_floor_s))
    return bound if answer_s is None else max(0.0, min(bound, check_allowance_s(latency, settings, answer_s) - held_s))


def check_allowance_s(latency: LatencyView, settings: ResilienceSettings, answer_s: float) -> float:
    """Return how long the checks of an answer that took ``answer_s`` may hold it back, all together:
    ``cross_check_answer_ratio`` x ``answer_s``, at least the checker's usual latency (its robust p95; ``min_s``
    before it has enough samples), so a check that goes as usual is not cut off.

    This is what keeps a second opinion from holding a fast answer back: 25% of a 90 s deadline is 22 s, and a
    failover answer ready in half a second waited another 1-3 s for the serialised local model's queue. Then a
    check could double the time to the answer; on a hung primary that put the p95 past a second (bench/chaos.py),
    so a check now adds at most half again (an answer that took 6 s affords a 3 s check).
    """
    d = settings.deadlines
    warm = latency.robust_p95_s is not None and latency.samples >= d.min_samples
    usual = latency.robust_p95_s if warm and latency.robust_p95_s is not None else d.min_s
    return max(usual, d.cross_check_answer_ratio * answer_s)


def expected_s(latency: LatencyView, default_s: float) -> float:
    """Return what a call to the provider usually takes: its median, or ``default_s`` before any sample."""
    return latency.median_s if latency.median_s is not None else default_s
