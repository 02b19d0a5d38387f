"""Spend caps: the domain types shared by route (reserve), score (settle) and the stores (graphs/stores/budget.py),
and the cover every paid call of an analysis must fit before it is made (:class:`Cover`).

Here, apart from the stores, because nodes may not import graphs.stores: a node sees only the protocol.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# Counters are kept in micro-dollars (integers), so concurrent increments add exactly in Redis and SQLite.
MICRO = 1_000_000
GLOBAL = "*"
# How a refusal starts: the HTTP layer answers 402 for the daily cap and 429 for a caller's (api/budget.py).
OVER_DAILY = "over budget: the daily spend cap"
OVER_CALLER = "over budget: this caller's daily spend cap"
# The caller a reservation is made for when the request carries no caller key.
ANONYMOUS = "anonymous"


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


def _held(reservation: Mapping[str, object]) -> Reservation:
    micros = reservation["micros"]
    assert isinstance(micros, int)
    return Reservation(str(reservation["id"]), str(reservation["day"]), str(reservation["caller"]), micros)


def reservations_of(state: Mapping[str, object]) -> list[Mapping[str, object]]:
    """Return what an analysis holds against the caps: route's reservation, then the top-ups made before calls."""
    first = state.get("budget_reservation")
    extra = state.get("budget_extra") or []
    assert isinstance(extra, list)
    return ([first] if isinstance(first, Mapping) else []) + [r for r in extra if isinstance(r, Mapping)]


def settle_budget(budget: BudgetStore | None, reservations: Iterable[Mapping[str, object]], actual_usd: float) -> None:
    """Settle an analysis's reservations (as its nodes stored them in state) with what it actually cost.

    The first is settled at the whole actual cost and the others at zero: each releases what it held, and the
    actual cost is added once.
    """
    if budget is None:
        return
    for i, reservation in enumerate(reservations):
        budget.settle(_held(reservation), actual_usd if i == 0 else 0.0)


def correct_spend(
    budget: BudgetStore | None, reservations: Iterable[Mapping[str, object]], estimated_usd: float, actual_usd: float
) -> None:
    """Add what an abandoned call billed past its estimate, once it completes (nodes/policy/hedging.py).

    Its attempt was recorded, and so settled, at the estimate. Less than the estimate stays counted: that errs on
    the side of the cap, like a reservation a crashed process never settles.
    """
    first = next(iter(reservations), None)
    over = actual_usd - estimated_usd
    if budget is None or first is None or to_micros(over) <= 0:
        return
    held = _held(first)
    budget.settle(Reservation(uuid.uuid4().hex, held.day, held.caller, 0), over)


class Cover:
    """What an analysis may still spend: every paid call must fit in its reservations before it is made.

    What it has spent (its attempts' costs, an abandoned call at its estimate) plus the calls started in this node
    execution plus the next call's estimate may not pass what it holds; when it would, the shortfall is reserved
    on top, atomically like route's reservation, and a refusal means the call is not made. Route reserves the
    plan's ceiling, so a planned call normally fits without a top-up; what the ceiling does not hold is a call
    after one billed past its estimate (a thinking model that spent its tokens and returned nothing usable), a
    second request to the same provider (a duplicate hedge), a checker after an unusable check. Without this,
    settled spend passed the cap by those calls.
    """

    def __init__(self, budget: BudgetStore | None, caller: str, at: float, state: Mapping[str, object]) -> None:
        self._budget, self._caller, self._at = budget, caller, at
        held = reservations_of(state)
        self._held = sum(_held(r).micros for r in held)
        attempts = state.get("attempts") or []
        assert isinstance(attempts, list)
        self._committed = to_micros(sum(float(a["cost_usd"]) for a in attempts))
        self.extra: list[dict[str, object]] = []  # the top-ups granted, for the node's state update

    def admit(self, estimate_usd: float) -> Refusal | None:
        """Commit a call's estimate, reserving the shortfall when it does not fit; the refusal when that fails."""
        micros = to_micros(estimate_usd)
        if self._budget is None or micros == 0:
            # A free call (the local model) cannot take spend past a cap; refusing it would only leave a briefing
            # or an analysis unwritten after earlier calls billed past their estimates.
            return None
        need = self._committed + micros - self._held
        if need > 0:
            outcome = self._budget.reserve(self._caller, need / MICRO, self._at)
            if isinstance(outcome, Refusal):
                return outcome
            self.extra.append(dataclasses.asdict(outcome))
            self._held += outcome.micros
        self._committed += micros
        return None


def split(reservation: Reservation, parts_micros: list[int]) -> list[Reservation]:
    """Split one reservation into parts that are held and settled apart (a briefing's writer and each research
    branch): the stores count amounts, not reservations, so settling every part releases what the whole held.
    Reserving the whole at once is what makes it all-or-nothing against concurrent requests; the last part takes
    any rounding difference."""
    parts = [Reservation(uuid.uuid4().hex, reservation.day, reservation.caller, m) for m in parts_micros]
    if parts:
        rest = reservation.micros - sum(parts_micros)
        parts[-1] = dataclasses.replace(parts[-1], micros=parts[-1].micros + rest)
    return parts


def not_made(refusal: Refusal, what: str, estimate_usd: float) -> str:
    """Say why a call was not made; it starts as the refusal does, so the HTTP layer answers 402 or 429."""
    return f"{refusal.message}: {what} (est. ${estimate_usd:.4f}) not made"
