"""Hedged calls: one attempt on a chain step, and the next step started in parallel when the first is slow (the
same cloud provider again when no other adequate step follows).

The first usable answer wins; the other call is abandoned and recorded as ``cancelled`` with its estimated
cost. Hedges are started within the hedge budget (providers/resilience/hedge_budget.py), and a provider's
"slow" is its robust latency threshold (providers/resilience/breaker.py). Each call has its own sub-deadline
(nodes/policy/deadlines.py).

An abandoned call is not left to run out its client's timeout: it may finish in the background until its
provider's usual latency plus ``loser_grace_s`` (then its real outcome and cost are counted in health and the
hedge budget), after which it is aborted (the async client's task is cancelled, which closes the connection;
the local model stops between tokens) and counted as a timeout, at its full estimated cost.
"""

from __future__ import annotations

import atexit
import contextvars
import dataclasses
import functools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from graphs.state import AnalysisState, Attempt, ChainStep, Role
from nodes.policy.answers import candidate_from, problem_with
from nodes.policy.attempts import make_attempt, retry_wait_s, skipped_attempt, watched_call
from nodes.policy.costing import estimate_call_cost
from nodes.policy.deadlines import call_deadline_s, cold_floor_of, own_limit_s
from nodes.policy.events import AttemptAbandoned, AttemptStarted, HedgeRefused
from providers.base import ModelReply, Prompt
from providers.errors import CallAborted, ProviderError
from providers.registry import ProviderRegistry
from providers.resilience.breaker import HedgeTiming
from providers.resilience.stall import overdue_after_s

Emit = Callable[[dict[str, Any]], None]
_log = logging.getLogger(__name__)

# How long past the deadline call_model still waits for a call that should have timed out by itself.
_GRACE_S = 1.0
# How often a slow attempt whose hedge was refused asks the budget again.
_HEDGE_RECHECK_S = 0.25
# Past this multiple of its hedge threshold a call is taken for hung: its hedge needs no budget (far_overdue).
TAIL_MULTIPLE = 2.0
# Woken for a provider's stall, wait this much past the moment its calls turn overdue (clocks tick unevenly).
_STALL_SLACK_S = 0.005
# The jitter of a re-asked hedge's backoff (nothing depends on its sequence).
_JITTER = random.Random()


@dataclass(eq=False)  # calls are compared by identity: an abandoned call's fields change under its thread
class Call:
    """One provider call of a node execution; its result fields are written by its thread before it is queued."""

    step: ChainStep
    started_at: float  # the context's clock
    started: float  # monotonic
    hedge: bool
    slow_after_s: float = float("inf")  # past this the provider is slower than it usually is (inf: unknown)
    timeout_s: float = float("inf")  # the call's own sub-deadline
    gave_up: str | None = None  # why we stopped waiting for it, when not because another call answered
    probing: bool = False  # its provider's circuit was half-open at the start
    reply: ModelReply | None = None
    error: ProviderError | None = None
    latency_ms: float = 0.0
    problem: str | None = None  # why a successful reply is unusable (validate's rule)
    abort: threading.Event = field(default_factory=threading.Event)  # set: stop the call
    done: threading.Event = field(default_factory=threading.Event)  # set by its thread once the fields are written


# The calls whose threads still run, so that the interpreter's exit can stop them first (_stop_calls_at_exit).
_IN_FLIGHT: set[Call] = set()
# How long the exit waits for them, all together. Aborted, a network call ends in milliseconds and the local model
# at its next token; only work that cannot be aborted takes longer (a hedge's thread still importing its SDK or
# building its client, a model still loading), and killing that is the crash the wait is for. 1 s was too short
# under load: a cold hedge's import of the Gemini SDK outlived it (README's asyncio example, 1 exit in 20).
_EXIT_WAIT_S = 10.0


@atexit.register
def _stop_calls_at_exit() -> None:
    """Abort the calls still running (abandoned losers, a hedge past its answer) and wait for them, briefly.

    A daemon thread left running when the interpreter finalizes is stopped where it next needs the interpreter;
    inside a C++ frame (llama.cpp's abort callback, an SDK's extension module) that unwinding aborts the whole
    process (SIGABRT, "FATAL: exception not rethrown") after a Python program had printed its answer. Aborted, a
    cloud call's task is cancelled and the local model stops at its next check, so the wait is short; it is long
    only while a thread does what cannot be aborted (an import, a client's construction), which it must finish.
    """
    calls = list(_IN_FLIGHT)
    for call in calls:
        call.abort.set()
    until = time.monotonic() + _EXIT_WAIT_S
    for call in calls:
        call.done.wait(max(0.0, until - time.monotonic()))


@dataclass
class Group:
    calls: list[Call]
    finished: list[Call]
    chosen: Call | None  # the reply handed to validate: the first usable one, else the first reply at all
    not_made: tuple[ChainStep, str] | None = None  # a hedge the spend caps refused, and why


def steps_used(group: Group) -> int:
    """Return how many steps of the chain a race used: two when it hedged with the next step, one when it hedged
    with a duplicate (the same provider again, when no other adequate step follows) or not at all.

    Counted by calls, a duplicate's pair moved the cursor past the step after it: a fresh-fact question whose two
    Perplexity calls failed skipped its first last resort."""
    first = group.calls[0].step["provider"] if group.calls else None
    return 1 + any(c.hedge and c.step["provider"] != first for c in group.calls)


def in_record_order(group: Group) -> list[Call]:
    """Return the calls in the order :func:`record_group` records them: the chosen reply last."""
    return [c for c in group.calls if c is not group.chosen] + ([group.chosen] if group.chosen else [])


def hedge_not_made(registry: ProviderRegistry, group: Group, role: Role = "answer") -> list[Attempt]:
    """Return a skipped attempt for a hedge the spend caps refused, saying why (none when there was none)."""
    if group.not_made is None:
        return []
    step, why = group.not_made
    attempt = skipped_attempt(registry, step, role, why)
    attempt["hedge"] = True
    return [attempt]


def _estimated_cost(registry: ProviderRegistry, step: ChainStep, state: AnalysisState) -> float:
    classification = state.get("classification")
    if classification is None:
        return 0.0
    return estimate_call_cost(registry, step["provider"], classification, state["query"])


def race(
    registry: ProviderRegistry,
    clock: Callable[[], float],
    state: AnalysisState,
    cursor: int,
    prompt: Prompt,
    deadline_at: float,
    emit: Emit,
    stage: str | None = None,
    admit: Callable[[ChainStep], str | None] | None = None,
) -> tuple[Group, list[float] | None]:
    """Call the chain's step at ``cursor``; hedge with the next step if it is slow. Return the calls and the
    hedge's budget reservation (None when no hedge started). ``stage`` names the briefing stage in the progress
    events (None for an analysis). ``admit(step)`` says why the spend caps refuse a hedge (None: it may go)."""
    resilience = registry.settings.resilience
    chain = state["chain"]
    results: queue.Queue[Call] = queue.Queue()
    calls: list[Call] = []

    def launch(step: ChainStep, fallbacks_left: bool, hedge: bool, inline: bool = False) -> HedgeTiming:
        name = step["provider"]
        now = clock()
        breaker = registry.health.breaker(name)
        # One read of the provider's health for both (a Redis round trip when the health store is shared).
        latency, timing = breaker.latency_and_timing(registry.settings)
        cold_floor = cold_floor_of(registry, name)
        timeout_s = call_deadline_s(deadline_at - now, fallbacks_left, latency, resilience, cold_floor_s=cold_floor)
        call = Call(step=step, started_at=now, started=time.monotonic(), hedge=hedge, timeout_s=timeout_s)
        call.slow_after_s, call.probing = timing.slow_after_s, timing.probing
        calls.append(call)
        emit(AttemptStarted(provider=name, model=step["model"], hedge=hedge, stage=stage).wire())
        overdue_s = overdue_after_s(latency, timing)

        def run() -> None:
            try:
                call.reply, call.error = watched_call(registry, step, prompt, timeout_s, overdue_s, abort=call.abort)
            finally:
                _IN_FLIGHT.discard(call)
            call.latency_ms = (time.monotonic() - call.started) * 1000
            call.done.set()
            results.put(call)

        if inline:
            run()  # nothing can race it: no thread to start (bench/overhead.py), the call keeps its own timeout
            return timing
        # A daemon thread of our own per call: the loser of a hedge is abandoned (and then aborted), not joined,
        # and must not hold up the node nor the process's exit. It runs in a copy of this context, so the node's
        # callbacks follow the call: LangGraph's "messages" stream (a conversation's tokens), tracing spans and
        # LangSmith see the provider call.
        context = contextvars.copy_context()
        _IN_FLIGHT.add(call)
        threading.Thread(target=context.run, args=(run,), name=f"attempt-{name}", daemon=True).start()
        return timing

    first = chain[cursor]["provider"]
    hedge_step = chain[cursor + 1] if resilience.hedge.enabled and cursor + 1 < len(chain) else None
    if hedge_step is not None and hedge_step.get("last_resort") and not chain[cursor].get("last_resort"):
        # A last resort's answer is degraded: it is asked once every adequate step has failed, never raced
        # against one that may still answer.
        hedge_step = None
    if (
        hedge_step is not None
        and hedge_step["provider"] != first
        and _silent(registry, hedge_step)
        and _answering(registry, chain[cursor])
    ):
        # Racing a provider gone silent buys nothing: it would hang as well. In the chaos run's hung-primary rows,
        # Perplexity's slow calls were hedged with the hung Gemini (the route put it second) and ran their whole
        # tail (1.3 s) alone; a duplicate of the slow call is what can answer sooner. Only over a primary known to
        # answer: a duplicate of a provider that may itself be hung (no answers on record, or failing) would hang
        # beside it, and the silent one may be a false alarm (a cold start's slow first calls).
        hedge_step = None
    duplicate = hedge_step is None and resilience.hedge.enabled and registry.tier_of(first) != "local"
    if duplicate:
        # No other adequate step (fresh facts: only Perplexity serves them): the same provider again, as a second
        # request, which its load balancer most likely gives another replica ("The Tail at Scale"). A hung call
        # with nothing else adequate used to wait out its whole sub-deadline (2 s in the chaos run). Never the
        # local model: it runs one call at a time, so a duplicate would only queue behind the call it hedges.
        hedge_step = chain[cursor]
    # A retry of a step (a retry_at was set: the retry policy, or the chain asked again) has something after it even
    # as the chain's last step: another retry, or the chain asked again. It gets its provider's own limit, not all
    # the time left, which a hung provider asked again would hold to the deadline.
    retrying = state.get("retry_at") is not None
    hedge_fallbacks_left = retrying or (cursor + 1 < len(chain) if duplicate else cursor + 2 < len(chain))
    # A provider that has gone silent (calls overdue, none answered after them) is hedged at the floor from the start.
    stalled = hedge_step is not None and registry.health.stalls.stalled(first)
    # Without a possible hedge the call is made in this thread: nothing will race or abandon it.
    timing = launch(chain[cursor], retrying or cursor + 1 < len(chain), hedge=False, inline=hedge_step is None)
    hedge_after_s = min(timing.hedge_after_s, resilience.hedge.min_after_s) if stalled else timing.hedge_after_s
    hedge_at = time.monotonic() + hedge_after_s if hedge_step is not None else None
    limit = time.monotonic() + max(0.0, deadline_at - clock()) + _GRACE_S
    reservation: list[float] | None = None
    refused = False
    finished: list[Call] = []
    winner: Call | None = None
    waiting_for: tuple[Call, str] | None = None  # one call of the pair failed: the other, given until its usual latency
    rehedge_at: float | None = None  # when a failed hedge is asked again (once) while the primary still runs
    rehedged = False
    not_made: tuple[ChainStep, str] | None = None
    while len(finished) < len(calls):
        waiting_to_hedge = hedge_at is not None and hedge_step is not None and len(calls) == 1
        # While waiting to hedge, wake every recheck interval: the provider may start failing meanwhile; and at the
        # moment its calls in flight would show it silent (providers/resilience/stall.py), if that comes sooner.
        recheck = time.monotonic() + _HEDGE_RECHECK_S
        if waiting_to_hedge:
            stall_due_s = registry.health.stalls.stalled_in(first)
            if 0.0 < stall_due_s < _HEDGE_RECHECK_S:
                recheck = time.monotonic() + stall_due_s + _STALL_SLACK_S
        until = min(hedge_at, limit, recheck) if waiting_to_hedge and hedge_at is not None else limit
        if rehedge_at is not None:
            until = min(until, rehedge_at)
        try:
            call = results.get(timeout=max(0.0, until - time.monotonic()))
        except queue.Empty:
            if rehedge_at is not None and rehedge_at <= time.monotonic() < limit:
                rehedge_at = None
                # A third paid call: it must fit the spend caps like the first hedge did.
                why = admit(calls[1].step) if admit is not None else None
                if why is not None:
                    not_made = (calls[1].step, why)
                    emit(HedgeRefused(provider=calls[1].step["provider"]).wire())
                else:
                    launch(calls[1].step, hedge_fallbacks_left, hedge=True)
                continue
            if waiting_to_hedge and hedge_step is not None and hedge_at is not None and time.monotonic() < hedge_at:
                # Woken before the hedge is due: if other requests' calls to this provider have failed since this
                # one started (a provider starting to hang), a suspect provider is hedged at the floor.
                if _suspect(registry, calls[0]):
                    hedge_at = min(hedge_at, calls[0].started + resilience.hedge.min_after_s)
                if time.monotonic() < hedge_at:
                    continue
            if waiting_to_hedge and hedge_step is not None and time.monotonic() < limit:
                reservation = _reserve_hedge(registry, clock, state, hedge_step, deadline_at, calls[0])
                why = admit(hedge_step) if reservation is not None and admit is not None else None
                if why is not None and reservation is not None:
                    # The spend caps hold no room for it: not asked again, since a cap does not refill while
                    # the analysis waits. The primary runs on alone; the next step stays a fallback.
                    registry.hedge_budget.refund(reservation)
                    reservation, hedge_at, not_made = None, None, (hedge_step, why)
                    emit(HedgeRefused(provider=hedge_step["provider"]).wire())
                elif reservation is not None:
                    hedge_at = None
                    launch(hedge_step, hedge_fallbacks_left, hedge=True)
                else:
                    # Refused (budget, or the hedge's provider is unavailable): ask again a little later, since
                    # the budget refills as other answers are paid for. Without this a hung primary that missed
                    # its hedge would wait for its full timeout.
                    if not refused:
                        emit(HedgeRefused(provider=hedge_step["provider"]).wire())
                    refused = True
                    hedge_at = time.monotonic() + _HEDGE_RECHECK_S
                    far_at = calls[0].started + TAIL_MULTIPLE * calls[0].slow_after_s + 0.001
                    if time.monotonic() < far_at:  # ask again the moment it is far overdue (far_overdue)
                        hedge_at = min(hedge_at, far_at)
                    if _gave_up(registry, calls[0]):
                        # Its provider started failing while we waited (other requests' calls to it failed) and
                        # the call is past its provider's short leash: a failover, not a duplicate.
                        calls[0].gave_up = "its provider is failing and the hedge was refused"
                        calls[0].abort.set()
                        emit(AttemptAbandoned(provider=calls[0].step["provider"]).wire())
                        break
                continue
            if waiting_for is not None and waiting_for[0] not in finished:
                late, why = waiting_for
                late.gave_up = why
                late.abort.set()
                emit(AttemptAbandoned(provider=late.step["provider"]).wire())
            break  # past the deadline and the grace: whatever still runs is abandoned
        finished.append(call)
        if call.reply is not None:
            vendor = registry.vendor_of(call.step["provider"])
            cites = registry.provider_settings(call.step["provider"]).cites
            call.problem = problem_with(candidate_from(call.reply, call.step, vendor), state, cites)
            if call.problem is None:
                winner = call
                break
        if len(calls) == 1:
            break  # the attempt ended before any hedge started: the router decides what comes next
        if call.hedge and calls[0] not in finished and not rehedged:
            # The hedge failed with an error worth a retry (a 500, a 429, a malformed body) while the primary, already
            # slower than usual, still runs: the hedge is asked again, once, after the retry policy's wait. Before,
            # the analysis waited for the primary (its usual latency plus the grace) and only then retried: the
            # slowest analyses of the chaos run's random errors (2-3.5 s).
            wait = _rehedge_wait(registry, call, deadline_at - clock())
            rehedged = True
            if wait is not None:
                rehedge_at = time.monotonic() + wait
                continue
        other = next((c for c in calls if c is not call and c not in finished), None)
        if other is not None and waiting_for is None:
            # One call of the pair failed and the other still runs: wait for it only as long as a loser would be
            # given (its usual latency plus the grace), not to its sub-deadline; then the router moves on (a retry,
            # the next step, the chain asked again). The hedge failed and the primary, already slower than usual,
            # still ran: a hang in a run with random errors cost its whole sub-deadline (3.5 s). The primary failed
            # and its hedge hung: a last step's hedge has the whole time left as its sub-deadline (20 s).
            usual_s, ran_past = _waited_for_s(registry, other)
            limit = min(limit, other.started + usual_s + resilience.deadlines.loser_grace_s)
            waiting_for = (
                other,
                f"its hedge failed and {ran_past}" if call.hedge else f"the call it hedged failed and {ran_past}",
            )
    chosen = winner or next((c for c in finished if c.reply is not None), None)
    return Group(calls, finished, chosen, not_made), reservation


def _waited_for_s(registry: ProviderRegistry, call: Call) -> tuple[float, str]:
    """Return how long the call still running once the other of its pair failed is given (from its start, before
    the grace), and what that is: its provider's usual latency; when that is not known (too few answers on record),
    the limit its provider gets with a fallback left (nodes/policy/deadlines.py own_limit_s), which the failed
    call's step now is; never more than its own sub-deadline.

    The usual latency alone left the call of a provider with too few answers on record its sub-deadline, which for
    a last step is all the time left: in the chaos run's random errors (seed 12) a hedge held its analysis for
    29.7 s after the call it hedged had failed, and the analysis ended unanswered at its deadline.
    """
    if call.slow_after_s != float("inf"):
        return min(call.slow_after_s, call.timeout_s), "it ran past its provider's usual latency and the grace"
    resilience = registry.settings.resilience
    name = call.step["provider"]
    view = registry.health.breaker(name).latency_view(resilience.hedge.mad_k)
    if registry.health.stalls.stalled(name):
        view = dataclasses.replace(view, suspect=True)  # gone silent: the short leash of a failing provider
    own_s = own_limit_s(view, resilience, cold_floor_s=cold_floor_of(registry, name))
    return min(own_s, call.timeout_s), "it ran past the limit its provider gets before its latency is known"


def _silent(registry: ProviderRegistry, step: ChainStep) -> bool:
    """Say whether the step's provider was silent when the analysis was routed or has gone silent since."""
    return bool(step.get("silent")) or registry.health.stalls.stalled(step["provider"])


def _answering(registry: ProviderRegistry, step: ChainStep) -> bool:
    """Say whether the step's provider is known to answer: enough answers on record for a latency estimate, its
    latest call not failed, and not gone silent."""
    resilience = registry.settings.resilience
    view = registry.health.breaker(step["provider"]).latency_view(resilience.hedge.mad_k)
    warm = view.samples >= resilience.deadlines.min_samples
    return warm and not view.suspect and not registry.health.stalls.stalled(step["provider"])


def _rehedge_wait(registry: ProviderRegistry, hedge: Call, remaining_s: float) -> float | None:
    """Return how long to wait before asking a failed hedge's provider again, or None when the retry policy (its
    disposition, the wait cap, the deadline, the provider's retry budget) or its availability says no."""
    error, name = hedge.error, hedge.step["provider"]
    if error is None or error.disposition != "retry" or not registry.availability(name).available:
        return None
    policy = registry.settings.resilience.retry
    breaker = registry.health.breaker(name)
    wait = retry_wait_s(error, made=1, remaining_s=remaining_s, policy=policy, rng=_JITTER)
    if wait is None or not breaker.retry_allowed(policy.budget_ratio):
        return None
    breaker.note_retry()
    return wait


def _suspect(registry: ProviderRegistry, call: Call) -> bool:
    """Say whether the call's provider has failed since (its latest recorded call failed) or has gone silent
    (other calls to it are overdue and it has not answered since)."""
    resilience = registry.settings.resilience
    name = call.step["provider"]
    return registry.health.breaker(name).latency_view(resilience.hedge.mad_k).suspect or registry.health.stalls.stalled(
        name
    )


def _gave_up(registry: ProviderRegistry, call: Call) -> bool:
    """Say whether a call whose hedge was refused should be given up now: its provider is suspect (its latest
    call failed) and the call has run past the sub-deadline a suspect provider gets (nodes/policy/deadlines.py).

    The call's own timeout was fixed when it started, from what was known then (a cold process knows nothing);
    the failures of other requests' calls since then are evidence too.
    """
    name = call.step["provider"]
    resilience = registry.settings.resilience
    latency = registry.health.breaker(name).latency_view(resilience.hedge.mad_k)
    if not latency.suspect:
        return False
    cold_floor = cold_floor_of(registry, name)
    return time.monotonic() - call.started >= own_limit_s(latency, resilience, cold_floor_s=cold_floor)


def _reserve_hedge(
    registry: ProviderRegistry,
    clock: Callable[[], float],
    state: AnalysisState,
    step: ChainStep,
    deadline_at: float,
    primary: Call,
) -> list[float] | None:
    """Reserve the hedge's cost in the hedge budget; over a provider that has not answered once on record, or that
    has gone silent (providers/resilience/stall.py), grant it regardless: a hedge over it is a failover, not a
    duplicate.

    Without that, a cold server meeting a hung primary had its first few requests hedged (the bucket's burst)
    and the rest waited for their calls' cold sub-deadline, since a hang is recorded only once its call is
    given up. What it can cost: while a slow but healthy provider makes its first answer, every call to it is
    hedged once; its first answer ends that.
    """
    if deadline_at - clock() < registry.settings.resilience.retry.min_attempt_s:
        return None
    if not registry.availability(step["provider"]).available:
        return None
    resilience = registry.settings.resilience
    name = primary.step["provider"]
    never_answered = registry.health.breaker(name).latency_view(resilience.hedge.mad_k).samples == 0
    # Over a silent provider the hedge is a failover as well: a hung call generates nothing to bill. A second
    # request to the same provider is always a duplicate (it would hang or be billed alike).
    failover = (never_answered or registry.health.stalls.stalled(name)) and step["provider"] != name
    return registry.hedge_budget.try_reserve(
        _estimated_cost(registry, step, state), failover=failover or far_overdue(primary)
    )


def far_overdue(call: Call) -> bool:
    """Say whether a call has run ``TAIL_MULTIPLE`` x past its provider's hedge threshold (known latencies only).

    Such a call is far more likely hung than slow, so its hedge is granted outside the budget: a healthy call gets
    there about once in a hundred (log-normal latencies with bench/chaos.py's spread: the threshold is about the
    p95, twice it about the p99), which bounds what these hedges can duplicate. Without it, once the budget was
    spent on ordinary slow calls (20% random errors: hedges at the p95 use up 10% within seconds), a call that
    hung waited out its sub-deadline (3 x p95, 2.2 s) before the next step: the chaos run's slowest analyses.
    """
    if call.slow_after_s == float("inf"):
        return False
    return time.monotonic() - call.started >= TAIL_MULTIPLE * call.slow_after_s


def record_group(
    registry: ProviderRegistry,
    state: AnalysisState,
    group: Group,
    reservation: list[float] | None,
    *,
    wait: Callable[[threading.Event, float], bool] | None = None,
    on_settled: Callable[[int, float], None] | None = None,
) -> list[Attempt]:
    """Turn the calls into attempts (the chosen reply last, where validate and score look for it), and count
    them in health, spend and the hedge budget; abandoned calls are settled later by :func:`settle_abandoned`.
    ``on_settled(position, usd)`` gets the real cost of an abandoned call that completes after all (its position
    in the returned attempts), so whoever recorded the estimate can correct it (the cost ledger).

    What hedging added is the hedge call's cost, whichever call won: had the primary answered without it, the
    hedge is all we paid on top (when the primary was hung, this overstates the extra, which errs on the side of
    the budget). Counting the loser instead would let a slow free primary (the local model) hedge to a paid
    provider without limit.
    """
    attempts: list[Attempt] = []
    abandoned: list[tuple[Call, float, int]] = []
    hedge_usd = 0.0
    for call in in_record_order(group):
        step = call.step
        if call in group.finished:
            invalid = call.reply is not None and call is not group.chosen
            attempt = make_attempt(
                registry,
                step,
                "answer",
                reply=call.reply,
                error=call.error,
                latency_ms=call.latency_ms,
                started_at=call.started_at,
                outcome="invalid" if invalid else None,
                note=call.problem if invalid else None,
            )
            if invalid:
                attempt["error_class"] = "invalid_answer"
            registry.health.record(
                step["provider"],
                ok=call.error is None,
                latency_ms=attempt["latency_ms"],
                error_class=call.error.error_class if call.error else None,
                retry_after_s=call.error.retry_after_s if call.error else None,
            )
            if not call.hedge:
                registry.hedge_budget.record_spend(attempt["cost_usd"])
        else:
            latency_ms = (time.monotonic() - call.started) * 1000
            other = group.chosen.step["provider"] if group.chosen else None
            cost = _estimated_cost(registry, step, state)
            attempt = make_attempt(
                registry,
                step,
                "answer",
                reply=None,
                error=None,
                latency_ms=latency_ms,
                started_at=call.started_at,
                outcome="cancelled",
                note=(
                    f"abandoned after {latency_ms:.0f} ms: {other} answered first"
                    if other
                    else f"abandoned after {latency_ms:.0f} ms: {call.gave_up}"
                    if call.gave_up
                    else "past the deadline"
                )
                + "; the call may still be billed, so its cost is the estimate until it completes",
            )
            # Given up on (it ran past its provider's usual latency), a call is as good as timed out; overtaken by
            # an answer, it says nothing about its provider.
            attempt["error_class"] = "timeout" if call.gave_up and not other else "cancelled"
            attempt["cost_usd"] = round(cost, 8)
            abandoned.append((call, cost, len(attempts)))
        if call.hedge:
            attempt["hedge"] = True
            hedge_usd += attempt["cost_usd"]
        attempts.append(attempt)
    if reservation is not None:
        registry.hedge_budget.settle(reservation, hedge_usd)
    # After the reservation's first settlement, so a loser's real cost replaces the estimate and not the reverse.
    grace_s = registry.settings.resilience.deadlines.loser_grace_s
    hedge_won = group.chosen is not None and group.chosen.hedge
    for call, cost, position in abandoned:
        on_cost = None if on_settled is None else functools.partial(on_settled, position)
        if call.hedge:
            settle_abandoned(registry, call, cost, reservation, grace_s=grace_s, wait=wait, on_cost=on_cost)
        else:
            won = (reservation, hedge_usd) if hedge_won and reservation is not None else None
            settle_abandoned(registry, call, cost, None, grace_s=grace_s, wait=wait, hedge_won=won, on_cost=on_cost)
    return attempts


# Abandoned calls still being settled in the background: their real cost goes to the ledger when they complete.
_SETTLING: set[threading.Thread] = set()


def wait_for_settlements(timeout_s: float) -> int:
    """Wait, at most ``timeout_s`` in all, for abandoned calls still being settled; return how many are left.

    For a host that closes its stores while its process goes on (the end of an ``open_orchestrator`` block,
    bench/chaos.py between scenarios): a loser that completes after its ledger has closed cannot correct its
    estimated cost to its real one ("its store is gone" at the end of every scenario). Each settlement ends within
    its call's usual latency plus the grace. Not done when a process exits: the CLI must exit within a second of
    printing, so its losers are aborted instead (``_stop_calls_at_exit``) and keep their estimates, which is what
    "counted in full" means."""
    until = time.monotonic() + timeout_s
    for thread in list(_SETTLING):
        thread.join(max(0.0, until - time.monotonic()))
    return sum(1 for thread in list(_SETTLING) if thread.is_alive())


def _event_wait(event: threading.Event, timeout_s: float) -> bool:
    return event.wait(timeout_s)


def settle_abandoned(
    registry: ProviderRegistry,
    call: Call,
    estimated_usd: float,
    reservation: list[float] | None,
    *,
    grace_s: float,
    wait: Callable[[threading.Event, float], bool] | None = None,
    background: bool = True,
    hedge_won: tuple[list[float], float] | None = None,
    on_cost: Callable[[float], None] | None = None,
) -> None:
    """Give an abandoned call until its provider's usual latency plus ``grace_s`` to finish, then abort it.

    Finished in time: its real outcome goes to the provider's health and its real cost to the hedge budget (a
    loser that answers was billed for what it used). Not finished: it is aborted, counted as a timeout (a call
    that ran past its provider's usual latency and the grace was too slow, so a hung provider's circuit opens
    after a few of them) and its cost is the full estimate, since the provider may bill it anyway. ``wait`` is
    injected by tests (it stands in for ``Event.wait``); ``background=False`` settles in the caller's thread.

    ``hedge_won`` (the hedge's reservation and cost) is given for a primary overtaken by its hedge. When that
    primary never answers, the hedge duplicated nothing: it was a failover from a hung call, so its cost moves
    from the hedge budget's extra to ordinary spend. Without this a cold process that meets a hung provider spends
    its whole hedge budget on the first few hangs and waits out every later one.

    ``on_cost`` gets the real cost of a call that completed (its attempt was recorded at the estimate); an
    aborted call keeps the estimate, which is what its attempt already says.
    """
    waiter = wait or _event_wait
    # Its provider's usual latency; before that is known, the call's own sub-deadline (a slow but healthy
    # provider answers within it, a hung one does not).
    usual_s = min(call.slow_after_s, call.timeout_s)
    budget_s = max(0.0, call.started + usual_s + grace_s - time.monotonic())
    if usual_s == float("inf"):
        budget_s = grace_s

    def settle() -> None:
        name = call.step["provider"]
        # A call we aborted ourselves (given up on) ends with CallAborted: what it used is unknown, like a hang's.
        completed = waiter(call.done, budget_s) and not isinstance(call.error, CallAborted)
        if completed:
            ok = call.error is None
            usd = 0.0
            if call.reply is not None:
                price = registry.price_of(name, call.reply.model)
                usd = price.cost_usd(call.reply.input_tokens, call.reply.output_tokens)
            registry.health.record(
                name,
                ok=ok,
                latency_ms=call.latency_ms,
                error_class=call.error.error_class if call.error else None,
                retry_after_s=call.error.retry_after_s if call.error else None,
            )
        else:
            call.abort.set()
            usd = estimated_usd
            latency_ms = (time.monotonic() - call.started) * 1000
            registry.health.record(name, ok=False, latency_ms=latency_ms, error_class="timeout")
            if hedge_won is not None:
                won_reservation, won_usd = hedge_won
                registry.hedge_budget.refund(won_reservation)
                registry.hedge_budget.record_spend(won_usd)
        if reservation is not None:
            registry.hedge_budget.settle(reservation, usd)
        else:
            registry.hedge_budget.record_spend(usd)
        if on_cost is not None and completed:
            try:
                on_cost(usd)
            except Exception:  # a store that is down leaves the estimate standing; it must not kill the thread
                _log.warning("could not correct an abandoned %s call's cost: its store is gone", call.step["provider"])

    if background:

        def settle_and_leave() -> None:
            try:
                settle()
            finally:
                _SETTLING.discard(threading.current_thread())

        thread = threading.Thread(target=settle_and_leave, name=f"settle-{call.step['provider']}", daemon=True)
        _SETTLING.add(thread)
        thread.start()
    else:
        settle()
