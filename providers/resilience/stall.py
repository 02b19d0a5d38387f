"""Noticing a provider that has gone silent before any of its calls has failed.

A hang is recorded only when a call is given up, so at the onset of a hang every call already in flight waited
out its own sub-deadline (2.2 s in bench/chaos.py's warm run) and the hedge budget refused most of their hedges as
duplicates: the first wave of a hang made the tail of the latency. The calls in flight say more than the calls
recorded: when at least ``min_overdue`` calls to a provider have run past the point where it usually answers and
no call started after them has been answered, the provider has stopped answering. A hedge over such a call is a
failover, not a duplicate (a hung call generates nothing to bill), and it need not wait for the provider's usual
hedge delay.

A provider that is merely slower than usual keeps answering the calls made after the overdue ones (those are
overdue because they started long ago); what it can cost is a wave of hedges granted outside the budget.
Process-local on purpose: these are this process's own calls in flight (each process of a deployment sees its
own). Hand-written: a dozen lines over the attempt machinery's own start and end, which no library has.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from providers.resilience.breaker import HedgeTiming, LatencyView

# A call is overdue once in flight this multiple of its provider's median latency. Low on purpose: the evidence is
# that several calls are overdue *and* none started after them was answered, which a healthy provider almost never
# shows. Simulated (log-normal latencies, median 0.25 s, p99 1 s, Poisson arrivals of 4 and 13 a second, 20,000
# calls): with 2 calls needed, 0.03-0.07% of calls would see a healthy provider as stalled at 2x the median and
# 0.55-0.75% at 1.4x; each costs at most one hedge outside the budget.
MEDIAN_MULTIPLE = 2.0


def overdue_after_s(latency: LatencyView, timing: HedgeTiming) -> float:
    """Return when a call to a provider is overdue: ``MEDIAN_MULTIPLE`` x its median latency once its usual
    latency is known (``timing.slow_after_s`` is finite), else the cold hedge delay (a guess, like the hedge)."""
    if latency.median_s is not None and timing.slow_after_s != math.inf:
        return MEDIAN_MULTIPLE * latency.median_s
    return timing.hedge_after_s


@dataclass(frozen=True)
class _Flight:
    started: float
    overdue_at: float


class StallWatch:
    """The calls in flight per provider, and when the latest call it answered had started; the clock is injected."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, min_overdue: int = 2) -> None:
        self._clock = clock
        self.min_overdue = min_overdue
        self._flights: dict[str, dict[int, _Flight]] = {}
        self._answered_started: dict[str, float] = {}  # the start of the latest-started call it answered
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def start(self, provider: str, overdue_after_s: float) -> int:
        """Note a call that starts now and is overdue after ``overdue_after_s``; return its ticket for :meth:`end`."""
        now = self._clock()
        ticket = next(self._ids)
        with self._lock:
            self._flights.setdefault(provider, {})[ticket] = _Flight(now, now + overdue_after_s)
        return ticket

    def end(self, provider: str, ticket: int, *, answered: bool) -> None:
        """Note that the call ended; ``answered``: the provider sent a reply (a usable one or not)."""
        with self._lock:
            flight = self._flights.get(provider, {}).pop(ticket, None)
            if answered and flight is not None:
                latest = self._answered_started.get(provider, flight.started)
                self._answered_started[provider] = max(latest, flight.started)

    def stalled(self, provider: str) -> bool:
        """Say whether at least ``min_overdue`` calls to the provider are overdue that started after the latest
        call it answered.

        An answer from a call that started earlier says nothing about the later ones: at the onset of a hang, the
        slow tail of the calls made before it answers while everything sent since hangs.
        """
        now = self._clock()
        with self._lock:
            answered = self._answered_started.get(provider, -math.inf)
            overdue = sum(
                1 for f in self._flights.get(provider, {}).values() if now >= f.overdue_at and f.started > answered
            )
        return overdue >= self.min_overdue

    def stalled_in(self, provider: str) -> float:
        """Return the seconds until the provider will count as stalled if it answers nothing meanwhile: 0 when it
        already does, inf when too few of its calls are in flight to ever count.

        A caller waiting to hedge wakes then instead of finding out at its next periodic recheck: at a hang's
        onset every call in flight learns of it at once, not up to a recheck interval later.
        """
        now = self._clock()
        with self._lock:
            answered = self._answered_started.get(provider, -math.inf)
            due = sorted(f.overdue_at for f in self._flights.get(provider, {}).values() if f.started > answered)
        if len(due) < self.min_overdue:
            return math.inf
        return max(0.0, due[self.min_overdue - 1] - now)

    def in_flight(self, provider: str) -> int:
        with self._lock:
            return len(self._flights.get(provider, {}))
