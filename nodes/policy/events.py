"""The one event model of progress: what the nodes emit and what the CLI, the SSE routes and workers send on.

Each event is a pydantic model with a literal ``event`` field (the discriminator); its JSON form is
``event.wire()`` (a dict of JSON values) and back with ``parse_event``. The dict form is what travels through
LangGraph's custom stream, the ``on_event`` sinks, the ``strategist.stream`` API and Redis pub/sub, so a consumer
on another machine needs nothing but JSON to follow an analysis.

Two sources make a run's events (graphs/events.py joins them): the nodes emit what happens *inside* a step
(an attempt started, a hedge started or was refused, a retry was scheduled, a research question went out)
through ``nodes.policy.progress.emit``; what a step *decided* (classification, route, attempt outcomes,
validation verdicts, agreement, confidence, cost so far) is derived from its state update, so it is reported
exactly as it was checkpointed.

This module sits low (nodes.policy) so nodes can import it; ``graphs.events`` re-exports it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

Kind = Literal["analysis", "briefing"]


class _Event(BaseModel):
    # Extra keys are kept, not refused: a newer producer (another process, another version) may add fields, and an
    # older consumer must still read the ones it knows.
    model_config = ConfigDict(extra="allow", frozen=True)

    def wire(self) -> dict[str, Any]:
        """Return the JSON form (a dict of JSON values, ``event`` first)."""
        return self.model_dump(mode="json")


class ThreadStarted(_Event):
    """A run began (or resumed) on this thread: the id to resume it with."""

    event: Literal["thread"] = "thread"
    thread_id: str
    kind: Kind = "analysis"


class NodeFinished(_Event):
    """A step of the graph finished and its update was checkpointed."""

    event: Literal["node"] = "node"
    node: str


class Classified(_Event):
    """classify's estimate of what the query needs."""

    event: Literal["classified"] = "classified"
    fresh_p: float
    needs_fresh: bool
    complexity: str
    task: str


class RouteStep(BaseModel):
    provider: str
    tier: str
    model: str
    reason: str = ""


class Routed(_Event):
    """route's chain of providers, each with why it is there, and the decision's reasons."""

    event: Literal["routed"] = "routed"
    chain: list[RouteStep]
    reasons: list[str]
    mode: str = "intelligent"
    estimated_cost_usd: float = 0.0


class AttemptStarted(_Event):
    """A provider call went out (``hedge``: in parallel with a slow one before it)."""

    event: Literal["attempt_start"] = "attempt_start"
    provider: str
    model: str
    hedge: bool = False
    stage: str | None = None  # the briefing stage (gather, write, cross_check); None for an analysis answer


class AttemptEnded(_Event):
    """A provider call ended: answered (``ok``), failed (``error`` with its class), ``invalid`` or ``cancelled``."""

    event: Literal["attempt_end"] = "attempt_end"
    provider: str
    model: str
    tier: str
    role: str
    outcome: Literal["ok", "error", "invalid", "cancelled"]
    error_class: str | None = None
    error: str | None = None
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    hedge: bool = False


class HedgeRefused(_Event):
    """A slow call was not hedged (hedge budget spent, or the next provider unavailable)."""

    event: Literal["hedge_refused"] = "hedge_refused"
    provider: str


class AttemptAbandoned(_Event):
    """A call past its provider's short leash was given up (its provider started failing): the next one goes."""

    event: Literal["attempt_abandoned"] = "attempt_abandoned"
    provider: str


class Waiting(_Event):
    """Another process runs this thread: this one waits up to ``wait_s`` for its lease."""

    event: Literal["waiting"] = "waiting"
    thread_id: str
    wait_s: float


class RateLimitWait(_Event):
    """The next call goes to a provider that asked to be left alone (429 + Retry-After): it is asked in ``wait_s``."""

    event: Literal["rate_limit_wait"] = "rate_limit_wait"
    provider: str
    wait_s: float


class RetryScheduled(_Event):
    """The same provider will be asked again after ``wait_s`` (a transient error)."""

    event: Literal["retry_scheduled"] = "retry_scheduled"
    provider: str
    wait_s: float


class Validated(_Event):
    """validate's verdict on an answer (or on a cross-check's reply): accepted, or rejected with the reason."""

    event: Literal["validated"] = "validated"
    provider: str | None = None
    verdict: Literal["accepted", "rejected"]
    reason: str = ""
    escalation: str | None = None  # accepted: the cascade's decision (accept, escalate, requested, off, ...)


class CrossCheckStarted(_Event):
    event: Literal["cross_check_start"] = "cross_check_start"
    provider: str


class CrossChecked(_Event):
    """Another vendor's check came back: how far it agrees with the served answer (0-1)."""

    event: Literal["cross_checked"] = "cross_checked"
    provider: str
    agreement: float
    detail: str = ""


class Factor(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    value: float
    weight: float = 0.0


class ConfidenceScored(_Event):
    """score's confidence, with the factors it rests on."""

    event: Literal["confidence"] = "confidence"
    value: float
    factors: list[Factor] = []
    method: str = ""
    calibrated: bool | None = None


class CostSoFar(_Event):
    """What the run has spent so far (every attempt this run recorded, cancelled hedges included)."""

    event: Literal["cost"] = "cost"
    cost_usd: float
    attempts: int


class PlanMade(_Event):
    event: Literal["plan"] = "plan"
    questions: list[str]


class GatherStarted(_Event):
    event: Literal["gather_start"] = "gather_start"
    question: str
    text: str


class GatherFinished(_Event):
    event: Literal["gather_end"] = "gather_end"
    question: str
    provider: str | None
    sources: int
    error: str | None


class WardDataRead(_Event):
    event: Literal["ward_data"] = "ward_data"
    items: int
    error: str | None = None


class CredibilityScored(_Event):
    event: Literal["credibility"] = "credibility"
    sources: int
    weak: int


class Sanitised(_Event):
    event: Literal["sanitise"] = "sanitise"
    redactions: int
    filtered: int


class Completed(_Event):
    """The run finished: who answered, how confident, what it cost (``error``: why nothing could be said)."""

    event: Literal["complete"] = "complete"
    kind: Kind = "analysis"
    thread_id: str = ""
    providers: list[str] = []
    confidence: float = 0.0
    cost_usd: float = 0.0
    fallback_mode: bool = False
    error: str | None = None


class Failed(_Event):
    """The run stopped with an exception (the checkpoint store failed, a bug): nothing more will come."""

    event: Literal["error"] = "error"
    error_class: str
    message: str
    thread_id: str | None = None


Event = Annotated[
    ThreadStarted
    | NodeFinished
    | Classified
    | Routed
    | AttemptStarted
    | AttemptEnded
    | HedgeRefused
    | AttemptAbandoned
    | Waiting
    | RateLimitWait
    | RetryScheduled
    | Validated
    | CrossCheckStarted
    | CrossChecked
    | ConfidenceScored
    | CostSoFar
    | PlanMade
    | GatherStarted
    | GatherFinished
    | WardDataRead
    | CredibilityScored
    | Sanitised
    | Completed
    | Failed,
    Field(discriminator="event"),
]
_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


class UnknownEvent(ValueError):
    """A dict that is not an event of this model (unknown ``event``, or missing fields)."""


def parse_event(data: dict[str, Any] | str | bytes) -> Event:
    """Return the typed event of a JSON form (a dict, or its JSON text); raise UnknownEvent otherwise."""
    try:
        if isinstance(data, str | bytes):
            return _ADAPTER.validate_json(data)
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise UnknownEvent(f"not a progress event: {exc.errors(include_url=False)[:1]}") from None


def event_schema() -> dict[str, Any]:
    """Return the JSON schema of the event union (for clients in other languages)."""
    return _ADAPTER.json_schema()
