"""Cached analysis results for identical normalised requests (policy: nodes/policy/response_cache.py).

SQLite beside the checkpoints, or Redis (SET with EX) when REDIS_URL is set. Opt-in: STRATEGIST_RESPONSE_CACHE_TTL_S
turns it on (seconds an answer stays servable); STRATEGIST_RESPONSE_CACHE_FRESH_TTL_S (default 120) caps answers
that needed fresh facts.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from nodes.policy.response_cache import CachePolicy

DEFAULT_FRESH_TTL_S = 120.0


class ResponseCache(Protocol):
    policy: CachePolicy

    def get(self, key: str, now: float) -> str | None: ...

    def put(self, key: str, value: str, now: float, ttl_s: float) -> None: ...


class SqliteResponseCache:
    """Results as JSON text with an expiry time, in one SQLite table."""

    def __init__(self, path: Path, policy: CachePolicy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, timeout=30.0)
        with self._lock, self._conn:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL)"
            )

    def get(self, key: str, now: float) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value, expires FROM responses WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row is not None and float(row[1]) > now else None

    def put(self, key: str, value: str, now: float, ttl_s: float) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses (key, value, expires) VALUES (?, ?, ?)", (key, value, now + ttl_s)
            )


class RedisResponseCache:
    """Results as JSON text under a key that Redis expires itself."""

    def __init__(self, client: Any, policy: CachePolicy, prefix: str = "strategist:response") -> None:
        self.policy = policy
        self._client = client
        self._prefix = prefix

    def get(self, key: str, now: float) -> str | None:
        value = self._client.get(f"{self._prefix}:{key}")
        return value.decode() if isinstance(value, bytes) else value

    def put(self, key: str, value: str, now: float, ttl_s: float) -> None:
        self._client.set(f"{self._prefix}:{key}", value, ex=max(1, int(ttl_s)))


def open_response_cache(redis_url: str | None, data_dir: Path, env: Mapping[str, str]) -> ResponseCache | None:
    """Open the cache when STRATEGIST_RESPONSE_CACHE_TTL_S is set; a bad value is a clear error."""
    raw = env.get("STRATEGIST_RESPONSE_CACHE_TTL_S", "").strip()
    if not raw:
        return None
    try:
        ttl = float(raw)
        fresh = float(env.get("STRATEGIST_RESPONSE_CACHE_FRESH_TTL_S", "") or DEFAULT_FRESH_TTL_S)
    except ValueError:
        raise ValueError(f"STRATEGIST_RESPONSE_CACHE_TTL_S={raw!r}: expected seconds") from None
    policy = CachePolicy(ttl_s=ttl, fresh_ttl_s=fresh)
    if redis_url:
        import redis

        return RedisResponseCache(redis.Redis.from_url(redis_url), policy)
    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteResponseCache(data_dir / "responses.sqlite", policy)
