"""Provider health: a circuit breaker per provider plus recent latency and error statistics.

The breaker is written here rather than taken from pybreaker because pybreaker wraps a call (``breaker.call``)
and counts every exception as a failure, while our attempts never raise (they return an outcome that the graph
records) and only some outcomes say anything about the provider's health (a bad request does not). The clock
is injected so tests drive the transitions without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

CircuitState = Literal["closed", "open", "half_open"]

# Outcomes that do not count against a provider's health: the request was at fault, or the provider was never
# asked.
NEUTRAL_ERRORS = frozenset({"bad_request", "context_too_long", "content_blocked", "unavailable", "cancelled"})


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = 5  # consecutive failures that open the circuit
    failure_rate: float = 0.5  # or this share of failures ...
    window_s: float = 60.0  # ... among the calls of this window
    min_calls: int = 10  # once the window holds at least this many calls
    open_s: float = 30.0  # how long an open circuit rejects before a half-open probe


@dataclass(frozen=True)
class HealthSnapshot:
    provider: str
    state: CircuitState
    calls: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    opened_at: float | None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class CircuitBreaker:
    """Closed -> open after too many failures -> half-open after ``open_s`` -> closed on a successful probe."""

    def __init__(self, provider: str, policy: BreakerPolicy, clock: Callable[[], float]) -> None:
        self.provider = provider
        self.policy = policy
        self._clock = clock
        self._state: CircuitState = "closed"
        self._opened_at: float | None = None
        self._consecutive = 0
        self._probe_in_flight = False
        self._calls: deque[tuple[float, bool, float]] = deque()  # (when, ok, latency_ms)
        self._lock = threading.Lock()

    def _trim(self, now: float) -> None:
        while self._calls and now - self._calls[0][0] > self.policy.window_s:
            self._calls.popleft()

    def state(self) -> CircuitState:
        with self._lock:
            return self._current_state(self._clock())

    def _current_state(self, now: float) -> CircuitState:
        if self._state == "open" and self._opened_at is not None and now - self._opened_at >= self.policy.open_s:
            self._state = "half_open"
            self._probe_in_flight = False
        return self._state

    def allow(self) -> bool:
        """Say whether a call may go out now; in half-open, exactly one probe is let through."""
        with self._lock:
            state = self._current_state(self._clock())
            if state == "closed":
                return True
            if state == "half_open" and not self._probe_in_flight:
                self._probe_in_flight = True
                return True
            return False

    def record(self, ok: bool, latency_ms: float) -> None:
        with self._lock:
            now = self._clock()
            self._trim(now)
            self._calls.append((now, ok, latency_ms))
            state = self._current_state(now)
            if ok:
                self._consecutive = 0
                if state == "half_open":
                    self._state, self._opened_at, self._probe_in_flight = "closed", None, False
                return
            self._consecutive += 1
            if state == "half_open":
                self._open(now)
                return
            failures = sum(1 for _, good, _ in self._calls if not good)
            too_many_in_a_row = self._consecutive >= self.policy.failure_threshold
            too_high_a_rate = (
                len(self._calls) >= self.policy.min_calls and failures / len(self._calls) >= self.policy.failure_rate
            )
            if state == "closed" and (too_many_in_a_row or too_high_a_rate):
                self._open(now)

    def _open(self, now: float) -> None:
        self._state, self._opened_at, self._probe_in_flight = "open", now, False

    def reset(self) -> None:
        with self._lock:
            self._state, self._opened_at, self._consecutive, self._probe_in_flight = "closed", None, 0, False
            self._calls.clear()

    def snapshot(self) -> HealthSnapshot:
        with self._lock:
            now = self._clock()
            self._trim(now)
            calls = list(self._calls)
            latencies = [lat for _, good, lat in calls if good]
            failures = sum(1 for _, good, _ in calls if not good)
            return HealthSnapshot(
                provider=self.provider,
                state=self._current_state(now),
                calls=len(calls),
                error_rate=failures / len(calls) if calls else 0.0,
                p50_ms=_percentile(latencies, 0.50),
                p95_ms=_percentile(latencies, 0.95),
                opened_at=self._opened_at,
            )


class HealthBoard:
    """The breakers of all providers of one process."""

    def __init__(self, policy: BreakerPolicy | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def breaker(self, provider: str) -> CircuitBreaker:
        with self._lock:
            if provider not in self._breakers:
                self._breakers[provider] = CircuitBreaker(provider, self.policy, self._clock)
            return self._breakers[provider]

    def record(self, provider: str, *, ok: bool, latency_ms: float, error_class: str | None = None) -> None:
        if not ok and error_class in NEUTRAL_ERRORS:
            return
        self.breaker(provider).record(ok, latency_ms)

    def reset_all(self) -> int:
        with self._lock:
            breakers = list(self._breakers.values())
        for breaker in breakers:
            breaker.reset()
        return len(breakers)

    def snapshots(self) -> dict[str, HealthSnapshot]:
        with self._lock:
            breakers = dict(self._breakers)
        return {name: b.snapshot() for name, b in breakers.items()}
