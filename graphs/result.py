"""The public result of an analysis: pydantic models built from the graph's final state.

What the Python API returns, what the HTTP API answers and what the graph's output schema describes.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, GetPydanticSchema
from typing_extensions import TypedDict

from graphs.state import Classification, CrossCheck, Escalation, Outcome, Role
from providers.config import Depth, Tier


class AttemptModel(BaseModel):
    provider: str
    model: str  # the model that answered, as the provider reported it: what the cost is priced at
    configured_model: str | None = None  # the model asked for
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
    last_resort: bool = False  # asked only once every adequate provider has failed; its answer is degraded
    silent: bool = False  # it had stopped answering when routed: put behind the providers that answered


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
    # False until enough outcomes exist to fit a calibration model: value is then the raw combination.
    calibrated: bool = False
    degenerate: list[str] = Field(default_factory=list)  # echo, repetition, truncated, wrong_language, empty


class Review(BaseModel):
    """Whether a person should check the answer, by a threshold certified on recorded outcomes.

    When ``certified``: among answers the gate accepts (``needs_review`` false), the error rate is at most
    ``alpha`` with probability at least 1 - ``delta``; ``coverage`` is the share of the ``n`` outcomes it rests on
    that the threshold accepts. Uncertified (too few outcomes, or none good enough), every answer needs review.
    """

    needs_review: bool = True
    certified: bool = False
    alpha: float | None = None
    delta: float | None = None
    threshold: float | None = None
    coverage: float = 0.0
    n: int = 0
    score: float | None = None  # what the threshold is compared with (the gate's calibrated confidence)
    reason: str = ""


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
    # Why the answer is degraded: served by a tier that cannot serve the need (nodes/policy/degraded.py).
    fallback_reason: str | None = None
    # Served from the response cache (graphs/stores/response_cache.py): no provider was called, nothing was paid.
    cached: bool = False
    error: str | None = None
    cross_check: CrossCheck | None = None
    escalation: Escalation | None = None
    timings: Timings
    needs_review: bool = True
    review: Review | None = None


class AnalysisOutput(TypedDict):
    """The graph's output: the result in its JSON form (``AnalysisResult.model_dump(mode="json")``).

    The annotation gives the output schema the result's fields (what LangGraph Studio and
    ``get_output_jsonschema`` show) while the value stays a plain dict, as everything in state does.
    """

    result: Annotated[dict[str, Any], GetPydanticSchema(lambda _type, handler: handler(AnalysisResult))]
