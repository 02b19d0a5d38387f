"""Where circuit-breaker state lives: this process only, or Redis shared by every process of a deployment.

Every store method is one short, atomic operation on one provider; the state machine that decides what the
operations mean is in ``breaker.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

log = logging.getLogger(__name__)

StoredState = Literal["closed", "open"]
_T = TypeVar("_T")


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
        """Connect to ``url`` with short timeouts: a cluster client when the server is a cluster node (any URL).

        A Redis that does not answer now gets a plain client: every operation then falls back to this
        process's state until it does (the breaker must not take an analysis down with it).
        """
        from providers.redis_connect import redis_client

        # Breaker calls sit on every request's path: a stalled Redis must cost milliseconds, not seconds.
        options: dict[str, Any] = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25, "decode_responses": True}
        client: Any = redis_client(url, unreachable_as_plain=True, **options)
        return cls(client, policy)

    def _keys(self, provider: str) -> tuple[str, str, str, str]:
        base = f"{self._prefix}:{{{provider}}}"
        return f"{base}:state", f"{base}:win", f"{base}:lat", f"{base}:probe"

    def _guard(self, redis_op: Callable[[], _T], fallback_op: Callable[[], _T]) -> _T:
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
