"""How `strategist analyze | brief | resume` show a run's progress events (graphs/events.py) as it runs.

- On a terminal: each finished step as a line, and below them a spinner naming what runs now (rich's status
  line, redrawn in place; rich also strips the redraws when the terminal cannot take them).
- Not a terminal (a pipe, a log file, CI): the same lines, plain, one per event, flushed as they come.
- ``--stream --json``: every event as one JSON line on standard output (its JSON form), then one last line
  ``{"event": "result", "result": {...}}``; what to resume, errors and notices stay on standard error.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any

from rich.console import Console

from graphs.events import (
    AttemptAbandoned,
    AttemptEnded,
    AttemptStarted,
    Classified,
    Completed,
    ConfidenceScored,
    CostSoFar,
    CredibilityScored,
    CrossChecked,
    CrossCheckStarted,
    Event,
    Failed,
    GatherFinished,
    GatherStarted,
    HedgeRefused,
    PlanMade,
    RateLimitWait,
    RetryScheduled,
    Routed,
    Sanitised,
    ThreadStarted,
    UnknownEvent,
    Validated,
    Waiting,
    WardDataRead,
    parse_event,
)

Sink = Callable[[dict[str, Any]], None]


def describe(event: Event) -> list[str]:
    """Return the lines a person reads for one event (none for bookkeeping events)."""
    match event:
        case ThreadStarted():
            return []  # the command names the thread itself, first, before anything can fail
        case Classified():
            fresh = "needs fresh facts" if event.needs_fresh else "no fresh facts needed"
            return [f"classify: {event.complexity} {event.task}, {fresh} (p={event.fresh_p:.2f})"]
        case Routed(chain=chain):
            steps = " -> ".join(f"{s.provider} ({s.tier})" for s in chain) or "no provider"
            return [f"route: {steps}", *(f"  because {s.provider}: {s.reason}" for s in chain[:1] if s.reason)]
        case AttemptStarted():
            if event.stage == "write":
                return [f"write: asking {event.provider} ({event.model}) ..."]
            return [f"  -> {'hedging with' if event.hedge else 'asking'} {event.provider} ({event.model}) ..."]
        case AttemptEnded():
            who = f"  {event.role} by {event.provider}"
            if event.outcome == "ok":
                return [f"{who}: answered in {event.latency_ms:.0f} ms, ${event.cost_usd:.4f}"]
            return [f"{who}: {event.outcome} {event.error_class or ''} ({event.error or 'no detail'})"]
        case Waiting():
            return [waiting_line(event)]
        case AttemptAbandoned():
            return [f"  gave up on {event.provider} (it started failing elsewhere): the next provider goes"]
        case HedgeRefused():
            return [f"  hedge to {event.provider} refused (budget or availability)"]
        case RetryScheduled():
            return [f"  retrying {event.provider} in {event.wait_s:.1f} s"]
        case RateLimitWait():
            return [f"  {event.provider} asked to wait (rate limit): asking it in {event.wait_s:.1f} s"]
        case Validated():
            if event.verdict == "rejected":
                return [f"validate: {event.provider}'s answer rejected: {event.reason}"]
            return [f"validate: {event.provider}'s answer accepted; cascade {event.escalation}: {event.reason}"]
        case CrossCheckStarted():
            return [f"cross-check: asking {event.provider} ..."]
        case CrossChecked():
            return [f"cross-check: {event.provider} agrees {event.agreement:.2f}"]
        case ConfidenceScored():
            factors = ", ".join(f"{f.name} {f.value:.2f}" for f in event.factors) or "no factor measured"
            return [f"score: confidence {event.value:.2f} ({factors})"]
        case CostSoFar():
            return []  # shown with the attempts and at the end; a line per attempt would double them
        case PlanMade(questions=questions):
            return [f"plan: {len(questions)} research questions", *(f"  ? {q}" for q in questions)]
        case GatherStarted():
            return [f"gather {event.question}: researching ..."]
        case GatherFinished():
            found = f"{event.sources} sources from {event.provider}" if event.provider else event.error
            return [f"gather {event.question}: {found}"]
        case WardDataRead():
            return [f"ward data: {event.items} items" + (f" ({event.error})" if event.error else "")]
        case CredibilityScored():
            return [f"credibility: {event.sources} sources scored, {event.weak} weak"]
        case Sanitised():
            return [f"sanitise: {event.redactions} redactions, {event.filtered} filtered"]
        case Completed():
            used = ", ".join(event.providers) or "no provider"
            return [f"done: {used}; confidence {event.confidence:.2f}; cost ${event.cost_usd:.4f}"]
        case Failed():
            return [f"stopped: {event.error_class}: {event.message}"]
    return []


def waiting_line(event: Waiting) -> str:
    """Return the notice that the thread runs in another process and this one waits (shown in every mode)."""
    return f"thread {event.thread_id} is running in another process: waiting up to {event.wait_s:g}s for it"


def _typed(raw: dict[str, Any]) -> Event | None:
    try:
        return parse_event(raw)
    except UnknownEvent:
        return None


def plain_sink(out: IO[str]) -> Sink:
    """Return a sink printing each event's lines, flushed (for pipes and logs)."""

    def sink(raw: dict[str, Any]) -> None:
        event = _typed(raw)
        for line in describe(event) if event is not None else []:
            print(line, file=out, flush=True)

    return sink


def json_sink(out: IO[str] | None) -> Sink:
    """Return a sink printing each event's JSON form as one line (``out`` None: none); a wait is also said on
    standard error, in every mode, since the command may sit there for a while."""

    def sink(raw: dict[str, Any]) -> None:
        if out is not None:
            print(json.dumps(raw, separators=(",", ":"), ensure_ascii=False), file=out, flush=True)
        event = _typed(raw) if raw.get("event") == "waiting" else None
        if isinstance(event, Waiting):
            print(waiting_line(event), file=sys.stderr, flush=True)

    return sink


@contextlib.contextmanager
def terminal_sink(console: Console) -> Iterator[Sink]:
    """Yield a sink that prints finished steps above a live status line naming the running step."""
    with console.status("starting ...") as status:

        def sink(raw: dict[str, Any]) -> None:
            event = _typed(raw)
            if event is None:
                return
            for line in describe(event):
                if line.endswith("..."):  # a step that runs now: the status line, replaced by the next one
                    status.update(line.strip())
                else:
                    console.print(line, highlight=False, markup=False)
            if isinstance(event, CostSoFar):
                status.update(f"spent ${event.cost_usd:.4f} on {event.attempts} calls so far ...")

        yield sink


@contextlib.contextmanager
def progress_sink(*, as_json: bool, stream: bool) -> Iterator[Sink]:
    """Yield where a command sends its events: JSON lines, the terminal display, plain lines, or nowhere.

    ``--json`` alone prints only the result (and a wait notice on standard error); ``--stream --json`` prints
    every event first.
    """
    if as_json:
        yield json_sink(sys.stdout if stream else None)
        return
    if sys.stderr.isatty():
        with terminal_sink(Console(file=sys.stderr)) as sink:
            yield sink
        return
    yield plain_sink(sys.stderr)


def print_result_line(result: Any) -> None:
    """Print the last line of ``--stream --json``: the whole result as ``{"event": "result", "result": ...}``."""
    body = result.model_dump(mode="json")
    print(json.dumps({"event": "result", "result": body}, separators=(",", ":"), ensure_ascii=False), flush=True)
