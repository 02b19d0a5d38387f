"""Request and response bodies of the HTTP API, as pydantic models: they validate what comes in, and the OpenAPI
document (api/openapi.py) is generated from them.

Where the contract is lenient (an unknown depth becomes ``standard``, an unknown context ``neutral``) the model
says so: those fields are strings, and the route maps them. Where it is strict, the model is, and a field's
problem comes back as the contract's message (``BodyModel.messages``) or as "field: what is wrong".
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, WithJsonSchema, field_validator

from api.common import BodyModel, Messages
from graphs.request import MAX_QUERY_CHARS
from graphs.result import AnalysisResult
from providers.config import Depth

MIN_TEXT_CHARS = 10
_Loose = ConfigDict(extra="ignore")
Stamp = Annotated[str, Field(description="ISO-8601 UTC with offset")]
# Request fields the route checks itself, so that a missing, blank or unknown value gets the contract's own 400
# message: the model accepts any string, and the document (validation mode) shows what a valid request sends.
NonBlank = Annotated[str | None, WithJsonSchema({"type": "string", "pattern": r"\S"}, mode="validation")]


def one_of(values: tuple[str, ...]) -> WithJsonSchema:
    """Document a string field the route checks against ``values`` (400 for anything else)."""
    return WithJsonSchema({"type": "string", "enum": list(values)}, mode="validation")


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    error: str


# --- requests ------------------------------------------------------------------------------------------------


class AnalyzeBody(BodyModel):
    """``POST /analyze``: analyse this text (10 to 10,000 characters once stripped)."""

    model_config = _Loose
    messages: ClassVar[Messages] = {
        ("text", "missing"): "Text content is required",
        ("text", "string_type"): "text must be a string",
    }

    text: str = Field(description=f"{MIN_TEXT_CHARS} to {MAX_QUERY_CHARS:,} characters after stripping")
    ward: str | None = Field(default=None, description='default "Unknown"')
    query: str | None = Field(default=None, max_length=2000, description="what to look for (default: a full analysis)")
    depth: Depth = "standard"
    context: Any = Field(default=None, description="defensive | neutral | offensive; anything else: neutral")
    max_cost_usd: float | None = Field(default=None, ge=0)
    deadline_s: float | None = Field(default=None, gt=0, le=3600)
    require_citations: StrictBool = False
    cost_sensitive: StrictBool = False
    cross_check: StrictBool = False

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("Text content is required")
        if len(value) < MIN_TEXT_CHARS:
            raise ValueError("Text too short for meaningful analysis")
        if len(value) > MAX_QUERY_CHARS:
            raise ValueError(f"Text too long - maximum {MAX_QUERY_CHARS:,} characters")
        return value


class FeedbackBody(BodyModel):
    """``POST /feedback``: whether an analysis turned out right."""

    model_config = _Loose
    messages: ClassVar[Messages] = {
        ("thread_id", "missing"): "thread_id is required",
        ("thread_id", "string_type"): "thread_id is required",
        ("correct", "*"): "correct must be true or false",
        ("note", "*"): "note must be a string of at most 2,000 characters",
    }

    thread_id: str = Field(min_length=1, max_length=200)
    correct: StrictBool
    note: str = Field(default="", max_length=2000)

    @field_validator("thread_id")
    @classmethod
    def _thread(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("thread_id is required")
        return value.strip()


class TriggerBody(BodyModel):
    """``POST /trigger``: drop the ward's cached briefings and run a fresh one."""

    model_config = _Loose
    messages: ClassVar[Messages] = {
        ("ward", "missing"): "Ward is required",
        ("ward", "string_type"): "Ward is required",
    }

    ward: str
    depth: Any = Field(default="standard", description="quick | standard | deep; anything else: standard")
    context: Any = Field(default="neutral", description="defensive | neutral | offensive; anything else: neutral")
    priority: Any = None

    @field_validator("ward")
    @classmethod
    def _ward(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("Ward is required")
        return value


class InvalidateBody(BodyModel):
    """``POST /cache/invalidate``: drop the cached briefings whose key matches a Redis glob."""

    model_config = _Loose
    messages: ClassVar[Messages] = {("pattern", "string_type"): "pattern must be a string"}

    pattern: str = Field(
        default="strategist:ward:*",
        max_length=256,
        description="a Redis glob over this service's keys: it must start with 'strategist:'",
    )

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        if not value.startswith("strategist:"):
            raise ValueError(
                "pattern must start with 'strategist:' (only this service's cached briefings can be invalidated)"
            )
        return value


class ResetBody(BodyModel):
    """``POST /circuit-breaker/reset``: close every circuit, or one provider's."""

    model_config = _Loose
    messages: ClassVar[Messages] = {("provider", "string_type"): "provider must be a string"}

    provider: str | None = None


class AlertData(BaseModel):
    model_config = _Loose

    title: str = Field(default="", max_length=500)
    content: str = Field(default="", max_length=10_000)
    priority: str = Field(default="medium", description="critical | high | medium | low | informational")
    category: str = Field(
        default="policy", description="electoral | opposition | policy | media | coalition | crisis | opportunity"
    )
    confidence_score: float = Field(default=0.5, ge=0, le=1)


class PriorityScoreBody(BodyModel):
    """``POST /alerts/priority-score``."""

    model_config = _Loose
    messages: ClassVar[Messages] = {("alert_data", "missing"): "alert_data is required"}

    alert_data: AlertData
    ward: str | None = None


class PoliticalEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    title: str | None = None
    content: str | None = None
    category: str | None = None
    priority: str | None = None
    url: str | None = None
    source: str | None = None
    confidence_score: float | None = Field(default=None, ge=0, le=1)


class ContextualAlertsBody(BodyModel):
    """``POST /alerts/contextual``: political events of a ward, to be turned into alerts."""

    model_config = _Loose
    messages: ClassVar[Messages] = {
        ("ward", "missing"): "Ward is required",
        ("ward", "string_type"): "Ward is required",
        ("political_events", "missing"): "political_events must be a non-empty list",
        ("political_events", "too_short"): "political_events must be a non-empty list",
        ("political_events", "list_type"): "political_events must be a non-empty list",
    }

    ward: str = Field(min_length=1, max_length=200)
    political_events: list[PoliticalEvent | Annotated[str, Field(max_length=10_000)]] = Field(
        min_length=1, max_length=100
    )


# --- responses -----------------------------------------------------------------------------------------------


class AnalyzeResponse(AnalysisResult):
    analysis_type: Literal["content_analysis"]
    text_length: int
    analyzed_at: Stamp
    ward: str


class FeedbackResponse(BaseModel):
    thread_id: str
    correct: bool
    provider: str | None
    task: str
    raw_confidence: float | None
    confidence: float | None
    recorded_at: Stamp


class TriggerResponse(BaseModel):
    status: Literal["analysis_triggered"]
    ward: str
    depth: Depth
    cache_invalidated: int
    result: dict[str, Any]
    timestamp: Stamp


class HealthResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    system_status: Literal["healthy", "degraded", "unhealthy"]
    components: dict[str, Any]
    overall_score: float = Field(ge=0, le=100)
    timestamp: Stamp


class ReadyResponse(BaseModel):
    ready: bool
    checks: dict[str, Any]
    timestamp: Stamp


class AliveResponse(BaseModel):
    alive: Literal[True]
    timestamp: Stamp
    service: Literal["political_strategist"]


class StatusResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    strategist_enabled: bool
    ai_services: dict[str, bool]
    cache_enabled: bool
    routing: dict[str, Any]
    performance: dict[str, Any]
    timestamp: Stamp


class CacheStatsResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["available", "unavailable"]
    hit_rate: float | None = None


class InvalidateResponse(BaseModel):
    invalidated_count: int
    pattern: str
    timestamp: Stamp


class ResetResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["success"]
    message: str
    timestamp: Stamp
    action: Literal["circuit_breaker_reset"]


class Alert(BaseModel):
    alert_id: str
    title: str
    content: str
    priority: str
    category: str
    ward: str
    confidence_score: float = Field(ge=0, le=1)
    strategic_implications: str
    recommended_actions: list[str]
    evidence_sources: list[str]
    urgency_score: float = Field(ge=0, le=1)
    created_at: Stamp
    expires_at: Stamp


class ContextualAlertsResponse(BaseModel):
    alerts: list[Alert]
    total: int
    ward: str
    generated_at: Stamp


class PriorityScoreResponse(BaseModel):
    priority_score: float = Field(ge=0, le=1)
    ward: str | None
    calculated_at: Stamp


class AnalysisFailedBody(BaseModel):
    error: Literal["Analysis failed"]
    ward: str
    timestamp: Stamp
    retry_after: int
