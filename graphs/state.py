"""State schemas of the analysis graph: input, internal state, output, and the public result model.

State holds JSON-native values only (TypedDicts, lists, numbers, strings): checkpoints then survive any
serializer and any upgrade of our own classes. The pydantic ``AnalysisResult`` is built from the final state.
"""

from __future__ import annotations

import operator
from typing import Annotated, Literal, NotRequired

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from providers.config import Depth, Tier

# "cancelled": the loser of a hedged pair, abandoned when the other answered first (its cost is estimated).
Outcome = Literal["ok", "error", "invalid", "skipped", "cancelled"]
Role = Literal["answer", "cross_check"]
StrategicContext = Literal["defensive", "neutral", "offensive"]

MAX_QUERY_CHARS = 10_000


class Constraints(TypedDict, total=False):
    max_cost_usd: float
    deadline_s: float
    require_citations: bool
    cost_sensitive: bool
    cross_check: bool


class AnalysisInput(TypedDict):
    query: str
    depth: NotRequired[Depth]
    ward: NotRequired[str | None]
    context: NotRequired[StrategicContext]
    constraints: NotRequired[Constraints]


class ChainStep(TypedDict):
    provider: str
    tier: Tier
    model: str
    reason: str


class Attempt(TypedDict):
    provider: str
    model: str
    tier: Tier
    role: Role
    outcome: Outcome
    error_class: str | None
    error: str | None
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cost_usd: float
    started_at: NotRequired[float]  # wall-clock epoch seconds (the context's clock) when the call went out
    hedge: NotRequired[bool]  # started in parallel with the previous chain step, which was slow to answer


class CitationDict(TypedDict):
    url: str
    title: str
    date: str


class Candidate(TypedDict):
    """The answer of the last successful attempt, before validation."""

    text: str
    provider: str
    model: str
    tier: Tier
    vendor: str
    finish_reason: str
    citations: list[CitationDict]
    mean_logprob: float | None
    stated_confidence: float | None  # the model's own "Confidence: x" line, when it gave one


class Rejection(TypedDict):
    attempt_index: int
    reason: str


class Classification(TypedDict):
    fresh_p: float
    complexity_p: dict[str, float]
    task_p: dict[str, float]
    complexity: str
    task: str
    needs_fresh: bool


class CrossCheck(TypedDict):
    provider: str
    model: str
    agreement: float
    method: str
    text: str


class Superseded(TypedDict):
    """The first answer, when a disagreeing checker's answer was better supported and served instead."""

    provider: str
    model: str
    text: str


class Escalation(TypedDict):
    """The confidence-gated cascade's decision on the first validated answer, and what came of it."""

    decision: Literal["requested", "escalate", "accept", "not_possible", "off"]
    reason: str
    raw: float | None  # preliminary raw confidence of the first answer, before any cross-check
    calibrated: float
    threshold: float
    outcome: NotRequired[str]  # set by cross_check: agreement, and which answer is served
    superseded: NotRequired[Superseded]


class AnalysisState(AnalysisInput):
    deadline_at: NotRequired[float]  # wall-clock epoch seconds
    started_at: NotRequired[float]
    classification: NotRequired[Classification]
    chain: NotRequired[list[ChainStep]]
    reasons: NotRequired[list[str]]
    routing_mode: NotRequired[str]
    shadow: NotRequired[dict[str, object] | None]  # what intelligent routing would have done (shadow mode)
    estimated_cost_usd: NotRequired[float]
    baseline_estimate_usd: NotRequired[float]
    cursor: NotRequired[int]  # index of the next chain step to try
    attempts: Annotated[list[Attempt], operator.add]
    candidate: NotRequired[Candidate | None]
    answer: NotRequired[Candidate | None]  # the validated answer
    rejections: Annotated[list[Rejection], operator.add]
    deadline_passed: NotRequired[bool]  # measured by the last node, so routers stay pure
    retry_at: NotRequired[float | None]  # set by call_model: retry the same chain step, not before this time
    stop_reason: NotRequired[str | None]  # set when an error ends the analysis (bad request)
    cross_chain: NotRequired[list[ChainStep]]
    cross_cursor: NotRequired[int]
    cross_check: NotRequired[CrossCheck | None]
    escalation: NotRequired[Escalation | None]  # computed by validate, so route_after_validate stays pure
    result: NotRequired[dict[str, object]]


class AnalysisOutput(TypedDict):
    result: dict[str, object]


# --- the public result ---------------------------------------------------------------------------------------


class AttemptModel(BaseModel):
    provider: str
    model: str
    tier: Tier
    role: Role = "answer"
    outcome: Outcome
    error_class: str | None = None
    error: str | None = None
    latency_ms: float
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    started_at: float | None = None
    hedge: bool = False


class ChainStepModel(BaseModel):
    provider: str
    tier: Tier
    model: str
    reason: str


class RoutingModel(BaseModel):
    classification: Classification
    chain: list[ChainStepModel]
    reasons: list[str]
    mode: str = "intelligent"
    estimated_cost_usd: float = 0.0
    shadow: dict[str, object] | None = None


class Factor(BaseModel):
    name: str
    value: float = Field(ge=0, le=1)
    weight: float = Field(ge=0, le=1)
    detail: str = ""


class Confidence(BaseModel):
    value: float = Field(ge=0, le=1)
    factors: list[Factor]
    method: str = ""
    raw: float | None = Field(default=None, ge=0, le=1)  # the weighted combination before calibration
    calibration: str = ""  # the calibration model that turned the factors into value, and its data


class Citation(BaseModel):
    url: str
    title: str = ""
    date: str = ""


class Timings(BaseModel):
    total_ms: float
    model_ms: float


class AnalysisResult(BaseModel):
    thread_id: str
    query: str
    depth: Depth
    answer: str | None
    provider: str | None
    model: str | None
    tier: Tier | None
    attempts: list[AttemptModel]
    routing: RoutingModel
    confidence: Confidence
    citations: list[Citation]
    cost_usd: float
    baseline_cost_usd: float
    fallback_mode: bool
    error: str | None = None
    cross_check: CrossCheck | None = None
    escalation: Escalation | None = None
    timings: Timings
