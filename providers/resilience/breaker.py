"""Provider health: a circuit breaker per provider, recent error and latency statistics, and the hedge budget.

Why not pybreaker (1.4.1 is installed, and it has a Redis storage): its ``call`` holds the breaker's lock for
the whole guarded call, so the concurrent calls of one process to a provider would run one at a time; it wraps a
call and counts every exception, while our attempts never raise and only some outcomes say anything about the
provider (a bad request does not); it opens on consecutive failures only, not on a failure rate over a window;
it reads ``datetime.now()`` directly, so tests would have to patch time instead of passing a clock; its Redis
storage updates state, counters and ``opened_at`` (to the whole second) with separate commands, and half-open
lets one call per process through rather than one probe for the deployment. The state machine here is small,
takes an injected clock, and runs on two stores: in-process (:class:`MemoryBreakerStore`) and Redis
(:class:`RedisBreakerStore`), so every process of a deployment sees the same circuits when ``REDIS_URL`` is set.

States: *closed* -> *open* after ``failure_threshold`` consecutive failures, or a failure share of at least
``failure_rate`` among at least ``min_calls`` calls of the window -> *half-open* once ``open_s`` has passed (a
derived state: nothing is written when it begins) -> exactly one probe is let through -> *closed* on its
success (window cleared), *open* again on its failure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from providers.resilience.breaker_store import (
    BreakerPolicy,
    BreakerStore,
    BreakerView,
    MemoryBreakerStore,
    StoredState,
)

if TYPE_CHECKING:
    from providers.config import Settings

CircuitState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class HedgeTiming:
    hedge_after_s: float  # start a hedge when a call has not answered by then
    slow_after_s: float  # past this a call is slower than the provider usually is (its p95); inf: not known yet
    probing: bool  # the circuit is half-open: the call is (or competes to be) the probe


@dataclass(frozen=True)
class LatencyView:
    """What one read of a provider's recent calls says about the next one (seconds; None without samples)."""

    median_s: float | None
    robust_p95_s: float | None  # median + k x scaled MAD of successful latencies
    samples: int
    suspect: bool  # its last call failed
    state: CircuitState


@dataclass(frozen=True)
class HealthSnapshot:
    provider: str
    state: CircuitState
    calls: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    opened_at: float | None
    p99_ms: float | None = None
    consecutive_failures: int = 0
    retries: int = 0
    latency_samples: int = 0
    probe_in_s: float | None = None  # open circuit: seconds until the half-open probe is allowed


def percentile(values: list[float] | tuple[float, ...], q: float) -> float | None:
    """Return the nearest-rank percentile ``q`` (0..1) of ``values``, or None when there are none."""
    return _nearest_rank(sorted(values), q)


def _nearest_rank(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def robust_threshold_ms(latencies: list[float] | tuple[float, ...], k: float) -> float | None:
    """Return median + ``k`` x the scaled median absolute deviation of ``latencies`` (ms), or None without any.

    Why not the p95: a few slow answers (a provider stalling for seconds, then answering) move the p95 to them,
    and a threshold that follows them stops hedging exactly when it is needed. The median and the MAD ignore up
    to half the samples being outliers. 1.4826 scales the MAD to a standard deviation for normal latencies.
    """
    return _robust_of_sorted(sorted(latencies), k)


def _robust_of_sorted(ordered: list[float], k: float) -> float | None:
    # Takes the latencies sorted, so that a caller which also wants their percentiles sorts them once (every
    # provider call reads these, over up to latency_samples values).
    if not ordered:
        return None
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    deviations = sorted([abs(v - median) for v in ordered])
    mad = deviations[n // 2] if n % 2 else (deviations[n // 2 - 1] + deviations[n // 2]) / 2
    return median + k * 1.4826 * mad


def hedge_delay_s(
    settings: Settings, p_ms: float | None, samples: int, *, suspect: bool = False, default_s: float | None = None
) -> float:
    """Return how long an attempt may run before a hedge starts: the observed quantile, floored, or the default
    (the provider's ``hedge_after_s``, else ``[resilience.hedge] default_after_s``) before enough samples.

    A *suspect* provider (its last call failed: consecutive failures > 0, which includes a half-open probe) is
    hedged at the floor: when a provider starts hanging, the calls after the first overtaken one should not each
    wait a full p95 before the next provider is asked. The budget still caps what that costs.
    """
    hedge = settings.resilience.hedge
    if suspect:
        return hedge.min_after_s
    if p_ms is None or samples < hedge.min_samples:
        return default_s if default_s is not None else hedge.default_after_s
    return min(hedge.max_after_s, max(hedge.min_after_s, p_ms / 1000))


# --- the breaker ---------------------------------------------------------------------------------------------


class CircuitBreaker:
    """The state machine of one provider's circuit over a store; the clock is injected so tests need no sleep."""

    def __init__(
        self, provider: str, policy: BreakerPolicy, clock: Callable[[], float], store: BreakerStore | None = None
    ) -> None:
        self.provider = provider
        self.policy = policy
        self._clock = clock
        self._store: BreakerStore = store or MemoryBreakerStore(policy)

    def _effective(self, stored: StoredState, opened_at: float | None, now: float) -> CircuitState:
        if stored == "open" and opened_at is not None and now - opened_at >= self.policy.open_s:
            return "half_open"
        return stored

    def state(self) -> CircuitState:
        stored, opened_at = self._store.read_state(self.provider)
        return self._effective(stored, opened_at, self._clock())

    def allow(self) -> bool:
        """Say whether a call may go out now; in half-open exactly one probe (across processes) gets through."""
        now = self._clock()
        stored, opened_at = self._store.read_state(self.provider)
        state = self._effective(stored, opened_at, now)
        if state == "closed":
            return True
        if state == "open":
            return False
        return self._store.claim_probe(self.provider, now, self.policy.probe_timeout_s)

    def record(self, ok: bool, latency_ms: float) -> CircuitState:
        """Count one call's outcome and make the transition it causes; return the state after it."""
        now = self._clock()
        view = self._store.add(self.provider, now, ok=ok, latency_ms=latency_ms)
        state = self._effective(view.state, view.opened_at, now)
        if state == "half_open":
            # The probe's verdict (or the first call to finish after open_s, which says as much).
            if self._store.transition(self.provider, expect_opened_at=view.opened_at, open_at=None if ok else now):
                return "closed" if ok else "open"
        elif (
            state == "closed"
            and not ok
            and self._trips(view)
            and self._store.transition(self.provider, expect_opened_at=None, open_at=now)
        ):
            return "open"
        # An open circuit ignores calls that were already in flight when it opened.
        return state

    def _trips(self, view: BreakerView) -> bool:
        calls = view.ok + view.failed
        too_many_in_a_row = view.consecutive >= self.policy.failure_threshold
        too_high_a_rate = calls >= self.policy.min_calls and view.failed / calls >= self.policy.failure_rate
        return too_many_in_a_row or too_high_a_rate

    def note_retry(self) -> None:
        self._store.add_retry(self.provider, self._clock())

    def retry_allowed(self, budget_ratio: float) -> bool:
        """Say whether a same-provider retry fits the retry budget: retries in the window < ratio x successes.

        There is no floor: a provider earns retries by answering. One with no recent success (a cold process,
        a provider that only fails) gets none, because then moving on is the better bet than asking again, and
        retries must not multiply the load on a provider in trouble.
        """
        view = self._store.view(self.provider, self._clock())
        return view.retries < budget_ratio * view.ok

    def latency_quantile(self, q: float) -> tuple[float | None, int]:
        """Return the ``q`` quantile of recent successful latencies (ms) and how many samples it rests on."""
        view = self._store.view(self.provider, self._clock())
        return percentile(view.latencies, q), len(view.latencies)

    def hedge_timing(self, settings: Settings) -> HedgeTiming:
        """Return when a call to this provider gets a hedge and when it is slow for this provider (one read)."""
        now = self._clock()
        view = self._store.view(self.provider, now)
        return self._hedge_timing(
            settings, view, now, robust_threshold_ms(view.latencies, settings.resilience.hedge.mad_k)
        )

    def _hedge_timing(self, settings: Settings, view: BreakerView, now: float, p_ms: float | None) -> HedgeTiming:
        ps = settings.providers.get(self.provider)
        default_s = ps.hedge_after_s if ps is not None else None
        samples = len(view.latencies)
        known = p_ms is not None and samples >= settings.resilience.hedge.min_samples
        return HedgeTiming(
            hedge_after_s=hedge_delay_s(settings, p_ms, samples, suspect=view.consecutive > 0, default_s=default_s),
            # Before enough samples the provider's usual latency is unknown, and the cold hedge delay is a guess
            # made short on purpose: a slow but healthy provider must not be called slow (and its losers aborted
            # and counted as timeouts, until its circuit opened) on that guess alone.
            slow_after_s=hedge_delay_s(settings, p_ms, samples, default_s=default_s) if known else math.inf,
            probing=self._effective(view.state, view.opened_at, now) == "half_open",
        )

    def latency_view(self, mad_k: float) -> LatencyView:
        """Return the provider's typical and robust-high latency and whether it is suspect (one store read)."""
        now = self._clock()
        view = self._store.view(self.provider, now)
        ordered = sorted(view.latencies)
        return self._latency_view(view, now, ordered, _robust_of_sorted(ordered, mad_k))

    def _latency_view(self, view: BreakerView, now: float, ordered: list[float], robust: float | None) -> LatencyView:
        median = _nearest_rank(ordered, 0.5)
        return LatencyView(
            median_s=None if median is None else median / 1000,
            robust_p95_s=None if robust is None else robust / 1000,
            samples=len(view.latencies),
            suspect=view.consecutive > 0,
            state=self._effective(view.state, view.opened_at, now),
        )

    def latency_and_timing(self, settings: Settings) -> tuple[LatencyView, HedgeTiming]:
        """Return :meth:`latency_view` and :meth:`hedge_timing` from one store read (one Redis round trip, one
        sort): a call needs both as it starts."""
        now = self._clock()
        view = self._store.view(self.provider, now)
        ordered = sorted(view.latencies)
        robust = _robust_of_sorted(ordered, settings.resilience.hedge.mad_k)
        return self._latency_view(view, now, ordered, robust), self._hedge_timing(settings, view, now, robust)

    def reset(self) -> None:
        self._store.reset(self.provider)

    def snapshot(self) -> HealthSnapshot:
        now = self._clock()
        view = self._store.view(self.provider, now)
        state = self._effective(view.state, view.opened_at, now)
        calls = view.ok + view.failed
        probe_in = None
        ordered = sorted(view.latencies)
        if state == "open" and view.opened_at is not None:
            probe_in = round(max(0.0, view.opened_at + self.policy.open_s - now), 3)
        return HealthSnapshot(
            provider=self.provider,
            state=state,
            calls=calls,
            error_rate=view.failed / calls if calls else 0.0,
            p50_ms=_nearest_rank(ordered, 0.50),
            p95_ms=_nearest_rank(ordered, 0.95),
            p99_ms=_nearest_rank(ordered, 0.99),
            opened_at=view.opened_at,
            consecutive_failures=view.consecutive,
            retries=view.retries,
            latency_samples=len(view.latencies),
            probe_in_s=probe_in,
        )
