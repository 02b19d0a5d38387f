"""The cost ledger: one row per finished analysis, kept beside the checkpoints (SQLite, or Redis when set).

Rows are keyed by thread id, so recording the same analysis twice (a resume that finds it complete, a retried
HTTP request) never counts its cost twice. The report aggregates in Python: a ledger holds one row per
analysis, thousands a day at most, which any machine sums in milliseconds.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from graphs.state import AnalysisResult


@dataclass(frozen=True)
class LedgerEntry:
    thread_id: str
    at: float  # epoch seconds when the analysis finished
    provider: str | None
    tier: str | None
    mode: str
    cost_usd: float
    baseline_cost_usd: float
    shadow_intelligent_usd: float | None  # shadow mode: what intelligent routing would have spent (estimate)
    attempts: list[dict[str, Any]] = field(default_factory=list)  # provider, tier, cost_usd per attempt

    @classmethod
    def from_result(cls, result: AnalysisResult, at: float) -> LedgerEntry:
        shadow = result.routing.shadow or {}
        shadow_cost = shadow.get("estimated_cost_usd")
        return cls(
            thread_id=result.thread_id,
            at=at,
            provider=result.provider,
            tier=result.tier,
            mode=result.routing.mode,
            cost_usd=result.cost_usd,
            baseline_cost_usd=result.baseline_cost_usd,
            shadow_intelligent_usd=float(shadow_cost) if isinstance(shadow_cost, int | float) else None,
            attempts=[{"provider": a.provider, "tier": a.tier, "cost_usd": a.cost_usd} for a in result.attempts],
        )


class Ledger(Protocol):
    def record(self, entry: LedgerEntry) -> None: ...

    def entries(self, since: float | None = None) -> list[LedgerEntry]: ...


class SqliteLedger:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        with self._lock, self._conn:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS cost_ledger (thread_id TEXT PRIMARY KEY, at REAL NOT NULL, body TEXT)"
            )
            self._conn.execute("CREATE INDEX IF NOT EXISTS cost_ledger_at ON cost_ledger (at)")

    def record(self, entry: LedgerEntry) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO cost_ledger (thread_id, at, body) VALUES (?, ?, ?)",
                (entry.thread_id, entry.at, json.dumps(asdict(entry))),
            )

    def entries(self, since: float | None = None) -> list[LedgerEntry]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT body FROM cost_ledger WHERE at >= ? ORDER BY at", (since or 0.0,)
            ).fetchall()
        return [LedgerEntry(**json.loads(body)) for (body,) in rows]

    def close(self) -> None:
        self._conn.close()


class RedisLedger:
    """A hash of entries by thread id plus a sorted set by time, under one hash tag (one slot in a cluster)."""

    def __init__(self, client: Any, prefix: str = "strategist") -> None:
        self._client = client
        self._hash = f"{prefix}:{{ledger}}:entries"
        self._index = f"{prefix}:{{ledger}}:by_time"

    def record(self, entry: LedgerEntry) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(self._hash, entry.thread_id, json.dumps(asdict(entry)))
        pipe.zadd(self._index, {entry.thread_id: entry.at})
        pipe.execute()

    def entries(self, since: float | None = None) -> list[LedgerEntry]:
        ids = self._client.zrangebyscore(self._index, since or 0.0, "+inf")
        if not ids:
            return []
        bodies = self._client.hmget(self._hash, ids)
        return [LedgerEntry(**json.loads(b)) for b in bodies if b is not None]


def _day(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).date().isoformat()


def report(entries: Iterable[LedgerEntry]) -> dict[str, Any]:
    """Sum costs: totals, per provider and tier (from attempts, failed ones included), per day, and savings."""
    rows = list(entries)
    total = sum(e.cost_usd for e in rows)
    baseline = sum(e.baseline_cost_usd for e in rows)
    by_provider: dict[str, dict[str, float]] = defaultdict(lambda: {"calls": 0, "cost_usd": 0.0})
    by_tier: dict[str, dict[str, float]] = defaultdict(lambda: {"calls": 0, "cost_usd": 0.0})
    by_day: dict[str, dict[str, float]] = defaultdict(
        lambda: {"analyses": 0, "cost_usd": 0.0, "baseline_cost_usd": 0.0}
    )
    for e in rows:
        for a in e.attempts:
            by_provider[a["provider"]]["calls"] += 1
            by_provider[a["provider"]]["cost_usd"] += a["cost_usd"]
            by_tier[a["tier"]]["calls"] += 1
            by_tier[a["tier"]]["cost_usd"] += a["cost_usd"]
        day = by_day[_day(e.at)]
        day["analyses"] += 1
        day["cost_usd"] += e.cost_usd
        day["baseline_cost_usd"] += e.baseline_cost_usd
    shadow = [e for e in rows if e.mode == "shadow" and e.shadow_intelligent_usd is not None]

    def rounded(d: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        return {k: {kk: round(vv, 6) for kk, vv in v.items()} for k, v in sorted(d.items())}

    return {
        "analyses": len(rows),
        "cost_usd": round(total, 6),
        "baseline_cost_usd": round(baseline, 6),
        "savings_usd": round(baseline - total, 6),
        "savings_pct": round(100 * (baseline - total) / baseline, 2) if baseline else 0.0,
        "by_provider": rounded(by_provider),
        "by_tier": rounded(by_tier),
        "by_day": rounded(by_day),
        "shadow": {
            "analyses": len(shadow),
            "served_cost_usd": round(sum(e.cost_usd for e in shadow), 6),
            "intelligent_estimate_usd": round(sum(e.shadow_intelligent_usd or 0.0 for e in shadow), 6),
        },
    }
