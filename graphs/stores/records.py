"""Records the strategist keeps for the client to list later: conversation sessions, playbooks, scenarios.

One small keyed store of JSON documents by kind (``conversation``, ``playbook``, ``scenario``), each with its ward
and a time to sort by, newest first: in Redis with ``REDIS_URL`` (a string per record plus a sorted set per
kind, all under one hash tag so a cluster keeps them in one slot), otherwise in SQLite in the data directory.
A conversation's messages are not here: they live in its LangGraph thread (the checkpointer); its record holds
what listing needs (title, ward, last activity, message count), so ``GET /conversations`` reads no checkpoint.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

from providers.config import Settings

REDIS_PREFIX = "strategist:{records}:"


class RecordStore(Protocol):
    def put(self, kind: str, record_id: str, ward: str, at: float, data: dict[str, Any]) -> None: ...

    def get(self, kind: str, record_id: str) -> dict[str, Any] | None: ...

    def delete(self, kind: str, record_id: str) -> bool: ...

    def newest(self, kind: str, ward: str | None, limit: int) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class SqliteRecords:
    """Records in a SQLite file (one connection per thread, as the briefing cache does)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._conn().execute(
            "CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, id TEXT NOT NULL, ward TEXT NOT NULL,"
            " at REAL NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, id))"
        )
        self._conn().execute("CREATE INDEX IF NOT EXISTS records_by_time ON records (kind, ward, at)")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    def put(self, kind: str, record_id: str, ward: str, at: float, data: dict[str, Any]) -> None:
        """Insert or replace a record."""
        self._conn().execute(
            "INSERT OR REPLACE INTO records (kind, id, ward, at, data) VALUES (?, ?, ?, ?, ?)",
            (kind, record_id, ward, at, json.dumps(data)),
        )

    def get(self, kind: str, record_id: str) -> dict[str, Any] | None:
        """Return a record, or None."""
        row = self._conn().execute("SELECT data FROM records WHERE kind = ? AND id = ?", (kind, record_id)).fetchone()
        return dict(json.loads(row[0])) if row else None

    def delete(self, kind: str, record_id: str) -> bool:
        """Delete a record; say whether it existed."""
        cursor = self._conn().execute("DELETE FROM records WHERE kind = ? AND id = ?", (kind, record_id))
        return cursor.rowcount > 0

    def newest(self, kind: str, ward: str | None, limit: int) -> list[dict[str, Any]]:
        """Return up to ``limit`` records of a kind (of one ward, or all), newest first."""
        if ward is None:
            rows = self._conn().execute(
                "SELECT data FROM records WHERE kind = ? ORDER BY at DESC LIMIT ?", (kind, limit)
            )
        else:
            rows = self._conn().execute(
                "SELECT data FROM records WHERE kind = ? AND ward = ? ORDER BY at DESC LIMIT ?", (kind, ward, limit)
            )
        return [dict(json.loads(row[0])) for row in rows.fetchall()]

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class RedisRecords:
    """Records in Redis: ``strategist:{records}:<kind>:<id>`` strings and a ``...:<kind>`` sorted set by time."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def _key(self, kind: str, record_id: str) -> str:
        return f"{REDIS_PREFIX}{kind}:{record_id}"

    def put(self, kind: str, record_id: str, ward: str, at: float, data: dict[str, Any]) -> None:
        """Insert or replace a record and index it by time (and by ward)."""
        pipe = self._client.pipeline(transaction=True)
        pipe.set(self._key(kind, record_id), json.dumps({"ward": ward, "data": data}))
        pipe.zadd(f"{REDIS_PREFIX}{kind}", {record_id: at})
        pipe.zadd(f"{REDIS_PREFIX}{kind}-ward:{ward}", {record_id: at})
        pipe.execute()

    def get(self, kind: str, record_id: str) -> dict[str, Any] | None:
        """Return a record, or None."""
        raw = self._client.get(self._key(kind, record_id))
        return dict(json.loads(raw)["data"]) if raw else None

    def delete(self, kind: str, record_id: str) -> bool:
        """Delete a record and its index entries; say whether it existed."""
        raw = self._client.get(self._key(kind, record_id))
        if not raw:
            return False
        ward = json.loads(raw)["ward"]
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(self._key(kind, record_id))
        pipe.zrem(f"{REDIS_PREFIX}{kind}", record_id)
        pipe.zrem(f"{REDIS_PREFIX}{kind}-ward:{ward}", record_id)
        pipe.execute()
        return True

    def newest(self, kind: str, ward: str | None, limit: int) -> list[dict[str, Any]]:
        """Return up to ``limit`` records of a kind (of one ward, or all), newest first."""
        index = f"{REDIS_PREFIX}{kind}" if ward is None else f"{REDIS_PREFIX}{kind}-ward:{ward}"
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in self._client.zrevrange(index, 0, limit - 1)]
        if not ids:
            return []
        raws = self._client.mget([self._key(kind, i) for i in ids])
        return [dict(json.loads(raw)["data"]) for raw in raws if raw]

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()


def open_records(settings: Settings) -> RecordStore:
    """Open the record store: Redis when ``REDIS_URL`` is set, otherwise SQLite in the data directory."""
    if settings.redis_url:
        from graphs.stores.briefing_cache import RedisBriefingCache

        # The same client construction (cluster detection, timeouts) as the briefing cache.
        return RedisRecords(RedisBriefingCache.from_url(settings.redis_url)._client)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteRecords(settings.data_dir / "records.sqlite")
