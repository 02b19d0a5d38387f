"""The orchestrator service: validated requests in, AnalysisResult out; one object shared by CLI and HTTP."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Literal, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Durability, StateSnapshot

from graphs.analysis import build_analysis_graph
from graphs.context import Context
from graphs.errors import CheckpointStoreError, FeedbackError, UnknownThread
from graphs.events import EventDeriver, ThreadStarted, Waiting
from graphs.request import AnalysisRequest
from graphs.result import AnalysisResult
from graphs.stores import describe_store, is_store_failure, store_failure_text
from graphs.stores.budget import open_budget
from graphs.stores.feedback import FeedbackStore, outcome_of
from graphs.stores.lease import Lease, check_held, holding, leases_of
from graphs.stores.ledger import Ledger, LedgerEntry
from graphs.stores.response_cache import ResponseCache, open_response_cache
from graphs.stores.retention import expire_finished
from nodes.policy.budget import BudgetStore
from nodes.policy.calibration import Outcome
from nodes.policy.learned_adequacy import learned_from, verdict_outcome
from nodes.policy.response_cache import cache_key
from observability.metrics import observe_run
from observability.tracing import span_callbacks
from providers.config import Depth, Tier
from providers.registry import ProviderRegistry

EventSink = Callable[[dict[str, Any]], None]


class Orchestrator:
    """Runs analyses on a compiled graph with the checkpointer and registry it is given."""

    def __init__(
        self,
        registry: ProviderRegistry,
        checkpointer: BaseCheckpointSaver[str] | None,
        ledger: Ledger | None = None,
        feedback: FeedbackStore | None = None,
        budget: BudgetStore | None = None,
        response_cache: ResponseCache | None = None,
    ) -> None:
        self.registry = registry
        settings = registry.settings
        # Spend caps from the environment (STRATEGIST_DAILY_BUDGET_USD ...); None without caps.
        self.budget = budget if budget is not None else open_budget(settings.redis_url, settings.data_dir, os.environ)
        self.response_cache = (
            response_cache
            if response_cache is not None
            else open_response_cache(settings.redis_url, settings.data_dir, os.environ)
        )
        self.checkpointer = checkpointer
        self.ledger = ledger
        self.feedback = feedback
        self.graph = build_analysis_graph().compile(checkpointer=checkpointer)

    def record_feedback(self, thread_id: str, correct: bool, *, note: str = "", at: float | None = None) -> Outcome:
        """Record whether an analysis turned out right; historical accuracy and calibration learn from it.

        The outcome carries what was scored (provider, task, raw confidence and factors), read from the
        analysis's final checkpoint. Raises UnknownThread for a thread id the checkpoint store does not know, and
        FeedbackError for an analysis that has not finished or has no answer.
        """
        if self.feedback is None:
            raise FeedbackError("no feedback store is configured")
        snapshot = self._snapshot(thread_id)
        result = snapshot.values.get("result")
        if snapshot.next or not result:
            raise FeedbackError(f"analysis {thread_id!r} has not finished: resume it before judging it")
        outcome = outcome_of(
            AnalysisResult.model_validate(result), correct, at=time.time() if at is None else at, note=note
        )
        self.feedback.record(outcome)
        return outcome

    def _context(self, deadline_s: float | None = None, caller_key: str | None = None) -> Context:
        ctx = Context(registry=self.registry, caller_key=caller_key, feedback=self.feedback, budget=self.budget)
        if self.ledger is not None:
            ctx.correct_cost = self.ledger.correct
        if deadline_s is not None:
            ctx.deadline_at = ctx.clock() + deadline_s
        return ctx

    @contextmanager
    def _store_guard(self, thread_id: str) -> Iterator[None]:
        """Turn a failure of the checkpoint store (Redis gone, disk full) into CheckpointStoreError.

        The store fails inside LangGraph's step loop or the ledger, as a raw redis/sqlite3 exception; the
        caller needs one clear message that names the store and the thread to resume, not a traceback.
        """
        try:
            yield
        except CheckpointStoreError:
            raise
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            raise CheckpointStoreError(
                f"analysis {thread_id} stopped: the checkpoint store ({describe_store(self.checkpointer)}) "
                f"failed: {store_failure_text(exc)} The steps saved before the failure are kept: resume thread "
                f"{thread_id} once the store is back.",
                thread_id=thread_id,
            ) from exc

    def _lease(self, thread_id: str, wait_s: float, on_event: EventSink | None) -> AbstractContextManager[Lease | None]:
        """Hold the thread's lease (graphs/stores/lease.py); a busy thread emits a "waiting" event if we wait."""

        def waiting() -> None:
            if on_event is not None:
                on_event(Waiting(thread_id=thread_id, wait_s=wait_s).wire())

        return holding(leases_of(self.checkpointer), thread_id, wait_s=wait_s, on_wait=waiting)

    def _run(
        self,
        graph_input: Any,
        config: RunnableConfig,
        ctx: Context,
        on_event: EventSink | None,
        lease: Lease | None = None,
    ) -> dict[str, Any]:
        final: dict[str, Any] = {}
        # "sync" durability: each step's checkpoint is written before the next step starts (LangGraph waits
        # for the save after every step), so a process killed right after a provider call, or during the
        # next one, still has that call recorded and a resume does not pay for it again. With the default
        # "async" the save races the next step. tests/integration/test_crash_resume.py holds this. Without a
        # checkpointer there is nothing to wait for, and LangGraph 1.2 fails when asked to.
        durability: Durability | None = "sync" if self.checkpointer is not None else None
        deriver = EventDeriver("analysis", str(config["configurable"]["thread_id"]))
        # Scale-out: spans per node and provider call when tracing exports; metrics of the run once it ends.
        config = {**config, "callbacks": span_callbacks()}
        started, wall_started = time.perf_counter(), time.time()
        with self._store_guard(str(config["configurable"]["thread_id"])):
            for mode, chunk in self.graph.stream(
                graph_input, config, context=ctx, durability=durability, **_stream_options(on_event)
            ):
                # The stream's chunk type is a union over every mode; each branch knows its own shape.
                check_held(lease, str(config["configurable"]["thread_id"]))
                if mode == "values":
                    final = cast(dict[str, Any], chunk)
                elif on_event is not None:
                    for event in deriver.feed(mode, chunk):
                        on_event(event.wire())
        observe_run("analysis", final.get("result"), time.perf_counter() - started, since=wall_started)
        return final

    def analyze(
        self,
        request: AnalysisRequest,
        *,
        thread_id: str | None = None,
        caller_key: str | None = None,
        on_event: EventSink | None = None,
        wait_s: float = 0.0,
    ) -> AnalysisResult:
        """Run an analysis on ``thread_id`` (a new one by default), holding the thread's lease while it runs.

        Raises ThreadBusy when another runner holds the thread for longer than ``wait_s``.
        """
        thread_id = thread_id or str(uuid.uuid4())
        config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
        graph_input = request.graph_input()
        if on_event:
            on_event(ThreadStarted(thread_id=thread_id).wire())
        key = cache_key(request.query, {k: v for k, v in graph_input.items() if k != "query"})
        hit = self._cached(key, thread_id)
        if hit is not None:
            return hit
        with self._store_guard(thread_id), self._lease(thread_id, wait_s, on_event) as lease:
            final = self._run(graph_input, config, self._context(request.deadline_s, caller_key), on_event, lease)
            result = self._finish(final)
        self._cache(key, result)
        return result

    def _cached(self, key: str, thread_id: str) -> AnalysisResult | None:
        """Serve an identical request's answer from the response cache: marked cached, at zero cost."""
        if self.response_cache is None:
            return None
        text = self.response_cache.get(key, time.time())
        if text is None:
            return None
        result = AnalysisResult.model_validate_json(text)
        return result.model_copy(update={"thread_id": thread_id, "cached": True, "cost_usd": 0.0, "attempts": []})

    def _cache(self, key: str, result: AnalysisResult) -> None:
        # Degraded or failed answers are not kept: the next request may find the adequate provider back.
        if self.response_cache is None or result.answer is None or result.fallback_mode:
            return
        fresh = bool(result.routing.classification.get("needs_fresh"))
        ttl = self.response_cache.policy.ttl_for(fresh)
        self.response_cache.put(key, result.model_dump_json(), time.time(), ttl)

    def _finish(self, final: dict[str, Any], at: float | None = None) -> AnalysisResult:
        result = AnalysisResult.model_validate(final["result"])
        if self.ledger is not None:
            # The result is returned (acknowledged) only after its ledger row is written. Rows are keyed by
            # thread id, so recording again on a resume of a finished analysis never counts it twice.
            with self._store_guard(result.thread_id):
                self.ledger.record(LedgerEntry.from_result(result, time.time() if at is None else at))
                # Finished: now (and only now) its checkpoints may get a time to live (graphs/stores/retention.py).
                expire_finished(self.checkpointer, result.thread_id)
        self._learn_from_check(result, time.time() if at is None else at)
        return result

    def _learn_from_check(self, result: AnalysisResult, at: float) -> None:
        """Record the cross-check's verdict on the answer it judged, for routing to learn per (provider, task).

        Recorded here, once the analysis has finished, and not by the cross_check node: nodes only read outcomes
        (the context's OutcomeSource), and a node re-runs when an analysis is resumed from an earlier checkpoint,
        while a finished analysis has one result. Keyed by the thread, so recording it again on a resume of a
        finished analysis replaces it, never adds.
        """
        check = result.cross_check
        if self.feedback is None or check is None or result.provider is None or result.cached:
            return
        judged = result.provider
        if check["provider"] == result.provider:
            # The checker's answer was served instead (it was better supported): the verdict was on the first one.
            superseded = result.escalation.get("superseded") if result.escalation is not None else None
            if superseded is None:
                return
            judged = superseded["provider"]
        answered_by, checked_by = _tier_of(result, judged), _tier_of(result, check["provider"])
        if answered_by is None or checked_by is None:
            return
        task = str(result.routing.classification.get("task", ""))
        outcome = verdict_outcome(
            result.thread_id, at, judged, task, dict(check), answered_by=answered_by, checked_by=checked_by
        )
        if outcome is not None:
            with self._store_guard(result.thread_id):
                self.feedback.record(outcome)

    def _snapshot(self, thread_id: str) -> StateSnapshot:
        with self._store_guard(thread_id):
            snapshot = self.graph.get_state({"configurable": {"thread_id": thread_id}})
        if not snapshot.values and not snapshot.next:
            raise UnknownThread(f"no analysis with thread id {thread_id!r}")
        return snapshot

    def status(self, thread_id: str) -> Literal["complete", "interrupted"]:
        return "interrupted" if self._snapshot(thread_id).next else "complete"

    def resume(self, thread_id: str, *, on_event: EventSink | None = None, wait_s: float = 0.0) -> AnalysisResult:
        """Continue an interrupted analysis from its last checkpoint (a complete one returns its result).

        The thread's lease is taken before its state is read, so a runner that waited for another finds the
        thread as that one left it. Raises ThreadBusy when another runner holds it for longer than ``wait_s``.
        """
        with self._store_guard(thread_id), self._lease(thread_id, wait_s, on_event) as lease:
            return self._resume(thread_id, on_event, lease)

    def _resume(self, thread_id: str, on_event: EventSink | None, lease: Lease | None) -> AnalysisResult:
        config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
        snapshot = self._snapshot(thread_id)
        values = snapshot.values
        if not snapshot.next:
            # Record it (idempotently, dated when it finished): a process killed after the last checkpoint
            # but before its ledger row would otherwise leave a finished, paid-for analysis out of the costs.
            finished = dt.datetime.fromisoformat(snapshot.created_at).timestamp() if snapshot.created_at else None
            return self._finish(values, at=finished)
        depth: Depth = values.get("depth", "standard")
        deadline_s = values.get("constraints", {}).get("deadline_s") or self.registry.settings.deadlines.for_depth(
            depth
        )
        # A resumed analysis gets a fresh deadline: the time the process was dead is not the request's fault.
        final = self._run(None, config, self._context(deadline_s), on_event, lease)
        return self._finish(final)

    def plan(self, request: AnalysisRequest, *, caller_key: str | None = None) -> dict[str, Any]:
        """Classify and route without calling any model (the `route` dry run)."""
        from nodes.classify import classification_of
        from nodes.policy.query_classifier import default_classifier
        from nodes.route import plan

        classification = classification_of(
            default_classifier().predict(request.query), self.registry.settings.routing.fresh_threshold
        )
        routing = plan(
            self.registry,
            classification,
            request.query,
            request.constraints(),
            caller_key,
            learned=learned_from(self.feedback),
        )
        return {
            "classification": classification,
            "chain": [{"provider": s["provider"], "tier": s["tier"], "model": s["model"]} for s in routing["chain"]],
            "reasons": routing["reasons"] + [s["reason"] for s in routing["chain"]],
            "mode": routing["routing_mode"],
            "estimated_cost_usd": routing["estimated_cost_usd"],
            "baseline_cost_usd": routing["baseline_estimate_usd"],
        }


def _tier_of(result: AnalysisResult, provider: str) -> Tier | None:
    """Return the tier a provider answered at in this analysis (from its attempts; None if it made none)."""
    return next((a.tier for a in result.attempts if a.provider == provider), None)


def _stream_options(on_event: EventSink | None) -> dict[str, Any]:
    """Return what a run streams: its result, plus every step's updates and events when someone listens.

    Why not always everything: a "custom" stream makes LangGraph run every node in a pool thread while the caller
    waits on a semaphore (a thread hand-off per step and a pool per run), and "values" copies all 32 channels of
    the state out after every step; with the result's channel alone a single-task step runs inline and a quick
    analysis costs several milliseconds less (bench/overhead.py).
    """
    if on_event is not None:
        return {"stream_mode": ["updates", "custom", "values"]}
    return {"stream_mode": ["values"], "output_keys": ["result"]}
