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

import datetime as dt
import hmac
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from providers.config import Settings
    from providers.registry import ProviderRegistry

log = logging.getLogger(__name__)

CircuitState = Literal["closed", "open", "half_open"]
StoredState = Literal["closed", "open"]

# Outcomes that do not count against a provider's health: the request was at fault, the provider was never
# asked, or (a hedge overtaken by the primary) the call was stopped by us, not by the provider.
NEUTRAL_ERRORS = frozenset({"bad_request", "context_too_long", "content_blocked", "unavailable", "cancelled"})


@dataclass(frozen=True)
class BreakerPolicy:
    """The breaker's thresholds. A registry takes them from ``[resilience.breaker]`` (8 in a row, or half of at
    least 20 calls); these defaults, the original 5 and 10, only serve boards built directly (tests)."""

    failure_threshold: int = 5  # consecutive failures that open the circuit
    failure_rate: float = 0.5  # or this share of failures ...
    window_s: float = 60.0  # ... among the calls of this window
    min_calls: int = 10  # once the window holds at least this many calls
    open_s: float = 30.0  # how long an open circuit rejects before a half-open probe
    probe_timeout_s: float = 60.0  # a probe that never reports back (its process died) frees the slot after this
    latency_samples: int = 200  # recent successful latencies kept for percentiles (and hedge delays)
    buckets: int = 10  # the window is counted in this many time buckets (constant memory, Redis-friendly)

    @property
    def bucket_s(self) -> float:
        return self.window_s / self.buckets


@dataclass(frozen=True)
class BreakerView:
    """What a store holds for one provider: the stored state and the window's counts."""

    state: StoredState = "closed"
    opened_at: float | None = None
    consecutive: int = 0
    ok: int = 0
    failed: int = 0
    retries: int = 0
    latencies: tuple[float, ...] = ()


@dataclass(frozen=True)
class HedgeTiming:
    hedge_after_s: float  # start a hedge when a call has not answered by then
    slow_after_s: float  # past this a call is slower than the provider usually is (its p95)
    probing: bool  # the circuit is half-open: the call is (or competes to be) the probe


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
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --- stores --------------------------------------------------------------------------------------------------


class BreakerStore(Protocol):
    """Where breaker state lives. Every method is one short, atomic operation on one provider."""

    name: str

    def read_state(self, provider: str) -> tuple[StoredState, float | None]: ...

    def view(self, provider: str, now: float) -> BreakerView: ...

    def add(self, provider: str, now: float, *, ok: bool, latency_ms: float) -> BreakerView: ...

    def add_retry(self, provider: str, now: float) -> None: ...

    def transition(self, provider: str, *, expect_opened_at: float | None, open_at: float | None) -> bool:
        """Open (``open_at``) or close (None) the circuit if it is still as the caller saw it; clear the probe.

        Closing also clears the window and the consecutive count: a recovered provider starts afresh.
        """
        ...

    def claim_probe(self, provider: str, now: float, ttl_s: float) -> bool: ...

    def reset(self, provider: str) -> None: ...


@dataclass
class _Record:
    state: StoredState = "closed"
    opened_at: float | None = None
    consecutive: int = 0
    buckets: dict[int, list[int]] = field(default_factory=dict)  # bucket -> [ok, failed, retries]
    latencies: deque[float] = field(default_factory=deque)
    probe_until: float | None = None


class MemoryBreakerStore:
    """Breaker state of this process only."""

    name = "memory"

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def _record(self, provider: str) -> _Record:
        record = self._records.get(provider)
        if record is None:
            record = self._records[provider] = _Record(latencies=deque(maxlen=self.policy.latency_samples))
        return record

    def _view(self, record: _Record, now: float) -> BreakerView:
        current = int(now // self.policy.bucket_s)
        for stale in [b for b in record.buckets if b <= current - self.policy.buckets]:
            del record.buckets[stale]
        ok, failed, retries = (sum(c[i] for c in record.buckets.values()) for i in range(3))
        return BreakerView(
            state=record.state,
            opened_at=record.opened_at,
            consecutive=record.consecutive,
            ok=ok,
            failed=failed,
            retries=retries,
            latencies=tuple(record.latencies),
        )

    def read_state(self, provider: str) -> tuple[StoredState, float | None]:
        with self._lock:
            record = self._records.get(provider)
            return (record.state, record.opened_at) if record else ("closed", None)

    def view(self, provider: str, now: float) -> BreakerView:
        with self._lock:
            return self._view(self._record(provider), now)

    def add(self, provider: str, now: float, *, ok: bool, latency_ms: float) -> BreakerView:
        with self._lock:
            record = self._record(provider)
            counts = record.buckets.setdefault(int(now // self.policy.bucket_s), [0, 0, 0])
            counts[0 if ok else 1] += 1
            if ok:
                record.consecutive = 0
                record.latencies.append(latency_ms)
            else:
                record.consecutive += 1
            return self._view(record, now)

    def add_retry(self, provider: str, now: float) -> None:
        with self._lock:
            self._record(provider).buckets.setdefault(int(now // self.policy.bucket_s), [0, 0, 0])[2] += 1

    def transition(self, provider: str, *, expect_opened_at: float | None, open_at: float | None) -> bool:
        with self._lock:
            record = self._record(provider)
            if record.opened_at != expect_opened_at:
                return False
            if open_at is None:
                record.state, record.opened_at, record.consecutive = "closed", None, 0
                record.buckets.clear()
            else:
                record.state, record.opened_at = "open", open_at
            record.probe_until = None
            return True

    def claim_probe(self, provider: str, now: float, ttl_s: float) -> bool:
        with self._lock:
            record = self._record(provider)
            if record.probe_until is not None and now < record.probe_until:
                return False
            record.probe_until = now + ttl_s
            return True

    def reset(self, provider: str) -> None:
        with self._lock:
            record = self._record(provider)
            record.state, record.opened_at, record.consecutive, record.probe_until = "closed", None, 0, None
            record.buckets.clear()


# Open or close only if the circuit is still as the caller saw it (compare-and-set on opened_at), so two processes
# that see the same failure do not both reopen the circuit with different times.
_TRANSITION_LUA = """
local current = redis.call('HGET', KEYS[1], 'opened_at') or ''
if current ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'consecutive', 0)
  redis.call('HDEL', KEYS[1], 'opened_at')
  redis.call('DEL', KEYS[2])
else
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', ARGV[2])
end
redis.call('DEL', KEYS[3])
return 1
"""


class RedisBreakerStore:
    """Breaker state shared by every process through Redis, falling back to this process's state when it fails.

    Keys per provider (the ``{provider}`` hash tag keeps them in one Redis Cluster slot, which the transition
    script needs): ``...:state`` hash (state, opened_at, consecutive), ``...:win`` hash of per-bucket counters
    (HINCRBY, so concurrent processes never lose an update), ``...:lat`` list of recent latencies, ``...:probe``
    (SET NX PX: one probe across all processes). Every operation is one round trip, two when a circuit changes.

    When Redis does not answer, the breaker must not take the analysis down with it: operations fall back to an
    in-process store for ``retry_s`` before Redis is tried again (circuits are then per process, as without Redis).
    """

    name = "redis"

    def __init__(
        self,
        client: Any,
        policy: BreakerPolicy,
        *,
        prefix: str = "strategist:breaker",
        retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._client = client
        self._prefix = prefix
        self._fallback = MemoryBreakerStore(policy)
        self._retry_s = retry_s
        self._clock = clock
        self._down_until = 0.0
        self._transition = client.register_script(_TRANSITION_LUA)
        self._ttl_ms = int(max(policy.window_s, policy.open_s) * 2 * 1000)

    @classmethod
    def from_url(cls, url: str, policy: BreakerPolicy) -> RedisBreakerStore:
        """Connect lazily to ``url`` (``redis+cluster://`` for a cluster), with short timeouts."""
        import redis
        import redis.cluster

        # Breaker calls sit on every request's path: a stalled Redis must cost milliseconds, not seconds.
        options: dict[str, Any] = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25, "decode_responses": True}
        scheme, sep, rest = url.partition("://")
        if sep and scheme.endswith("+cluster"):
            client: Any = redis.cluster.RedisCluster.from_url(f"{scheme.removesuffix('+cluster')}://{rest}", **options)
        else:
            client = redis.Redis.from_url(url, **options)
        return cls(client, policy)

    def _keys(self, provider: str) -> tuple[str, str, str, str]:
        base = f"{self._prefix}:{{{provider}}}"
        return f"{base}:state", f"{base}:win", f"{base}:lat", f"{base}:probe"

    def _guard(self, redis_op: Callable[[], Any], fallback_op: Callable[[], Any]) -> Any:
        import redis

        if self._clock() < self._down_until:
            return fallback_op()
        try:
            return redis_op()
        except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
            log.warning("circuit breaker store unreachable (%s); using in-process state for %.0fs", exc, self._retry_s)
            self._down_until = self._clock() + self._retry_s
            return fallback_op()

    def _parse(self, state: list[Any], window: dict[str, str], latencies: list[str], now: float) -> BreakerView:
        current = int(now // self.policy.bucket_s)
        counts = [0, 0, 0]
        for name, value in window.items():
            bucket, _, kind = name.partition(":")
            if int(bucket) > current - self.policy.buckets and kind in ("ok", "fail", "retry"):
                counts[("ok", "fail", "retry").index(kind)] += int(value)
        return BreakerView(
            state="open" if state[0] == "open" else "closed",
            opened_at=float(state[1]) if state[1] else None,
            consecutive=int(state[2] or 0),
            ok=counts[0],
            failed=counts[1],
            retries=counts[2],
            latencies=tuple(float(v) for v in reversed(latencies)),
        )

    def _read(self, pipe: Any, provider: str) -> None:
        state, win, lat, _ = self._keys(provider)
        pipe.hmget(state, "state", "opened_at", "consecutive")
        pipe.hgetall(win)
        pipe.lrange(lat, 0, -1)

    def read_state(self, provider: str) -> tuple[StoredState, float | None]:
        def op() -> tuple[StoredState, float | None]:
            state, opened_at = self._client.hmget(self._keys(provider)[0], "state", "opened_at")
            return ("open" if state == "open" else "closed"), (float(opened_at) if opened_at else None)

        return self._guard(op, lambda: self._fallback.read_state(provider))

    def view(self, provider: str, now: float) -> BreakerView:
        def op() -> BreakerView:
            pipe = self._client.pipeline(transaction=False)
            self._read(pipe, provider)
            state, window, latencies = pipe.execute()
            return self._parse(state, window, latencies, now)

        return self._guard(op, lambda: self._fallback.view(provider, now))

    def add(self, provider: str, now: float, *, ok: bool, latency_ms: float) -> BreakerView:
        state, win, lat, _ = self._keys(provider)
        bucket = int(now // self.policy.bucket_s)

        def op() -> BreakerView:
            pipe = self._client.pipeline(transaction=True)
            pipe.hincrby(win, f"{bucket}:{'ok' if ok else 'fail'}", 1)
            pipe.pexpire(win, self._ttl_ms)
            if ok:
                pipe.hset(state, "consecutive", 0)
                pipe.lpush(lat, f"{latency_ms:.1f}")
                pipe.ltrim(lat, 0, self.policy.latency_samples - 1)
            else:
                pipe.hincrby(state, "consecutive", 1)
            self._read(pipe, provider)
            results = pipe.execute()
            window: dict[str, str] = results[-2]
            stale = [name for name in window if int(name.partition(":")[0]) <= bucket - self.policy.buckets]
            if stale:  # once per bucket change: keep the hash at about 3 x buckets fields
                self._client.hdel(win, *stale)
            return self._parse(results[-3], results[-2], results[-1], now)

        return self._guard(op, lambda: self._fallback.add(provider, now, ok=ok, latency_ms=latency_ms))

    def add_retry(self, provider: str, now: float) -> None:
        win = self._keys(provider)[1]
        bucket = int(now // self.policy.bucket_s)
        self._guard(
            lambda: self._client.hincrby(win, f"{bucket}:retry", 1), lambda: self._fallback.add_retry(provider, now)
        )

    def transition(self, provider: str, *, expect_opened_at: float | None, open_at: float | None) -> bool:
        state, win, _, probe = self._keys(provider)
        expect = "" if expect_opened_at is None else repr(expect_opened_at)
        new = "" if open_at is None else repr(open_at)
        return bool(
            self._guard(
                lambda: self._transition(keys=[state, win, probe], args=[expect, new]),
                lambda: self._fallback.transition(provider, expect_opened_at=expect_opened_at, open_at=open_at),
            )
        )

    def claim_probe(self, provider: str, now: float, ttl_s: float) -> bool:
        probe = self._keys(provider)[3]
        return bool(
            self._guard(
                lambda: self._client.set(probe, repr(now), nx=True, px=max(1, int(ttl_s * 1000))),
                lambda: self._fallback.claim_probe(provider, now, ttl_s),
            )
        )

    def reset(self, provider: str) -> None:
        state, win, _, probe = self._keys(provider)
        # Latency samples stay: they describe the provider, not the incident, and hedging needs them.
        self._guard(lambda: self._client.delete(state, win, probe), lambda: self._fallback.reset(provider))
        self._fallback.reset(provider)


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
        p_ms = percentile(view.latencies, settings.resilience.hedge.quantile)
        ps = settings.providers.get(self.provider)
        default_s = ps.hedge_after_s if ps is not None else None
        samples = len(view.latencies)
        return HedgeTiming(
            hedge_after_s=hedge_delay_s(settings, p_ms, samples, suspect=view.consecutive > 0, default_s=default_s),
            slow_after_s=hedge_delay_s(settings, p_ms, samples, default_s=default_s),
            probing=self._effective(view.state, view.opened_at, now) == "half_open",
        )

    def reset(self) -> None:
        self._store.reset(self.provider)

    def snapshot(self) -> HealthSnapshot:
        now = self._clock()
        view = self._store.view(self.provider, now)
        state = self._effective(view.state, view.opened_at, now)
        calls = view.ok + view.failed
        probe_in = None
        if state == "open" and view.opened_at is not None:
            probe_in = round(max(0.0, view.opened_at + self.policy.open_s - now), 3)
        return HealthSnapshot(
            provider=self.provider,
            state=state,
            calls=calls,
            error_rate=view.failed / calls if calls else 0.0,
            p50_ms=percentile(view.latencies, 0.50),
            p95_ms=percentile(view.latencies, 0.95),
            p99_ms=percentile(view.latencies, 0.99),
            opened_at=view.opened_at,
            consecutive_failures=view.consecutive,
            retries=view.retries,
            latency_samples=len(view.latencies),
            probe_in_s=probe_in,
        )


class HealthBoard:
    """The breakers of all providers, over one store (this process's, or Redis shared by all processes)."""

    def __init__(
        self,
        policy: BreakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        store: BreakerStore | None = None,
    ) -> None:
        self.policy = policy or BreakerPolicy()
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

    def record(self, provider: str, *, ok: bool, latency_ms: float, error_class: str | None = None) -> None:
        if not ok and error_class in NEUTRAL_ERRORS:
            return
        self.breaker(provider).record(ok, latency_ms)

    def reset(self, providers: list[str]) -> list[str]:
        for name in providers:
            self.breaker(name).reset()
        return providers

    def reset_all(self) -> int:
        with self._lock:
            names = list(self._breakers)
        return len(self.reset(names))

    def snapshots(self) -> dict[str, HealthSnapshot]:
        with self._lock:
            breakers = dict(self._breakers)
        return {name: b.snapshot() for name, b in breakers.items()}


# --- the hedge budget ----------------------------------------------------------------------------------------


class HedgeBudget:
    """Cap the duplicate spend of hedged requests at ``max_extra_ratio`` of all other spend over a sliding window.

    The duplicate spend of a hedge is the hedge call's own cost (see nodes/call_model.py). A hedge *reserves* its
    estimated cost before it starts, so concurrent requests cannot all pass the check at once; when the pair
    ends, the reservation is replaced by the hedge's recorded cost (nothing when it failed: failed calls are not
    billed). ``burst_usd`` is a floor under the cap, so a cold process can hedge its first requests before it has
    any spend to take a share of; once the window's spend passes ``burst_usd / max_extra_ratio`` the cap is
    exactly the ratio. In-process on purpose: a per-process cap of 10% caps the deployment at 10% too, without a
    Redis round trip on every call.
    """

    def __init__(
        self,
        *,
        max_extra_ratio: float = 0.10,
        window_s: float = 300.0,
        burst_usd: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_extra_ratio = max_extra_ratio
        self.window_s = window_s
        self.burst_usd = burst_usd
        self._clock = clock
        self._spend: deque[tuple[float, float]] = deque()
        self._extra: deque[list[float]] = deque()  # [when, usd]; reservations are settled in place
        self._lock = threading.Lock()

    def _trim(self, now: float) -> None:
        for entries in (self._spend, self._extra):
            while entries and now - entries[0][0] > self.window_s:
                entries.popleft()

    def record_spend(self, usd: float) -> None:
        """Count the cost of a call that was not a hedge (the base the ratio is taken of)."""
        if usd > 0:
            with self._lock:
                self._spend.append((self._clock(), usd))

    def try_reserve(self, estimated_usd: float) -> list[float] | None:
        """Reserve room for a hedge costing about ``estimated_usd``; None when the budget does not allow it."""
        with self._lock:
            now = self._clock()
            self._trim(now)
            spend = sum(usd for _, usd in self._spend)
            extra = sum(entry[1] for entry in self._extra)
            # The burst is a floor, not an addition: once spend is large the cap is exactly the ratio.
            if extra + estimated_usd > max(self.max_extra_ratio * spend, self.burst_usd):
                return None
            reservation = [now, estimated_usd]
            self._extra.append(reservation)
            return reservation

    def settle(self, reservation: list[float], extra_usd: float) -> None:
        """Replace a reservation by what the hedge really cost."""
        with self._lock:
            reservation[1] = extra_usd

    def totals(self) -> dict[str, float]:
        with self._lock:
            self._trim(self._clock())
            spend = sum(usd for _, usd in self._spend)
            extra = sum(entry[1] for entry in self._extra)
        return {
            "spend_usd": round(spend, 6),
            "extra_usd": round(extra, 6),
            "extra_ratio": round(extra / spend, 4) if spend else 0.0,
            "max_extra_ratio": self.max_extra_ratio,
            "window_s": self.window_s,
        }


# --- visibility and control (wired into app.py: `strategist health`, GET /health, POST /circuit-breaker/reset) --


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def health_report(registry: ProviderRegistry) -> dict[str, Any]:
    """Describe every provider: availability, circuit, recent error rate, latency percentiles, hedge budget.

    The shape extends the contract's ``GET /health`` body (``system_status``, ``components``, ``overall_score``,
    ``timestamp``); serve it with status 200 while any provider can answer, 503 otherwise.
    """
    components: dict[str, Any] = {}
    hedge = registry.settings.resilience.hedge
    for name, avail in registry.all_availability().items():
        snap = registry.health.breaker(name).snapshot()
        components[name] = {
            "tier": avail.tier,
            "available": avail.available,
            "reason": avail.reason or None,
            "circuit": snap.state,
            "probe_in_s": snap.probe_in_s,
            "recent_calls": snap.calls,
            "error_rate": round(snap.error_rate, 4),
            "consecutive_failures": snap.consecutive_failures,
            "retries": snap.retries,
            "p50_ms": snap.p50_ms,
            "p95_ms": snap.p95_ms,
            "p99_ms": snap.p99_ms,
            "latency_samples": snap.latency_samples,
            "hedge_after_ms": round(
                registry.health.breaker(name).hedge_timing(registry.settings).hedge_after_s * 1000, 1
            ),
        }
    usable = [c for c in components.values() if c["available"]]
    score = len(usable) / len(components) if components else 0.0
    return {
        "system_status": "healthy" if score == 1 else ("degraded" if usable else "unhealthy"),
        "components": components,
        "overall_score": round(score, 3),
        "circuit_store": registry.health.store.name,
        "hedging": {"enabled": hedge.enabled, **registry.hedge_budget.totals()},
        "window_s": registry.health.policy.window_s,
        "timestamp": _now_iso(),
    }


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
    return max(hedge.min_after_s, p_ms / 1000)


def render_health(report: dict[str, Any]) -> str:
    """Render a health report as a table for `strategist health`."""
    lines = [f"{report['system_status']} (score {report['overall_score']:.2f}, circuits in {report['circuit_store']})"]
    lines.append(
        f"{'provider':<12}{'tier':<10}{'circuit':<11}{'calls':>6}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'hedge ms':>10}  note"
    )

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    for name, c in report["components"].items():
        note = c["reason"] or ""
        if c["probe_in_s"] is not None:
            note = f"{note}; probe in {c['probe_in_s']:.0f}s".lstrip("; ")
        lines.append(
            f"{name:<12}{c['tier']:<10}{c['circuit']:<11}{c['recent_calls']:>6}{c['error_rate']:>8.1%}"
            f"{ms(c['p50_ms']):>9}{ms(c['p95_ms']):>9}{ms(c['p99_ms']):>9}{c['hedge_after_ms']:>10.0f}  {note}"
        )
    h = report["hedging"]
    lines.append(
        f"hedging {'on' if h['enabled'] else 'off'}: extra ${h['extra_usd']:.4f} on ${h['spend_usd']:.4f} "
        f"({h['extra_ratio']:.1%}, cap {h['max_extra_ratio']:.0%} over {h['window_s']:.0f}s)"
    )
    return "\n".join(lines)


class UnknownProvider(LookupError):
    """A reset named a provider that is not configured."""


def reset_circuits(registry: ProviderRegistry, provider: str | None = None) -> dict[str, Any]:
    """Close the circuit of one provider, or of all; return the contract's response body.

    Contract body for all: ``{"status": "success", "message": "All circuit breakers have been reset",
    "timestamp", "action": "circuit_breaker_reset"}``; ``providers`` lists what was reset.
    """
    names = registry.names()
    if provider is not None and provider not in names:
        raise UnknownProvider(f"unknown provider {provider!r}; configured: {', '.join(names)}")
    reset = registry.health.reset([provider] if provider else names)
    message = f"Circuit breaker of {provider} has been reset" if provider else "All circuit breakers have been reset"
    return {
        "status": "success",
        "message": message,
        "timestamp": _now_iso(),
        "action": "circuit_breaker_reset",
        "providers": reset,
    }


def admin_token_ok(settings: Settings, given: str | None) -> bool:
    """Say whether ``given`` is the configured admin token; with no token configured, nobody is admin."""
    expected = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
