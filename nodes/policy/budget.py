"""Spend caps: the domain types shared by route (reserve), score (settle) and the stores (graphs/stores/budget.py).

Here, apart from the stores, because nodes may not import graphs.stores: a node sees only the protocol.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# Counters are kept in micro-dollars (integers), so concurrent increments add exactly in Redis and SQLite.
MICRO = 1_000_000
GLOBAL = "*"
# How a refusal starts: the HTTP layer answers 402 for the daily cap and 429 for a caller's (api/budget.py).
OVER_DAILY = "over budget: the daily spend cap"
OVER_CALLER = "over budget: this caller's daily spend cap"


def day_of(at: float) -> str:
    """Return the UTC day a timestamp falls in (the caps reset at midnight UTC)."""
    return dt.datetime.fromtimestamp(at, dt.UTC).date().isoformat()


@dataclass(frozen=True)
class BudgetCaps:
    """The caps in USD per UTC day; None means no cap."""

    daily_usd: float | None = None
    per_caller_daily_usd: float | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BudgetCaps:
        """Read STRATEGIST_DAILY_BUDGET_USD and STRATEGIST_CALLER_DAILY_BUDGET_USD; a bad value is a clear error."""

        def cap(name: str) -> float | None:
            raw = env.get(name, "").strip()
            if not raw:
                return None
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r}: expected a number of USD") from None
            if value < 0:
                raise ValueError(f"{name}={raw!r}: a budget cannot be negative")
            return value

        return cls(cap("STRATEGIST_DAILY_BUDGET_USD"), cap("STRATEGIST_CALLER_DAILY_BUDGET_USD"))

    @property
    def any(self) -> bool:
        return self.daily_usd is not None or self.per_caller_daily_usd is not None


@dataclass(frozen=True)
class Reservation:
    """An amount held against the caps until settled."""

    id: str
    day: str
    caller: str
    micros: int


@dataclass(frozen=True)
class Refusal:
    """Why a reservation was refused: which cap, its size, and what is left of it."""

    scope: str  # "daily" or "caller"
    cap_usd: float
    left_usd: float

    @property
    def message(self) -> str:
        which = OVER_DAILY if self.scope == "daily" else OVER_CALLER
        return f"{which} of ${self.cap_usd:.2f} has ${self.left_usd:.4f} left (resets at 00:00 UTC)"


@dataclass(frozen=True)
class Usage:
    """One scope's use of its cap today."""

    scope: str
    spent_usd: float
    reserved_usd: float
    cap_usd: float | None


@runtime_checkable  # so pydantic can describe a Context that holds one (graphs/context.py)
class BudgetStore(Protocol):
    caps: BudgetCaps

    def reserve(self, caller: str, amount_usd: float, at: float) -> Reservation | Refusal: ...

    def settle(self, reservation: Reservation, actual_usd: float) -> None: ...

    def usage(self, at: float, caller: str | None = None) -> list[Usage]: ...


def to_micros(usd: float) -> int:
    """Return USD as whole micro-dollars, rounded up: a reservation never holds less than the estimate."""
    return max(0, -(-round(usd * MICRO * 1000) // 1000))


def settle_budget(budget: BudgetStore | None, reservation: Mapping[str, object] | None, actual_usd: float) -> None:
    """Settle an analysis's reservation (as route stored it in state) with what the analysis actually cost."""
    if budget is None or reservation is None:
        return
    micros = reservation["micros"]
    assert isinstance(micros, int)
    held = Reservation(str(reservation["id"]), str(reservation["day"]), str(reservation["caller"]), micros)
    budget.settle(held, actual_usd)
