"""The cost ledger: one row per finished analysis, kept beside the checkpoints (SQLite, or Redis when set).

Rows are keyed by thread id, so recording the same analysis twice (a resume that finds it complete, a retried
HTTP request) never counts its cost twice: the later record replaces the earlier one. The report aggregates in
Python: a ledger holds one row per analysis, thousands a day at most, which any machine sums in milliseconds.

Corrections: the loser of a hedge is recorded at its estimated cost when the analysis ends, but it may still be
running; when it completes (nodes/policy/hedging.py: settle_abandoned) its real cost is known and replaces the
estimate. That may happen before or after the row is written, so corrections are kept beside the rows, keyed by
(thread id, attempt index), and applied when rows are read: the order does not matter, and recording a row again
keeps them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from graphs.result import AnalysisResult


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


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
    # Shadow mode: the estimate for what was served, so intelligent routing is compared estimate to estimate,
    # and the tier intelligent routing would have used.
    shadow_served_estimate_usd: float | None = None
    shadow_tier: str | None = None

    @classmethod
    def from_result(cls, result: AnalysisResult, at: float) -> LedgerEntry:
        shadow = result.routing.shadow or {}
        tier = shadow.get("tier")
        return cls(
            thread_id=result.thread_id,
            at=at,
            provider=result.provider,
            tier=result.tier,
            mode=result.routing.mode,
            cost_usd=result.cost_usd,
            baseline_cost_usd=result.baseline_cost_usd,
            shadow_intelligent_usd=_number(shadow.get("estimated_cost_usd")),
            attempts=[{"provider": a.provider, "tier": a.tier, "cost_usd": a.cost_usd} for a in result.attempts],
            shadow_served_estimate_usd=_number(shadow.get("served_estimate_usd")),
            shadow_tier=tier if isinstance(tier, str) else None,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def corrected(self, costs: Mapping[int, float]) -> LedgerEntry:
        """Return the entry with the given attempts' costs (by index) replaced, and its total moved with them."""
        if not costs:
            return self
        attempts = [a | {"cost_usd": costs[i]} if i in costs else a for i, a in enumerate(self.attempts)]
        delta = sum(costs[i] - a["cost_usd"] for i, a in enumerate(self.attempts) if i in costs)
        return dataclasses.replace(self, attempts=attempts, cost_usd=round(self.cost_usd + delta, 8))

    @classmethod
    def from_json(cls, body: str | bytes) -> LedgerEntry:
        """Read a stored row; fields added or dropped since it was written are defaulted or ignored."""
        data = json.loads(body)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class Ledger(Protocol):
    def record(self, entry: LedgerEntry) -> None: ...

    def entries(self, since: float | None = None) -> list[LedgerEntry]: ...

    def correct(self, thread_id: str, attempt_index: int, cost_usd: float) -> None:
        """Set the real cost of one attempt of an analysis (before or after its row is recorded)."""


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
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS cost_corrections (thread_id TEXT NOT NULL, attempt INTEGER NOT NULL, "
                "cost_usd REAL NOT NULL, PRIMARY KEY (thread_id, attempt))"
            )

    def record(self, entry: LedgerEntry) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO cost_ledger (thread_id, at, body) VALUES (?, ?, ?)",
                (entry.thread_id, entry.at, entry.to_json()),
            )

    def correct(self, thread_id: str, attempt_index: int, cost_usd: float) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO cost_corrections (thread_id, attempt, cost_usd) VALUES (?, ?, ?)",
                (thread_id, attempt_index, cost_usd),
            )

    def entries(self, since: float | None = None) -> list[LedgerEntry]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT body FROM cost_ledger WHERE at >= ? ORDER BY at, thread_id", (since or 0.0,)
            ).fetchall()
            fixes = self._conn.execute(
                "SELECT c.thread_id, c.attempt, c.cost_usd FROM cost_corrections c JOIN cost_ledger l "
                "ON l.thread_id = c.thread_id WHERE l.at >= ?",
                (since or 0.0,),
            ).fetchall()
        costs: dict[str, dict[int, float]] = defaultdict(dict)
        for thread_id, index, usd in fixes:
            costs[thread_id][int(index)] = float(usd)
        entries = [LedgerEntry.from_json(body) for (body,) in rows]
        return [e.corrected(costs.get(e.thread_id, {})) for e in entries]

    def close(self) -> None:
        self._conn.close()


class RedisLedger:
    """A hash of entries by thread id plus a sorted set by time, under one hash tag (one slot in a cluster)."""

    def __init__(self, client: Any, prefix: str = "strategist") -> None:
        self._client = client
        self._hash = f"{prefix}:{{ledger}}:entries"
        self._index = f"{prefix}:{{ledger}}:by_time"
        self._corrections = f"{prefix}:{{ledger}}:corrections"  # field "thread_id#index" -> real cost

    def record(self, entry: LedgerEntry) -> None:
        # One MULTI/EXEC: a reader never sees the entry without its index or the other way round.
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(self._hash, entry.thread_id, entry.to_json())
        pipe.zadd(self._index, {entry.thread_id: entry.at})
        pipe.execute()

    def correct(self, thread_id: str, attempt_index: int, cost_usd: float) -> None:
        self._client.hset(self._corrections, f"{thread_id}#{attempt_index}", repr(float(cost_usd)))

    def entries(self, since: float | None = None) -> list[LedgerEntry]:
        ids = self._client.zrangebyscore(self._index, since or 0.0, "+inf")
        if not ids:
            return []
        bodies = self._client.hmget(self._hash, ids)
        entries = [LedgerEntry.from_json(b) for b in bodies if b is not None]
        # One round trip for every attempt's possible correction (the rows say how many attempts each has).
        fields = [(e.thread_id, i) for e in entries for i in range(len(e.attempts))]
        if not fields:
            return entries
        found = self._client.hmget(self._corrections, [f"{t}#{i}" for t, i in fields])
        costs: dict[str, dict[int, float]] = defaultdict(dict)
        for (thread_id, index), value in zip(fields, found, strict=True):
            if value is not None:
                costs[thread_id][index] = float(value)
        return [e.corrected(costs.get(e.thread_id, {})) for e in entries]


def _day(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).date().isoformat()


def _pct(saved: float, of: float) -> float:
    return round(100 * saved / of, 2) if of else 0.0


def _rounded(d: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    return {k: {kk: round(vv, 6) for kk, vv in v.items()} for k, v in sorted(d.items())}


def report(entries: Iterable[LedgerEntry]) -> dict[str, Any]:
    """Sum costs: totals, per provider and tier (from attempts, failed ones included), per day and routing mode,
    savings against the all-premium baseline, and what shadow mode says intelligent routing would have spent."""
    rows = list(entries)
    total = sum(e.cost_usd for e in rows)
    baseline = sum(e.baseline_cost_usd for e in rows)
    by_provider: dict[str, dict[str, float]] = defaultdict(lambda: {"calls": 0, "cost_usd": 0.0})
    by_tier: dict[str, dict[str, float]] = defaultdict(lambda: {"calls": 0, "cost_usd": 0.0})
    by_day: dict[str, dict[str, float]] = defaultdict(
        lambda: {"analyses": 0, "cost_usd": 0.0, "baseline_cost_usd": 0.0}
    )
    by_mode: dict[str, dict[str, float]] = defaultdict(
        lambda: {"analyses": 0, "cost_usd": 0.0, "baseline_cost_usd": 0.0}
    )
    for e in rows:
        for a in e.attempts:
            for bucket in (by_provider[a["provider"]], by_tier[a["tier"]]):
                bucket["calls"] += 1
                bucket["cost_usd"] += a["cost_usd"]
        for bucket in (by_day[_day(e.at)], by_mode[e.mode]):
            bucket["analyses"] += 1
            bucket["cost_usd"] += e.cost_usd
            bucket["baseline_cost_usd"] += e.baseline_cost_usd

    shadow = [e for e in rows if e.mode == "shadow" and e.shadow_intelligent_usd is not None]
    served_estimate = sum(e.shadow_served_estimate_usd or 0.0 for e in shadow)
    intelligent_estimate = sum(e.shadow_intelligent_usd or 0.0 for e in shadow)
    # Only rows that carry both estimates compare like with like; older rows had no served estimate.
    comparable = [e for e in shadow if e.shadow_served_estimate_usd is not None]
    comparable_saved = sum(
        (e.shadow_served_estimate_usd or 0.0) - (e.shadow_intelligent_usd or 0.0) for e in comparable
    )
    comparable_served = sum(e.shadow_served_estimate_usd or 0.0 for e in comparable)
    return {
        "analyses": len(rows),
        "cost_usd": round(total, 6),
        "baseline_cost_usd": round(baseline, 6),
        "savings_usd": round(baseline - total, 6),
        "savings_pct": _pct(baseline - total, baseline),
        "by_provider": _rounded(by_provider),
        "by_tier": _rounded(by_tier),
        "by_day": _rounded(by_day),
        "by_mode": _rounded(by_mode),
        "shadow": {
            "analyses": len(shadow),
            "served_cost_usd": round(sum(e.cost_usd for e in shadow), 6),
            "served_estimate_usd": round(served_estimate, 6),
            "intelligent_estimate_usd": round(intelligent_estimate, 6),
            "estimated_savings_usd": round(comparable_saved, 6),
            "estimated_savings_pct": _pct(comparable_saved, comparable_served),
            "intelligent_tiers": dict(sorted(Counter(e.shadow_tier or "unknown" for e in shadow).items())),
        },
    }
