"""The hedge budget: a cap on the duplicate spend of hedged requests."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class HedgeBudget:
    """Cap the duplicate spend of hedged requests at ``max_extra_ratio`` of all other spend over a sliding window.

    The duplicate spend of a hedge is the hedge call's own cost (see nodes/call_model.py). A hedge *reserves* its
    estimated cost before it starts, so concurrent requests cannot all pass the check at once; when the pair
    ends, the reservation is replaced by the hedge's recorded cost (nothing when it failed: failed calls are not
    billed). ``burst_usd`` is a floor under the cap, so a cold process can hedge its first requests before it has
    any spend to take a share of; once the window's spend passes ``burst_usd / max_extra_ratio`` the cap is
    exactly the ratio. In-process on purpose: a per-process cap of 10% caps the deployment at 10% too, without a
    Redis round trip on every call.

    A spend ratio alone starves a quiet or cold process: $0.01 of burst is one or two hedges, after which a hung
    provider is waited out on every call. A token bucket of ``burst_hedges`` hedges (one back every
    ``burst_refill_s``) grants hedges the ratio refuses, so a cold server hedges its first hangs and a quiet one
    keeps a trickle; its cost is bounded by the refill rate. Hand-written because it is a dozen lines that share
    the ratio's lock and clock (a library bucket would need both).
    """

    def __init__(
        self,
        *,
        max_extra_ratio: float = 0.10,
        window_s: float = 300.0,
        burst_usd: float = 0.01,
        burst_hedges: float = 0.0,
        burst_refill_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_extra_ratio = max_extra_ratio
        self.window_s = window_s
        self.burst_usd = burst_usd
        self.burst_hedges = burst_hedges
        self.burst_refill_s = burst_refill_s
        self._tokens = burst_hedges
        self._clock = clock
        self._refilled_at = clock()
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

    def try_reserve(self, estimated_usd: float, *, failover: bool = False) -> list[float] | None:
        """Reserve room for a hedge costing about ``estimated_usd``; None when the budget does not allow it.

        ``failover``: the caller knows the hedge is a failover (its primary's provider has never answered), so it
        is granted whatever the budget says; it is still counted as extra until it is settled or refunded.
        """
        with self._lock:
            now = self._clock()
            self._trim(now)
            spend = sum(usd for _, usd in self._spend)
            extra = sum(entry[1] for entry in self._extra)
            # The burst is a floor, not an addition: once spend is large the cap is exactly the ratio.
            token = 0.0
            if not failover and extra + estimated_usd > max(self.max_extra_ratio * spend, self.burst_usd):
                if not self._take_token(now):
                    return None
                token = 1.0
            reservation = [now, estimated_usd, token]  # [when, usd, whether a bucket token paid for it]
            self._extra.append(reservation)
            return reservation

    def _take_token(self, now: float) -> bool:
        """Refill the bucket for the time passed and take one hedge token if there is one (lock held)."""
        if self.burst_hedges <= 0:
            return False
        elapsed = max(0.0, now - self._refilled_at)
        self._tokens = min(self.burst_hedges, self._tokens + elapsed / self.burst_refill_s)
        self._refilled_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def settle(self, reservation: list[float], extra_usd: float) -> None:
        """Replace a reservation by what the hedge really cost."""
        with self._lock:
            reservation[1] = extra_usd

    def refund(self, reservation: list[float]) -> None:
        """Undo a hedge that turned out to be a failover (its primary never answered): it duplicated nothing, so
        it takes no share of the extra spend and gives back the bucket token it took. Without the token, a cold
        process meeting a hung provider spent its burst on the first hangs and waited out the next ones."""
        with self._lock:
            reservation[1] = 0.0
            if len(reservation) > 2 and reservation[2]:
                reservation[2] = 0.0
                self._tokens = min(self.burst_hedges, self._tokens + 1.0)

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
