"""Ward briefings as a service: the briefing graph behind a cache, an ETag and single flight.

- ``WardReports.report(ward, depth, context)`` answers from the cache (graphs/stores/briefing_cache.py) while
  the entry lives; otherwise it runs the briefing graph once, stores the briefing with a strong ETag (a hash of
  the stored bytes, so stable for as long as the entry lives) and answers it.
- Single flight: concurrent requests for one uncached briefing run ONE analysis. In a process, the first request
  leads and the others wait on its future (and get its result, or its error). Across processes, the leader
  takes the store's lease on the key; a leader that finds the lease taken waits for the holder's entry, and
  takes over if the holder died or failed.
- Spend caps: a briefing run here reserves against the day's cap and its caller's (``caller_key``, the
  ``X-Session-Id`` of the request that started it; concurrent callers of one briefing share the leader's run,
  so only the leader's caller is charged). A briefing the caps refused raises :class:`BriefingOverBudget` and
  nothing is cached; an answer from the cache costs nothing and is never refused.
- ``get_ward_report(ward, depth)``: the synchronous function the strategist backend imports, on a process-wide
  service opened from the environment (the same one ``app.create_app()`` serves).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver

from graphs.briefing import build_briefing_graph
from graphs.briefing_result import BriefingResult
from graphs.context import Context
from graphs.errors import CheckpointStoreError, RequestError, UnknownThread
from graphs.events import EventDeriver, Failed, ThreadStarted
from graphs.progress_hub import LocalHub, ProgressHub
from graphs.state import StrategicContext
from graphs.stores import describe_store, is_store_failure, open_stores, store_failure_text
from graphs.stores.briefing_cache import (
    CACHE_PREFIX,
    BriefingCache,
    CachedBriefing,
    cache_key,
    glob_escape,
    open_briefing_cache,
)
from graphs.stores.budget import open_budget
from graphs.stores.feedback import FeedbackStore
from graphs.stores.lease import Lease, check_held, holding, leases_of
from graphs.stores.ledger import Ledger, LedgerEntry
from graphs.stores.retention import expire_finished
from nodes.policy.budget import OVER_CALLER, OVER_DAILY, BudgetStore
from observability.metrics import observe_cache, observe_run
from observability.tracing import span_callbacks
from providers.config import Depth, Settings, load_settings
from providers.registry import ProviderRegistry
from providers.secrets import redact
from providers.ward_data import WardDataSource, open_ward_data

EventSink = Callable[[dict[str, Any]], None]
log = logging.getLogger("strategist.briefing")
MAX_WARD_CHARS = 64
DEPTHS: tuple[Depth, ...] = ("quick", "standard", "deep")
CONTEXTS: tuple[StrategicContext, ...] = ("defensive", "neutral", "offensive")
# A lease outlives a dead holder by this long at most; the holder renews it every third of it.
LEASE_S = 30.0
# How often a request waiting on another process's analysis looks for its entry.
POLL_S = 0.02


class BriefingFailed(RuntimeError):
    """Nothing at all could be said about the ward (the message says why; the HTTP answer is 500)."""

    def __init__(self, message: str, *, ward: str, thread_id: str) -> None:
        super().__init__(message)
        self.ward = ward
        self.thread_id = thread_id


class BriefingOverBudget(BriefingFailed):
    """The spend caps left nothing to say (the message starts with the cap: the HTTP answer is 402 or 429)."""


def normalise_ward(ward: object) -> str:
    """Strip the ward and cut it to 64 characters; a blank ward is refused (the contract's 400)."""
    text = ward.strip()[:MAX_WARD_CHARS].strip() if isinstance(ward, str) else ""
    if not text:
        raise RequestError("Ward parameter is required")
    return text


def normalise_depth(depth: object) -> Depth:
    """Return the depth, or ``standard`` for anything else (the contract's rule)."""
    return depth if depth in DEPTHS else "standard"


def normalise_context(context: object) -> StrategicContext:
    """Return the strategic context, or ``neutral`` for anything else (the contract's rule)."""
    return context if context in CONTEXTS else "neutral"


def etag_of(body: bytes) -> str:
    """Return the strong, quoted ETag of a stored briefing's bytes."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@dataclass(frozen=True)
class Report:
    """One briefing as served: its JSON bytes, ETag and remaining lifetime, and whether the cache answered."""

    body: bytes
    etag: str
    ttl_s: int
    cached: bool

    def data(self) -> dict[str, Any]:
        """Return the briefing as a dict."""
        value: dict[str, Any] = json.loads(self.body)
        return value


class WardReports:
    """Runs ward briefings on a compiled briefing graph, behind the briefing cache."""

    def __init__(
        self,
        registry: ProviderRegistry,
        checkpointer: BaseCheckpointSaver[str] | None,
        cache: BriefingCache,
        *,
        ledger: Ledger | None = None,
        feedback: FeedbackStore | None = None,
        ward_data: WardDataSource | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        hub: ProgressHub | None = None,
        budget: BudgetStore | None = None,
    ) -> None:
        self.registry = registry
        # Spend caps (graphs/stores/budget.py), shared with the analyses; None: no caps.
        self.budget = budget
        self.checkpointer = checkpointer
        self.cache = cache
        self.ledger = ledger
        self.feedback = feedback
        self.ward_data = ward_data
        self._clock = clock
        self._sleep = sleep
        # Where running briefings publish their progress, by ward, for the live feeds (GET /feed).
        self.hub: ProgressHub = hub or LocalHub()
        self.graph = build_briefing_graph().compile(checkpointer=checkpointer)
        self._flights: dict[str, Future[Report]] = {}
        self._lock = threading.Lock()
        # Counters of this process (what /cache/stats reports).
        self.hits = 0
        self.misses = 0
        self.analyses = 0

    @property
    def ttl_s(self) -> int:
        return self.registry.settings.briefing.etag_ttl_s

    # --- running the graph -----------------------------------------------------------------------------------

    def _context(self, deadline_s: float | None = None, caller_key: str | None = None) -> Context:
        ctx = Context(
            registry=self.registry,
            feedback=self.feedback,
            ward_data=self.ward_data,
            budget=self.budget,
            caller_key=caller_key,
        )
        if deadline_s is not None:
            ctx.deadline_at = ctx.clock() + deadline_s
        return ctx

    @contextlib.contextmanager
    def _store_guard(self, thread_id: str) -> Iterator[None]:
        try:
            yield
        except CheckpointStoreError:
            raise
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            raise CheckpointStoreError(
                f"briefing {thread_id} stopped: the checkpoint store ({describe_store(self.checkpointer)}) failed: "
                f"{store_failure_text(exc)} Resume thread {thread_id} once the store is back.",
                thread_id=thread_id,
            ) from exc

    def _stream(
        self, graph_input: Any, thread_id: str, ctx: Context, on_event: EventSink | None, lease: Lease | None = None
    ) -> BriefingResult:
        # Scale-out: spans per node and provider call when tracing exports; metrics of the run once it ends.
        config: RunnableConfig = {"configurable": {"thread_id": thread_id}, "callbacks": span_callbacks()}
        final: dict[str, Any] = {}
        deriver = EventDeriver("briefing", thread_id)
        started, wall_started = time.perf_counter(), time.time()
        with self._store_guard(thread_id):
            # "sync" durability, as for analyses: a step's checkpoint (and each finished gather branch's writes)
            # is saved before the next step calls a provider.
            for mode, chunk in self.graph.stream(
                graph_input, config, context=ctx, stream_mode=["updates", "custom", "values"], durability="sync"
            ):
                check_held(lease, thread_id)
                if mode == "values":
                    final = cast(dict[str, Any], chunk)
                elif on_event is not None:
                    for event in deriver.feed(mode, chunk):
                        on_event(event.wire())
        observe_run("briefing", final.get("result"), time.perf_counter() - started, since=wall_started)
        return self._finish(final["result"])

    def _publishing(self, ward: str, thread_id: str, on_event: EventSink | None) -> EventSink:
        """Return a sink that sends each event to the caller's sink and to the ward's live feeds."""

        def sink(event: dict[str, Any]) -> None:
            try:
                self.hub.publish(ward, event, thread_id)
            except Exception:  # a feed that cannot be told (its Redis is down) must not stop the briefing
                log.warning("could not publish progress of briefing %s", thread_id, exc_info=True)
            if on_event is not None:
                on_event(event)

        return sink

    def _published(
        self, graph_input: Any, thread_id: str, ctx: Context, sink: EventSink, lease: Lease | None = None
    ) -> BriefingResult:
        try:
            return self._stream(graph_input, thread_id, ctx, sink, lease)
        except Exception as exc:
            sink(Failed(error_class=type(exc).__name__, message=redact(str(exc)), thread_id=thread_id).wire())
            raise

    def _finish(self, raw: dict[str, Any]) -> BriefingResult:
        result = BriefingResult.model_validate(raw)
        if self.ledger is not None:
            writer = next((a for a in reversed(result.attempts) if a.role == "write" and a.outcome == "ok"), None)
            with self._store_guard(result.thread_id):
                self.ledger.record(
                    LedgerEntry(
                        thread_id=result.thread_id,
                        at=self._clock(),
                        provider=writer.provider if writer else None,
                        tier=writer.tier if writer else None,
                        mode="briefing",
                        cost_usd=result.cost_usd,
                        baseline_cost_usd=result.baseline_cost_usd,
                        shadow_intelligent_usd=None,
                        attempts=[
                            {"provider": a.provider, "tier": a.tier, "cost_usd": a.cost_usd} for a in result.attempts
                        ],
                    )
                )
                expire_finished(self.checkpointer, result.thread_id)  # finished: its TTL may start (retention.py)
        return result

    def run(
        self,
        ward: str,
        depth: Depth = "standard",
        context: StrategicContext = "neutral",
        *,
        thread_id: str | None = None,
        on_event: EventSink | None = None,
        wait_s: float = 0.0,
        caller_key: str | None = None,
    ) -> BriefingResult:
        """Run one briefing (no cache) and return its result, also when nothing could be said.

        ``caller_key``: whose spend cap the briefing's calls are reserved against (None: the anonymous caller's).
        """
        thread_id = thread_id or str(uuid.uuid4())
        sink = self._publishing(ward, thread_id, on_event)
        sink(ThreadStarted(thread_id=thread_id, kind="briefing").wire())
        with self._lock:
            self.analyses += 1
        graph_input = {"ward": ward, "depth": depth, "context": context}
        with self._store_guard(thread_id), holding(leases_of(self.checkpointer), thread_id, wait_s=wait_s) as lease:
            return self._published(graph_input, thread_id, self._context(caller_key=caller_key), sink, lease)

    def resume(self, thread_id: str, *, on_event: EventSink | None = None, wait_s: float = 0.0) -> BriefingResult:
        """Continue an interrupted briefing from its last checkpoint (finished research branches are kept).

        Holds the thread's lease (graphs/stores/lease.py); ThreadBusy when another runner keeps it past ``wait_s``.
        """
        with self._store_guard(thread_id), holding(leases_of(self.checkpointer), thread_id, wait_s=wait_s) as lease:
            return self._resume(thread_id, on_event, lease)

    def _resume(self, thread_id: str, on_event: EventSink | None, lease: Lease | None) -> BriefingResult:
        config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
        with self._store_guard(thread_id):
            snapshot = self.graph.get_state(config)
        if not snapshot.values and not snapshot.next:
            raise UnknownThread(f"no briefing with thread id {thread_id!r}")
        if not snapshot.next:
            return self._finish(snapshot.values["result"])
        depth: Depth = snapshot.values.get("depth", "standard")
        # The caller plan held the writer for goes on paying for the rest (the request that started it is gone).
        held = snapshot.values.get("budget_reservation") or {}
        caller = held.get("caller") if isinstance(held.get("caller"), str) else None
        ctx = self._context(self.registry.settings.deadlines.for_depth(depth), caller)
        sink = self._publishing(snapshot.values["ward"], thread_id, on_event)
        sink(ThreadStarted(thread_id=thread_id, kind="briefing").wire())
        return self._published(None, thread_id, ctx, sink, lease)

    # --- cache and single flight ------------------------------------------------------------------------------

    def cached(self, ward: str, depth: Depth = "standard", context: StrategicContext = "neutral") -> Report | None:
        """Return the cached briefing, if one lives (counted as a hit), without running anything."""
        entry = self.cache.get(cache_key(ward, depth, context))
        if entry is None:
            return None
        with self._lock:
            self.hits += 1
        observe_cache(hit=True)
        return self._report(entry, cached=True)

    def report(
        self,
        ward: str,
        depth: Depth = "standard",
        context: StrategicContext = "neutral",
        *,
        fresh: bool = False,
        on_event: EventSink | None = None,
        caller_key: str | None = None,
    ) -> Report:
        """Return the briefing: from the cache while it lives, else from one analysis shared by every caller.

        ``fresh``: skip the cache (``/trigger``); concurrent callers still share the one analysis. ``caller_key``:
        whose cap a briefing run for this request is reserved against. Raises BriefingFailed when nothing at all
        could be said (BriefingOverBudget when the spend caps are why).
        """
        if not fresh:
            hit = self.cached(ward, depth, context)
            if hit is not None:
                return hit
        with self._lock:
            self.misses += 1
        observe_cache(hit=False)
        key = cache_key(ward, depth, context)
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = Future()
        if not leader:
            return flight.result()
        try:
            report = self._lead(key, ward, depth, context, fresh, on_event, caller_key)
        except BaseException as exc:
            flight.set_exception(exc)
            raise
        else:
            flight.set_result(report)
            return report
        finally:
            with self._lock:
                del self._flights[key]

    def _lead(
        self,
        key: str,
        ward: str,
        depth: Depth,
        context: StrategicContext,
        fresh: bool,
        on_event: EventSink | None,
        caller_key: str | None,
    ) -> Report:
        while True:
            if not fresh:
                entry = self.cache.get(key)
                if entry is not None:
                    return self._report(entry, cached=True)
            token = self.cache.acquire(key, LEASE_S)
            if token is not None:
                break
            self._sleep(POLL_S)  # another process runs this analysis: wait for its entry or its lease to go
        with self._renewing(key, token):
            if not fresh:
                entry = self.cache.get(key)  # the previous holder may have stored it just before we took over
                if entry is not None:
                    return self._report(entry, cached=True)
            result = self.run(ward, depth, context, on_event=on_event, caller_key=caller_key)
            if result.briefing is None:
                error = result.error or "nothing could be said"
                # Raised before the cache is written: a refused briefing is never cached, not even as empty.
                failed = BriefingOverBudget if error.startswith((OVER_DAILY, OVER_CALLER)) else BriefingFailed
                raise failed(error, ward=ward, thread_id=result.thread_id)
            body = json.dumps(result.briefing.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"))
            data = body.encode()
            entry = self.cache.put(key, etag_of(data), data, self.ttl_s)
            return self._report(entry, cached=False)

    @contextlib.contextmanager
    def _renewing(self, key: str, token: str) -> Iterator[None]:
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(LEASE_S / 3):
                if not self.cache.renew(key, token, LEASE_S):
                    return

        thread = threading.Thread(target=renew, name="briefing-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            self.cache.release(key, token)

    def _report(self, entry: CachedBriefing, *, cached: bool) -> Report:
        return Report(entry.body, entry.etag, entry.ttl_s(self._clock()), cached)

    def refresh(
        self,
        ward: str,
        depth: Depth = "standard",
        context: StrategicContext = "neutral",
        *,
        on_event: EventSink | None = None,
        caller_key: str | None = None,
    ) -> tuple[Report, int]:
        """Run a fresh briefing, then drop the ward's other cached briefings; return it and how many were dropped
        (the one it replaced included).

        Dropped after, not before: a run the spend caps refuse (or that fails) raises BriefingFailed and leaves
        the cache as it was, so the ward keeps the briefing it had instead of none.
        """
        key = cache_key(ward, depth, context)
        replaced = self.cache.get(key) is not None
        report = self.report(ward, depth, context, fresh=True, on_event=on_event, caller_key=caller_key)
        others = self.cache.delete_matching(f"{CACHE_PREFIX}{glob_escape(ward)}:*", ward=ward, keep=key)
        return report, others + int(replaced)

    def invalidate(self, pattern: str) -> int:
        """Drop the cached briefings whose key matches a Redis glob (only cache entries are ever touched)."""
        return self.cache.delete_matching(pattern)

    def stats(self) -> dict[str, Any]:
        """Describe the cache: backend, live entries, and this process's hits, misses and analyses."""
        lookups = self.hits + self.misses
        return {
            "status": "available",
            "backend": self.cache.name,
            "entries": self.cache.entries(),
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / lookups, 4) if lookups else 0.0,
            "analyses": self.analyses,
            "ttl_s": self.ttl_s,
            "scope": "hits, misses and analyses of this process",
        }


def open_reports(settings: Settings) -> WardReports:
    """Open a briefing service on the configured stores for the life of the process (closed at exit)."""
    stack = contextlib.ExitStack()
    stores = stack.enter_context(open_stores(settings))
    cache = open_briefing_cache(settings)
    stack.callback(cache.close)
    atexit.register(stack.close)
    ward_data = open_ward_data(settings.briefing.ward_data_url, settings.briefing.ward_data_table)
    return WardReports(
        ProviderRegistry(settings),
        stores.checkpointer,
        cache,
        ledger=stores.ledger,
        feedback=stores.feedback,
        ward_data=ward_data,
        budget=open_budget(settings.redis_url, settings.data_dir, os.environ),
    )


@functools.cache
def default_reports() -> WardReports:
    """Return the process-wide briefing service, opened from the environment on first use."""
    return open_reports(load_settings())


def get_ward_report(ward: str, depth: str = "standard", *, context: str = "neutral") -> tuple[dict[str, Any], str, int]:
    """Return ``(briefing, etag, ttl)`` for a ward, cached as the HTTP route's (the backend's entry point).

    Synchronous. ``depth`` and ``context`` outside the contract's values become ``standard`` and ``neutral``.
    Raises RequestError for a blank ward and BriefingFailed when nothing at all could be said.
    """
    report = default_reports().report(normalise_ward(ward), normalise_depth(depth), normalise_context(context))
    return report.data(), report.etag, report.ttl_s
