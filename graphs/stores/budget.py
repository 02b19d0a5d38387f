"""Spend caps per day and per caller, with atomic reservation: concurrent requests can never overshoot a cap.

Before a paid call the request reserves its estimated cost against both caps (the day's total and its caller's
day); after, it settles: the reservation is released and the actual cost is added. Check and reserve happen
as one atomic step, so 50 requests racing for the last dollar cannot all see it free:

- Redis: one Lua script checks both counters and reserves (EVAL runs atomically on the server), another
  settles. Keys carry the UTC day and expire after two days.
- SQLite: one ``BEGIN IMMEDIATE`` transaction (the database's write lock) per reserve or settle.

Hand-written rather than a rate-limit library: the libraries on PyPI count requests per window, not money
reserved by estimate and settled by actual, and none shares one atomic step between SQLite and Redis.

A reservation the process never settles (it crashed) stays counted until the day ends: that errs on the side of
the cap, which is the point of a cap.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nodes.policy.budget import (
    GLOBAL,
    MICRO,
    BudgetCaps,
    BudgetStore,
    Refusal,
    Reservation,
    Usage,
    day_of,
    to_micros,
)


def _caps_micros(caps: BudgetCaps) -> tuple[int, int]:
    # -1: no cap (the Lua script and the SQL check skip it).
    daily = -1 if caps.daily_usd is None else to_micros(caps.daily_usd)
    caller = -1 if caps.per_caller_daily_usd is None else to_micros(caps.per_caller_daily_usd)
    return daily, caller


class SqliteBudget:
    """Budget counters in a SQLite file (the embedded default); safe across threads and processes."""

    def __init__(self, path: Path, caps: BudgetCaps) -> None:
        self.caps = caps
        self._path = path
        self._local = threading.local()
        with self._connect() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS budget (day TEXT NOT NULL, scope TEXT NOT NULL, "
                "spent INTEGER NOT NULL DEFAULT 0, reserved INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (day, scope))"
            )

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: transactions are ours (BEGIN IMMEDIATE), not the module's implicit ones.
            conn = sqlite3.connect(self._path, timeout=60.0, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    def _row(self, conn: sqlite3.Connection, day: str, scope: str) -> tuple[int, int]:
        row = conn.execute("SELECT spent, reserved FROM budget WHERE day = ? AND scope = ?", (day, scope)).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def _add(self, conn: sqlite3.Connection, day: str, scope: str, spent: int, reserved: int) -> None:
        conn.execute(
            "INSERT INTO budget (day, scope, spent, reserved) VALUES (?, ?, ?, ?) ON CONFLICT (day, scope) "
            "DO UPDATE SET spent = spent + excluded.spent, reserved = MAX(0, reserved + excluded.reserved)",
            (day, scope, spent, reserved),
        )

    def reserve(self, caller: str, amount_usd: float, at: float) -> Reservation | Refusal:
        day, micros = day_of(at), to_micros(amount_usd)
        daily_cap, caller_cap = _caps_micros(self.caps)
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for scope, cap, name in ((GLOBAL, daily_cap, "daily"), (f"caller:{caller}", caller_cap, "caller")):
                if cap < 0:
                    continue
                spent, reserved = self._row(conn, day, scope)
                if spent + reserved + micros > cap:
                    conn.execute("ROLLBACK")
                    return Refusal(name, cap / MICRO, max(0, cap - spent - reserved) / MICRO)
            self._add(conn, day, GLOBAL, 0, micros)
            self._add(conn, day, f"caller:{caller}", 0, micros)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return Reservation(uuid.uuid4().hex, day, caller, micros)

    def settle(self, reservation: Reservation, actual_usd: float) -> None:
        actual = to_micros(actual_usd)
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for scope in (GLOBAL, f"caller:{reservation.caller}"):
                self._add(conn, reservation.day, scope, actual, -reservation.micros)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def usage(self, at: float, caller: str | None = None) -> list[Usage]:
        day = day_of(at)
        conn = self._connect()
        spent, reserved = self._row(conn, day, GLOBAL)
        out = [Usage("daily", spent / MICRO, reserved / MICRO, self.caps.daily_usd)]
        if caller is not None:
            spent, reserved = self._row(conn, day, f"caller:{caller}")
            out.append(Usage(f"caller {caller}", spent / MICRO, reserved / MICRO, self.caps.per_caller_daily_usd))
        return out


# KEYS: daily spent, daily reserved, caller spent, caller reserved. ARGV: amount, daily cap, caller cap, ttl.
# Returns {1} when reserved, {0, scope, left} when refused (scope 1 = daily, 2 = caller).
_RESERVE = """
local amount = tonumber(ARGV[1])
local caps = {tonumber(ARGV[2]), tonumber(ARGV[3])}
for i = 1, 2 do
  local cap = caps[i]
  if cap >= 0 then
    local used = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0') + tonumber(redis.call('GET', KEYS[2 * i]) or '0')
    if used + amount > cap then
      local left = cap - used
      if left < 0 then left = 0 end
      return {0, i, left}
    end
  end
end
for i = 1, 2 do
  redis.call('INCRBY', KEYS[2 * i], amount)
  redis.call('EXPIRE', KEYS[2 * i], tonumber(ARGV[4]))
end
return {1}
"""
# KEYS: as above. ARGV: reserved amount, actual amount, ttl.
_SETTLE = """
for i = 1, 2 do
  local reserved = tonumber(redis.call('DECRBY', KEYS[2 * i], tonumber(ARGV[1])))
  if reserved < 0 then redis.call('SET', KEYS[2 * i], 0) end
  redis.call('INCRBY', KEYS[2 * i - 1], tonumber(ARGV[2]))
  redis.call('EXPIRE', KEYS[2 * i - 1], tonumber(ARGV[3]))
  redis.call('EXPIRE', KEYS[2 * i], tonumber(ARGV[3]))
end
return 1
"""
TTL_S = 2 * 86400


class RedisBudget:
    """Budget counters in Redis, shared by every server process; reserve and settle are single Lua scripts.

    The four keys of one call share a hash tag (the day), so the scripts also run on a Redis Cluster.
    """

    def __init__(self, client: Any, caps: BudgetCaps, prefix: str = "strategist:budget") -> None:
        self.caps = caps
        self._client = client
        self._prefix = prefix
        self._reserve: Callable[..., Any] = client.register_script(_RESERVE)
        self._settle: Callable[..., Any] = client.register_script(_SETTLE)

    def _keys(self, day: str, caller: str) -> list[str]:
        base = f"{self._prefix}:{{{day}}}"
        return [
            f"{base}:spent",
            f"{base}:reserved",
            f"{base}:caller:{caller}:spent",
            f"{base}:caller:{caller}:reserved",
        ]

    def reserve(self, caller: str, amount_usd: float, at: float) -> Reservation | Refusal:
        day, micros = day_of(at), to_micros(amount_usd)
        daily_cap, caller_cap = _caps_micros(self.caps)
        result = self._reserve(keys=self._keys(day, caller), args=[micros, daily_cap, caller_cap, TTL_S])
        if int(result[0]) == 1:
            return Reservation(uuid.uuid4().hex, day, caller, micros)
        scope = "daily" if int(result[1]) == 1 else "caller"
        cap = daily_cap if scope == "daily" else caller_cap
        return Refusal(scope, cap / MICRO, int(result[2]) / MICRO)

    def settle(self, reservation: Reservation, actual_usd: float) -> None:
        keys = self._keys(reservation.day, reservation.caller)
        self._settle(keys=keys, args=[reservation.micros, to_micros(actual_usd), TTL_S])

    def usage(self, at: float, caller: str | None = None) -> list[Usage]:
        day = day_of(at)
        keys = self._keys(day, caller or "-")
        values = [int(v or 0) for v in self._client.mget(keys)]
        out = [Usage("daily", values[0] / MICRO, values[1] / MICRO, self.caps.daily_usd)]
        if caller is not None:
            out.append(Usage(f"caller {caller}", values[2] / MICRO, values[3] / MICRO, self.caps.per_caller_daily_usd))
        return out


def open_budget(redis_url: str | None, data_dir: Path, env: Mapping[str, str]) -> BudgetStore | None:
    """Open the budget store the environment asks for: None without caps; Redis when REDIS_URL is set."""
    caps = BudgetCaps.from_env(env)
    if not caps.any:
        return None
    if redis_url:
        import redis

        return RedisBudget(redis.Redis.from_url(redis_url), caps)
    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteBudget(data_dir / "budget.sqlite", caps)
