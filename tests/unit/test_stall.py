"""providers/resilience/stall.py: a provider is silent when calls made after its latest answered one are overdue.

The clock is injected; nothing waits."""

from __future__ import annotations

import math

from providers.resilience.breaker import HedgeTiming, LatencyView
from providers.resilience.stall import MEDIAN_MULTIPLE, StallWatch, overdue_after_s


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_two_overdue_calls_and_no_answer_is_a_stall_one_is_not() -> None:
    clock = Clock()
    watch = StallWatch(clock)
    watch.start("gemini", 0.5)
    clock.now += 0.1
    watch.start("gemini", 0.5)
    clock.now += 0.45
    assert not watch.stalled("gemini")  # only the first is overdue
    clock.now += 0.1
    assert watch.stalled("gemini") and not watch.stalled("perplexity")


def test_an_answer_to_an_earlier_call_does_not_clear_a_stall() -> None:
    """At a hang's onset, the slow tail of the calls made before it still answers while everything since hangs."""
    clock = Clock()
    watch = StallWatch(clock)
    before = watch.start("gemini", 0.5)
    clock.now += 0.1
    hung = [watch.start("gemini", 0.5) for _ in range(2)]
    clock.now += 0.6
    watch.end("gemini", before, answered=True)
    assert watch.stalled("gemini")
    later = watch.start("gemini", 0.5)
    clock.now += 0.1
    watch.end("gemini", later, answered=True)  # a call made after them was answered: it is alive, just slow
    assert not watch.stalled("gemini")
    assert watch.in_flight("gemini") == len(hung)


def test_stalled_in_says_when_the_second_call_turns_overdue_and_an_answer_puts_it_off() -> None:
    """A caller waiting to hedge sleeps until then (nodes/policy/hedging.py) instead of polling."""
    clock = Clock()
    watch = StallWatch(clock)
    assert watch.stalled_in("gemini") == math.inf
    first = watch.start("gemini", 0.5)
    assert watch.stalled_in("gemini") == math.inf  # one call alone never makes a stall
    clock.now += 0.125
    watch.start("gemini", 0.5)
    assert watch.stalled_in("gemini") == 0.5  # the second call's overdue moment, not the first's
    clock.now += 0.5
    assert watch.stalled_in("gemini") == 0.0 and watch.stalled("gemini")
    later = watch.start("gemini", 0.5)
    watch.end("gemini", later, answered=True)  # answered after them: none of them is evidence any more
    watch.end("gemini", first, answered=False)
    assert watch.stalled_in("gemini") == math.inf


def test_calls_that_ended_without_an_answer_are_no_longer_evidence() -> None:
    clock = Clock()
    watch = StallWatch(clock)
    tickets = [watch.start("gemini", 0.5) for _ in range(2)]
    clock.now += 1.0
    assert watch.stalled("gemini")
    for ticket in tickets:
        watch.end("gemini", ticket, answered=False)  # given up: the breaker counts them now
    assert not watch.stalled("gemini") and watch.in_flight("gemini") == 0


def test_a_call_is_overdue_at_twice_the_median_once_known_else_at_the_cold_hedge_delay() -> None:
    warm = LatencyView(median_s=0.25, robust_p95_s=0.7, samples=50, suspect=False, state="closed")
    cold = LatencyView(median_s=0.25, robust_p95_s=0.25, samples=1, suspect=False, state="closed")
    assert overdue_after_s(warm, HedgeTiming(0.7, 0.7, False)) == MEDIAN_MULTIPLE * 0.25
    assert overdue_after_s(cold, HedgeTiming(0.3, math.inf, False)) == 0.3
