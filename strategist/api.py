"""The Python API: analyse a query in one call, synchronously or from asyncio, streaming progress or not.

Every function takes an optional ``orchestrator``. Without one, the process-wide default is used: built from the
environment (``load_settings``) with the configured stores (SQLite under ``STRATEGIST_DATA_DIR``, or Redis with
``REDIS_URL``), opened on first use and closed at exit, so analyses are checkpointed and costed as the CLI's are.
Pass your own ``Orchestrator(registry, checkpointer=...)`` to use no checkpointer or a saver of your own.

The async forms run the graph in a worker thread: the nodes make blocking provider calls under their own
deadlines, and a thread works with every saver (SqliteSaver has no async methods) without blocking the event
loop. A cancelled ``aanalyze``/``astream`` stops waiting at once; the analysis itself runs to its end in its
thread and stays checkpointed, so ``resume`` can pick it up or return it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from graphs.request import AnalysisRequest, parse_request
from graphs.result import AnalysisResult
from graphs.service import Orchestrator
from graphs.stores import open_stores
from graphs.ward_reports import get_ward_report
from nodes.policy.hedging import wait_for_settlements
from providers.config import Settings, load_settings
from providers.registry import ProviderRegistry

Event = dict[str, Any]
# The last event of a stream: {"event": "result", "result": AnalysisResult}.
RESULT = "result"

_default: Orchestrator | None = None
_default_lock = threading.Lock()


# How long the end of an ``open_orchestrator`` block waits for hedge losers still finishing: each ends within its
# provider's usual latency plus the loser grace (nodes/policy/hedging.py), so this is a bound, not a delay.
SETTLE_WAIT_S = 5.0


@contextlib.contextmanager
def _orchestrator_over_stores(settings: Settings | None) -> Iterator[Orchestrator]:
    settings = settings or load_settings()
    with open_stores(settings) as stores:
        yield Orchestrator(ProviderRegistry(settings), stores.checkpointer, stores.ledger, stores.feedback)


@contextlib.contextmanager
def open_orchestrator(settings: Settings | None = None) -> Iterator[Orchestrator]:
    """Open an orchestrator over the configured stores for the block (checkpoints, ledger, feedback).

    When the block ends, the losers of hedged calls still finishing are waited for (at most ``SETTLE_WAIT_S``), so
    that their real cost reaches the ledger before it closes: the process goes on after the block, and without the
    wait their corrections came after the ledger had closed and were lost. Process exit does not wait (the CLI,
    the default orchestrator): the losers are aborted and keep their estimated cost, in full.
    """
    with _orchestrator_over_stores(settings) as orchestrator:
        yield orchestrator
        wait_for_settlements(SETTLE_WAIT_S)


def default_orchestrator() -> Orchestrator:
    """Return the process-wide orchestrator from the environment, opening its stores on first use."""
    global _default
    with _default_lock:
        if _default is None:
            stack = contextlib.ExitStack()
            _default = stack.enter_context(_orchestrator_over_stores(None))
            atexit.register(stack.close)
        return _default


def _request(query: str | AnalysisRequest, options: dict[str, Any]) -> AnalysisRequest:
    if isinstance(query, AnalysisRequest):
        if options:
            return query.model_copy(update=options)
        return query
    return parse_request({"query": query, **options})


def analyze(
    query: str | AnalysisRequest,
    *,
    orchestrator: Orchestrator | None = None,
    thread_id: str | None = None,
    caller_key: str | None = None,
    **options: Any,
) -> AnalysisResult:
    """Answer one query: route it, call the provider(s), score the answer; return the result.

    ``options`` are the request's fields (``depth``, ``ward``, ``context``, ``max_cost_usd``, ``deadline_s``,
    ``require_citations``, ``cost_sensitive``, ``cross_check``); a bad one raises ``RequestError``. A result
    without an answer says why in ``result.error`` (no provider could answer): it does not raise.
    """
    request = _request(query, options)
    runner = orchestrator or default_orchestrator()
    return runner.analyze(request, thread_id=thread_id, caller_key=caller_key)


def stream(
    query: str | AnalysisRequest,
    *,
    orchestrator: Orchestrator | None = None,
    thread_id: str | None = None,
    caller_key: str | None = None,
    **options: Any,
) -> Iterator[Event]:
    """Answer one query, yielding progress events as the graph runs and finally ``{"event": "result", ...}``.

    Progress events are dicts with an ``event`` key: ``thread``, ``node`` (a step finished), ``attempt_start``,
    ``attempt_end`` (with the attempt's provider, outcome, latency and cost), ``validated``, ``retry_scheduled``,
    ``cross_check_start`` and the like.
    """
    request = _request(query, options)
    runner = orchestrator or default_orchestrator()
    events: queue.Queue[Event | BaseException] = queue.Queue()

    def run() -> None:
        try:
            result = runner.analyze(request, thread_id=thread_id, caller_key=caller_key, on_event=events.put)
        except BaseException as exc:  # handed to the consumer, who re-raises it in its own thread
            events.put(exc)
        else:
            events.put({"event": RESULT, "result": result})

    threading.Thread(target=run, name="strategist-stream", daemon=True).start()
    while True:
        item = events.get()
        if isinstance(item, BaseException):
            raise item
        yield item
        if item.get("event") == RESULT:
            return


async def aanalyze(
    query: str | AnalysisRequest,
    *,
    orchestrator: Orchestrator | None = None,
    thread_id: str | None = None,
    caller_key: str | None = None,
    **options: Any,
) -> AnalysisResult:
    """Answer one query from asyncio (the graph runs in a worker thread); see ``analyze``."""
    request = _request(query, options)
    runner = orchestrator or default_orchestrator()
    return await asyncio.to_thread(runner.analyze, request, thread_id=thread_id, caller_key=caller_key)


async def astream(
    query: str | AnalysisRequest,
    *,
    orchestrator: Orchestrator | None = None,
    thread_id: str | None = None,
    caller_key: str | None = None,
    **options: Any,
) -> AsyncIterator[Event]:
    """Answer one query from asyncio, yielding progress events and finally the result event; see ``stream``."""
    request = _request(query, options)
    runner = orchestrator or default_orchestrator()
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Event | BaseException] = asyncio.Queue()

    def put(item: Event | BaseException) -> None:
        loop.call_soon_threadsafe(events.put_nowait, item)

    def run() -> None:
        try:
            result = runner.analyze(request, thread_id=thread_id, caller_key=caller_key, on_event=put)
        except BaseException as exc:
            put(exc)
        else:
            put({"event": RESULT, "result": result})

    threading.Thread(target=run, name="strategist-astream", daemon=True).start()
    while True:
        item = await events.get()
        if isinstance(item, BaseException):
            raise item
        yield item
        if item.get("event") == RESULT:
            return


def brief(ward: str, depth: str = "standard", *, context: str = "neutral") -> dict[str, Any]:
    """Return a ward's briefing as the contract's dict (served from the briefing cache while it is fresh).

    ``depth`` is quick, standard or deep; ``context`` defensive, neutral or offensive (other values become the
    defaults, as on the HTTP route). Raises ``RequestError`` for a blank ward and ``BriefingFailed`` when nothing
    at all could be said.
    """
    briefing, _etag, _ttl = get_ward_report(ward, depth, context=context)
    return briefing
