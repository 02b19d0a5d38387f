"""Rate limits: a provider that answered 429 is left out of new work for as long as it asked, not tripped.

Counted as failures, a 429 storm opened a provider's circuit for ``open_s`` (30 s) after eight of them, although
the provider had said when to come back (Retry-After 0.5-3 s): in bench/chaos.py's ``429-storms`` both cloud
circuits ended open and 55 of 100 analyses were refused (everything had landed on the local model's queue). A rate
limit is the provider metering this deployment, not failing: from the second 429 in a row, for the time it asked
(``default_s`` without Retry-After, at most ``max_s``), new routes, checks and hedges go elsewhere, and then it is
asked again, so a limit that persists keeps it out in steps of its own choosing. A retry of the same call that
already waited out the Retry-After is not stopped (the retry policy in nodes/call_model.py decides that).
LiteLLM's Router likewise cools a deployment down on 429s.

Process-local, like the hedge budget: each process sees its own 429s (a shared limit reaches every process soon
enough). Hand-written: a dict of deadlines under a lock, on the health board's clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Cooldowns:
    """Until when each provider asked to be left alone; the clock is injected.

    A cooldown starts at the ``after``-th 429 in a row (no answer in between): one 429 among many answers is one
    request's bad luck, and taking the provider out of every request's route for seconds on it cost more than it
    saved (bench/chaos.py's 20% random errors: 41 of 100 analyses refused once single 429s cooled providers down).
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, default_s: float = 1.0, max_s: float = 30.0, after: int = 2
    ) -> None:
        self._clock = clock
        self.default_s = default_s
        self.max_s = max_s
        self.after = after
        self._until: dict[str, float] = {}
        self._streak: dict[str, int] = {}
        self._lock = threading.Lock()

    def limited(self, provider: str, retry_after_s: float | None) -> None:
        """Count a 429; from the ``after``-th in a row, leave the provider out for ``retry_after_s`` (``default_s``
        when it gave none, at most ``max_s``)."""
        seconds = min(self.max_s, max(0.0, self.default_s if retry_after_s is None else retry_after_s))
        until = self._clock() + seconds
        with self._lock:
            streak = self._streak.get(provider, 0) + 1
            self._streak[provider] = streak
            if streak >= self.after:
                self._until[provider] = max(until, self._until.get(provider, until))

    def answered(self, provider: str) -> None:
        """Note that the provider answered a call: a 429 streak is over (a cooldown already started runs out)."""
        with self._lock:
            self._streak.pop(provider, None)

    def clear(self, provider: str) -> None:
        """Forget the provider's cooldown and streak (an operator's circuit reset)."""
        with self._lock:
            self._until.pop(provider, None)
            self._streak.pop(provider, None)

    def left_s(self, provider: str) -> float:
        """Return how long the provider is still to be left alone (0.0: not at all)."""
        with self._lock:
            until = self._until.get(provider)
        return 0.0 if until is None else max(0.0, until - self._clock())
