"""Progress events of a run, from a LangGraph stream: the custom events the nodes emit, plus what each step's
state update decided.

``events_of(graph.stream(..., stream_mode=["custom", "updates"]))`` yields typed events (nodes/policy/events.py,
re-exported here); ``EventDeriver`` does the same one chunk at a time for loops that also read the "values"
mode. Derived from an update: the classification, the route (chain and reasons), each attempt's end (answered,
failed with its error class, invalid, cancelled) and the cost so far, a cross-check's agreement, the confidence
with its factors and the completion. Emitted by the nodes themselves (they happen inside a step): attempt and
hedge starts, refused hedges, scheduled retries, rejected answers, briefing stage details. Also derived: accepted
answers (with the cascade's decision) and finished research questions.

A custom chunk that is not one of these events (a node of a newer version) is dropped with a debug log: add
its type to the union in nodes/policy/events.py to send it on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from nodes.policy.events import (
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
    Factor,
    Failed,
    GatherFinished,
    GatherStarted,
    HedgeRefused,
    Kind,
    NodeFinished,
    PlanMade,
    RateLimitWait,
    RetryScheduled,
    Routed,
    RouteStep,
    Sanitised,
    ThreadStarted,
    UnknownEvent,
    Validated,
    Waiting,
    WardDataRead,
    event_schema,
    parse_event,
)

__all__ = [
    "AttemptAbandoned",
    "AttemptEnded",
    "AttemptStarted",
    "Classified",
    "Completed",
    "ConfidenceScored",
    "CostSoFar",
    "CredibilityScored",
    "CrossCheckStarted",
    "CrossChecked",
    "Event",
    "EventDeriver",
    "Failed",
    "GatherFinished",
    "GatherStarted",
    "HedgeRefused",
    "NodeFinished",
    "PlanMade",
    "RateLimitWait",
    "RetryScheduled",
    "Routed",
    "Sanitised",
    "ThreadStarted",
    "UnknownEvent",
    "Validated",
    "Waiting",
    "WardDataRead",
    "event_schema",
    "events_of",
    "parse_event",
]
log = logging.getLogger("strategist.events")


class EventDeriver:
    """Turns one run's stream chunks into events; keeps the cost so far across chunks."""

    def __init__(self, kind: Kind = "analysis", thread_id: str = "") -> None:
        self.kind: Kind = kind
        self.thread_id = thread_id
        self.cost_usd = 0.0
        self.attempts = 0

    def feed(self, mode: str, chunk: Any) -> list[Event]:
        """Return the events of one ``(mode, chunk)`` of the stream ("values" and other modes give none)."""
        if mode == "custom":
            try:
                return [parse_event(chunk)]
            except UnknownEvent:
                log.debug("dropped a custom stream chunk that is not a progress event: %r", chunk)
                return []
        if mode != "updates" or not isinstance(chunk, dict):
            return []
        events: list[Event] = []
        for node, update in chunk.items():
            if node.startswith("__"):  # __interrupt__ and the like: not a step
                continue
            if isinstance(update, dict):
                events += self._derive(update)
            events.append(NodeFinished(node=node))
        return events

    def _derive(self, update: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        classification = update.get("classification")
        if isinstance(classification, dict):
            events.append(Classified.model_validate(classification))
        if "routing_mode" in update and "chain" in update:
            chain = [RouteStep.model_validate(step) for step in update["chain"]]
            events.append(
                Routed(
                    chain=chain,
                    reasons=list(update.get("reasons", [])),
                    mode=update["routing_mode"],
                    estimated_cost_usd=update.get("estimated_cost_usd", 0.0),
                )
            )
        for finding in update.get("findings") or []:
            if finding.get("question_id") != "ward_data":  # the ward's own data reports itself (WardDataRead)
                events.append(
                    GatherFinished(
                        question=finding["question_id"],
                        provider=finding.get("provider"),
                        sources=len(finding.get("sources") or []),
                        error=finding.get("error"),
                    )
                )
        answer, escalation = update.get("answer"), update.get("escalation")
        if isinstance(answer, dict) and isinstance(escalation, dict) and "cross_cursor" not in update:
            # validate accepted the answer (cross_check, which may also serve an answer, always moves its cursor).
            events.append(
                Validated(
                    provider=answer.get("provider"),
                    verdict="accepted",
                    escalation=escalation.get("decision"),
                    reason=escalation.get("reason", ""),
                )
            )
        attempts = update.get("attempts") or []
        for attempt in attempts:
            events.append(AttemptEnded.model_validate(attempt))
            self.cost_usd += float(attempt.get("cost_usd", 0.0))
            self.attempts += 1
        if attempts:
            events.append(CostSoFar(cost_usd=round(self.cost_usd, 8), attempts=self.attempts))
        check = update.get("cross_check") or update.get("check")
        if isinstance(check, dict):
            events.append(
                CrossChecked(provider=check["provider"], agreement=check["agreement"], detail=check.get("detail", ""))
            )
        result = update.get("result")
        if isinstance(result, dict):
            events += self._completed(result)
        return events

    def _completed(self, result: dict[str, Any]) -> list[Event]:
        confidence = result.get("confidence") or {}
        value = float(confidence.get("value", 0.0))
        scored = ConfidenceScored(
            value=value,
            factors=[Factor.model_validate(f) for f in confidence.get("factors", [])],
            method=confidence.get("method", ""),
            calibrated=confidence.get("calibrated"),
        )
        briefing = result.get("briefing")
        if self.kind == "briefing":
            providers = list(briefing["analysis"]["providers"]) if isinstance(briefing, dict) else []
            fallback = bool(briefing["fallback_mode"]) if isinstance(briefing, dict) else True
        else:
            providers = [p for p in (result.get("provider"), (result.get("cross_check") or {}).get("provider")) if p]
            fallback = bool(result.get("fallback_mode"))
        done = Completed(
            kind=self.kind,
            thread_id=str(result.get("thread_id") or self.thread_id),
            providers=providers,
            confidence=value,
            cost_usd=float(result.get("cost_usd", self.cost_usd)),
            fallback_mode=fallback,
            error=result.get("error"),
        )
        return [scored, done]


def events_of(stream: Iterable[Any], kind: Kind = "analysis", thread_id: str = "") -> Iterator[Event]:
    """Yield the events of a graph stream made with ``stream_mode=["custom", "updates"]`` (other modes ignored)."""
    deriver = EventDeriver(kind, thread_id)
    # Typed Any: LangGraph types a multi-mode stream's items as a union over every mode's chunk.
    for mode, chunk in stream:
        yield from deriver.feed(mode, chunk)
