"""The briefing cache: finished ward briefings with their ETag, in Redis (``REDIS_URL``) or the embedded SQLite.

Keys are the contract's ``strategist:ward:{ward}:{depth}:{context}``; a value is the ETag and the briefing's
JSON bytes, stored together so a hit costs one read and no serialisation, and expires after ``ETAG_TTL``.
The ETag is computed once when the briefing is stored, so it is stable for as long as the entry lives.

Besides the entries, each store keeps short-lived *leases* (``strategist:ward-lock:...``): single flight across
processes. The process that holds a key's lease runs the analysis; the others wait for the entry to appear
(graphs/ward_reports.py). A lease expires by itself if its holder dies, and its holder renews it while it works.

Invalidation touches only cache entries: a pattern is matched with SCAN (never KEYS, which blocks Redis), and
every key found must also be a cache entry's key, so ``strategist:*`` cannot reach checkpoints, the ledger,
feedback or breakers that share the prefix.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from providers.config import Settings

CACHE_PREFIX = "strategist:ward:"
LOCK_PREFIX = "strategist:ward-lock:"
PATTERN_PREFIX = "strategist:"


def cache_key(ward: str, depth: str, context: str) -> str:
    """Return the contract's cache key of a briefing."""
    return f"{CACHE_PREFIX}{ward}:{depth}:{context}"


def ward_of_key(key: str) -> str | None:
    """Return the ward of a cache entry's key (None for any other key)."""
    if not key.startswith(CACHE_PREFIX) or key.count(":") < 4:
        return None
    return key[len(CACHE_PREFIX) :].rsplit(":", 2)[0]


def redis_glob(pattern: str) -> re.Pattern[str]:
    """Compile a Redis glob (``*``, ``?``, ``[a-z]``, ``[^x]``, ``\\`` escapes) into a regular expression.

    Hand-written: ``fnmatch`` differs from Redis (``[!x]`` instead of ``[^x]``, no backslash escapes), and the
    SQLite and in-memory stores must match exactly the keys Redis's SCAN MATCH would.
    """
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                negate = body.startswith("^")
                body = body[1:] if negate else body
                out.append(
                    "[" + ("^" if negate else "") + "".join(re.escape(c) if c != "-" else "-" for c in body) + "]"
                )
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def glob_escape(text: str) -> str:
    """Escape Redis glob characters in a literal (a ward name) so it matches only itself."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


@dataclass(frozen=True)
class CachedBriefing:
    etag: str  # quoted, strong: '"<hex>"'
    body: bytes  # the briefing's JSON
    expires_at: float  # epoch seconds

    def ttl_s(self, now: float) -> int:
        """Seconds the entry still lives, rounded up (at least 1 while it exists)."""
        return max(1, int(-(-(self.expires_at - now) // 1)))


def _pack(etag: str, body: bytes) -> bytes:
    return etag.encode() + b"\n" + body


def _unpack(raw: bytes, expires_at: float) -> CachedBriefing:
    etag, _, body = raw.partition(b"\n")
    return CachedBriefing(etag.decode(), body, expires_at)


class BriefingCache(Protocol):
    name: str

    def get(self, key: str) -> CachedBriefing | None: ...

    def put(self, key: str, etag: str, body: bytes, ttl_s: int) -> CachedBriefing: ...

    def delete_matching(self, pattern: str, ward: str | None = None, keep: str | None = None) -> int: ...

    def entries(self) -> int: ...

    def acquire(self, key: str, ttl_s: float) -> str | None: ...

    def renew(self, key: str, token: str, ttl_s: float) -> bool: ...

    def release(self, key: str, token: str) -> None: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


class SqliteBriefingCache:
    """Entries and leases in a SQLite file beside the checkpoints: shared by every process on the machine."""

    name = "sqlite"

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS briefings (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL)"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, token TEXT, expires_at REAL)")

    def _conn(self) -> sqlite3.Connection:
        # One connection per thread: sqlite3 connections are not shared safely, and a hit must not queue behind a
        # lock held by another request's write.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            self._local.conn = conn
        return conn

    def get(self, key: str) -> CachedBriefing | None:
        """Return the live entry under ``key``, or None."""
        row = (
            self._conn()
            .execute("SELECT value, expires_at FROM briefings WHERE key = ? AND expires_at > ?", (key, self._clock()))
            .fetchone()
        )
        return _unpack(row[0], row[1]) if row else None

    def put(self, key: str, etag: str, body: bytes, ttl_s: int) -> CachedBriefing:
        """Store an entry for ``ttl_s`` seconds (and drop expired ones)."""
        now = self._clock()
        conn = self._conn()
        conn.execute(
            "INSERT OR REPLACE INTO briefings (key, value, expires_at) VALUES (?, ?, ?)",
            (key, _pack(etag, body), now + ttl_s),
        )
        conn.execute("DELETE FROM briefings WHERE expires_at <= ?", (now,))
        return CachedBriefing(etag, body, now + ttl_s)

    def delete_matching(self, pattern: str, ward: str | None = None, keep: str | None = None) -> int:
        """Delete the live entries whose key matches the Redis glob (and belong to ``ward``, when given), except
        ``keep``."""
        regex = redis_glob(pattern)
        conn = self._conn()
        keys = [k for (k,) in conn.execute("SELECT key FROM briefings WHERE expires_at > ?", (self._clock(),))]
        doomed = [k for k in keys if regex.fullmatch(k) and (ward is None or ward_of_key(k) == ward) and k != keep]
        for key in doomed:
            conn.execute("DELETE FROM briefings WHERE key = ?", (key,))
        return len(doomed)

    def entries(self) -> int:
        """Count the live entries."""
        (count,) = (
            self._conn().execute("SELECT COUNT(*) FROM briefings WHERE expires_at > ?", (self._clock(),)).fetchone()
        )
        return int(count)

    def acquire(self, key: str, ttl_s: float) -> str | None:
        """Take the lease on ``key`` unless another holder's lease is live; return its token, or None."""
        token, now = uuid.uuid4().hex, self._clock()
        self._conn().execute(
            "INSERT INTO leases (key, token, expires_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
            "token = excluded.token, expires_at = excluded.expires_at WHERE leases.expires_at <= ?",
            (key, token, now + ttl_s, now),
        )
        row = self._conn().execute("SELECT token FROM leases WHERE key = ?", (key,)).fetchone()
        return token if row and row[0] == token else None

    def renew(self, key: str, token: str, ttl_s: float) -> bool:
        """Extend a lease we hold; False when it was lost."""
        cur = self._conn().execute(
            "UPDATE leases SET expires_at = ? WHERE key = ? AND token = ?", (self._clock() + ttl_s, key, token)
        )
        return cur.rowcount == 1

    def release(self, key: str, token: str) -> None:
        """Give a lease back (only if we still hold it)."""
        self._conn().execute("DELETE FROM leases WHERE key = ? AND token = ?", (key, token))

    def ping(self) -> None:
        """Raise if the database cannot be read."""
        self._conn().execute("SELECT 1").fetchone()

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisBriefingCache:
    """Entries (SET EX) and leases (SET NX PX, renewed and released by token with Lua) in Redis."""

    name = "redis"

    def __init__(self, client: Any, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._clock = clock
        self._renew = client.register_script(_RENEW_LUA)
        self._release = client.register_script(_RELEASE_LUA)

    @classmethod
    def from_url(cls, url: str) -> RedisBriefingCache:
        """Connect to ``url`` (``redis+cluster://``, or a server that says it is a cluster, gets a cluster client)."""
        from providers.redis_connect import redis_client

        options: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
        # Unreachable now: a plain client, and the first real command reports the outage.
        client: Any = redis_client(url, unreachable_as_plain=True, **options)
        return cls(client)

    def get(self, key: str) -> CachedBriefing | None:
        """Return the live entry under ``key`` (one round trip: GET and PTTL pipelined), or None."""
        pipe = self._client.pipeline(transaction=False)
        pipe.get(key)
        pipe.pttl(key)
        raw, pttl = pipe.execute()
        if raw is None:
            return None
        return _unpack(raw, self._clock() + max(0, int(pttl)) / 1000)

    def put(self, key: str, etag: str, body: bytes, ttl_s: int) -> CachedBriefing:
        """Store an entry for ``ttl_s`` seconds."""
        self._client.set(key, _pack(etag, body), ex=ttl_s)
        return CachedBriefing(etag, body, self._clock() + ttl_s)

    def delete_matching(self, pattern: str, ward: str | None = None, keep: str | None = None) -> int:
        """Delete the cache entries whose key matches the glob (found with SCAN, never KEYS), except ``keep``."""
        deleted = 0
        batch: list[Any] = []
        for raw in self._client.scan_iter(match=pattern, count=500):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            if key == keep or ward_of_key(key) is None or (ward is not None and ward_of_key(key) != ward):
                continue  # a key of another part of the service that happens to match: not ours to delete
            batch.append(key)
            if len(batch) >= 500:
                deleted += self._delete(batch)
                batch = []
        return deleted + (self._delete(batch) if batch else 0)

    def _delete(self, keys: list[str]) -> int:
        # One DEL per key: in a cluster the keys live in different slots, and a multi-key DEL would be refused.
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.delete(key)
        return sum(int(n) for n in pipe.execute())

    def entries(self) -> int:
        """Count the cache entries (SCAN over the cache's prefix)."""
        return sum(1 for _ in self._client.scan_iter(match=CACHE_PREFIX + "*", count=500))

    def acquire(self, key: str, ttl_s: float) -> str | None:
        """Take the lease (SET NX PX); return its token, or None while another holder's lease is live."""
        token = uuid.uuid4().hex
        return token if self._client.set(LOCK_PREFIX + key, token, nx=True, px=int(ttl_s * 1000)) else None

    def renew(self, key: str, token: str, ttl_s: float) -> bool:
        """Extend a lease we hold; False when it was lost."""
        return bool(self._renew(keys=[LOCK_PREFIX + key], args=[token, int(ttl_s * 1000)]))

    def release(self, key: str, token: str) -> None:
        """Give a lease back (only if we still hold it)."""
        self._release(keys=[LOCK_PREFIX + key], args=[token])

    def ping(self) -> None:
        """Raise if Redis does not answer."""
        self._client.ping()

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()


def open_briefing_cache(settings: Settings) -> BriefingCache:
    """Open the briefing cache: Redis when ``REDIS_URL`` is set, otherwise SQLite in the data directory."""
    if settings.redis_url:
        return RedisBriefingCache.from_url(settings.redis_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteBriefingCache(settings.data_dir / "briefings.sqlite")
