"""The breakers of all providers, over one store: this process's, or Redis shared by every process."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from providers.resilience.breaker import CircuitBreaker, HealthSnapshot
from providers.resilience.breaker_store import BreakerPolicy, BreakerStore, MemoryBreakerStore, RedisBreakerStore
from providers.resilience.cooldown import Cooldowns
from providers.resilience.stall import StallWatch

if TYPE_CHECKING:
    from providers.config import Settings

log = logging.getLogger(__name__)


# Outcomes that do not count against a provider's health: the request was at fault, the provider was never
# asked, the call was stopped by us, not by the provider, or (overloaded) the local model's queue was full.
NEUTRAL_ERRORS = frozenset(
    {"bad_request", "context_too_long", "content_blocked", "unavailable", "cancelled", "overloaded"}
)


class HealthBoard:
    """The breakers of all providers, over one store (this process's, or Redis shared by all processes)."""

    def __init__(
        self,
        policy: BreakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        store: BreakerStore | None = None,
        stalls: StallWatch | None = None,
        cooldowns: Cooldowns | None = None,
    ) -> None:
        self.policy = policy or BreakerPolicy()
        # This process's calls in flight (a silent provider is seen before any call fails): never shared.
        self.stalls = stalls or StallWatch()
        # Providers that answered 429 are left out of new work for as long as they asked (cooldown.py).
        self.cooldowns = cooldowns or Cooldowns(clock, max_s=self.policy.open_s)
        self._clock = clock
        self.store: BreakerStore = store or MemoryBreakerStore(self.policy)
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float] | None = None) -> HealthBoard:
        """Build the board from configuration: Redis-backed when ``redis_url`` is set, in-process otherwise."""
        b = settings.resilience.breaker
        policy = BreakerPolicy(
            failure_threshold=b.failure_threshold,
            failure_rate=b.failure_rate,
            window_s=b.window_s,
            min_calls=b.min_calls,
            open_s=b.open_s,
            probe_timeout_s=b.probe_timeout_s,
            latency_samples=b.latency_samples,
        )
        if settings.redis_url:
            import redis

            try:
                store = RedisBreakerStore.from_url(settings.redis_url, policy)
            except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
                # A cluster client reads the topology when it is built; an unreachable cluster must not stop start-up.
                log.warning("circuit breaker store unreachable (%s): circuits are per process", exc)
            else:
                # Processes share the circuit, so its times must be comparable across them: wall clock.
                return cls(policy, clock or time.time, store)
        return cls(policy, clock or time.monotonic)

    def breaker(self, provider: str) -> CircuitBreaker:
        with self._lock:
            if provider not in self._breakers:
                self._breakers[provider] = CircuitBreaker(provider, self.policy, self._clock, self.store)
            return self._breakers[provider]

    def record(
        self,
        provider: str,
        *,
        ok: bool,
        latency_ms: float,
        error_class: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        """Count one call's outcome; a rate limit (429) counts toward a cooldown instead of as a failure."""
        if not ok and error_class == "rate_limited":
            self.cooldowns.limited(provider, retry_after_s)
            return
        if ok:
            self.cooldowns.answered(provider)
        if not ok and error_class in NEUTRAL_ERRORS:
            return
        self.breaker(provider).record(ok, latency_ms)

    def reset(self, providers: list[str]) -> list[str]:
        """Close the providers' circuits and end their rate-limit cooldowns (an operator says they are back)."""
        for name in providers:
            self.breaker(name).reset()
            self.cooldowns.clear(name)
        return providers

    def reset_all(self) -> int:
        with self._lock:
            names = list(self._breakers)
        return len(self.reset(names))

    def snapshots(self) -> dict[str, HealthSnapshot]:
        with self._lock:
            breakers = dict(self._breakers)
        return {name: b.snapshot() for name, b in breakers.items()}
