"""The ward briefing as clients read it (the contract's keys and types), and what the writer model must produce.

- ``BriefingDraft``: the structured output the writer model is asked for and validated against. It has the
  contract's sections with the contract's keys and types, except what we measure instead of asking the model:
  a key intelligence item names the numbered sources it rests on (``sources``), and its ``source_count`` and
  ``confidence`` are computed from those real sources; the briefing's ``confidence_score`` comes from the
  confidence machinery (the draft's own ``confidence`` is the writer's stated certainty, one factor of it).
- ``Briefing``: the contract's 200 body of ``GET /<ward>`` (shared/contracts/strategist-api.md), what
  ``get_ward_report`` returns and what the OpenAPI document describes.
- ``BriefingResult``: the graph's result: the briefing, or why nothing could be said, plus the attempts, costs
  and confidence factors behind it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetPydanticSchema
from typing_extensions import TypedDict

from graphs.result import AttemptModel, Confidence
from graphs.state import StrategicContext
from providers.config import Depth

Category = Literal["narrative", "opposition", "public_sentiment", "development"]
Level = Literal["low", "medium", "high", "critical"]
Priority = Annotated[int, Field(ge=1, le=5)]
Text = Annotated[str, Field(min_length=1, max_length=4000)]


class _Lenient(BaseModel):
    # Models add keys of their own; extra keys are dropped, not an invalid answer.
    model_config = ConfigDict(extra="ignore")


class Opportunity(_Lenient):
    description: Text
    timeline: str
    priority: Priority
    category: str | None = None
    success_metrics: list[str] | None = None


class Risk(_Lenient):
    description: Text
    severity: Level
    timeline: str
    mitigation: str


class Threat(_Lenient):
    description: Text
    severity: Level
    timeline: str
    mitigation_strategy: str | None = None


class RecommendedAction(_Lenient):
    category: str
    description: Text
    timeline: str
    priority: Priority
    success_metrics: list[str] | None = None


class DraftIntelligence(_Lenient):
    category: Category
    content: Text
    impact_level: Level
    actionable: bool
    sources: list[int] = Field(default_factory=list, max_length=20)  # the numbered sources it rests on


class BriefingDraft(_Lenient):
    """What the writer model writes: validated, it becomes the briefing."""

    strategic_overview: Annotated[str, Field(min_length=20, max_length=6000)]
    insights: list[Text] = Field(max_length=20)
    key_intelligence: list[DraftIntelligence] = Field(min_length=1, max_length=20)
    opportunities: list[Opportunity] = Field(default_factory=list, max_length=20)
    risks: list[Risk] = Field(default_factory=list, max_length=20)
    threats: list[Threat] = Field(default_factory=list, max_length=20)
    recommended_actions: list[RecommendedAction] = Field(min_length=1, max_length=20)
    confidence: float | None = Field(default=None, ge=0, le=1)


class KeyIntelligence(BaseModel):
    category: Category
    content: str
    impact_level: Level
    actionable: bool
    source_count: int = Field(ge=0)
    confidence: float = Field(ge=0, le=1)


class ActionLabel(BaseModel):
    type: str
    label: str
    priority: int


class SourceCitation(BaseModel):
    url: str
    title: str
    date: str | None = None
    credibility: float | None = Field(default=None, ge=0, le=1)


class AuditTrail(BaseModel):
    sanitized_at: str
    original_keys: list[str]
    filtered_keys: list[str]
    redactions: dict[str, int] = Field(default_factory=dict)


class Compliance(BaseModel):
    pii_redacted: bool
    content_filtered: bool
    strategic_focus: bool
    audit_trail: AuditTrail


class AnalysisMeta(BaseModel):
    """How the briefing was made (beyond the contract's keys): for the CLI, logs and support."""

    thread_id: str
    depth: Depth
    context: StrategicContext
    providers: list[str]
    cost_usd: float
    baseline_cost_usd: float
    questions: list[str]
    cross_checked_by: str | None = None
    # Research questions the spend caps left unasked, each with the refusal: the briefing was written without them.
    not_researched: list[str] = Field(default_factory=list)


class Briefing(BaseModel):
    """The contract's ward briefing: the 200 body of ``GET /<ward>`` and ``get_ward_report``'s data."""

    ward: str
    generated_at: str
    internal_use_only: bool = True
    strategic_overview: str
    insights: list[str]
    key_intelligence: list[KeyIntelligence]
    opportunities: list[Opportunity]
    risks: list[Risk]
    threats: list[Threat]
    recommended_actions: list[RecommendedAction]
    actions: list[ActionLabel]
    confidence_score: float = Field(ge=0, le=1)
    fallback_mode: bool
    source_citations: list[SourceCitation]
    compliance: Compliance
    analysis: AnalysisMeta


class BriefingResult(BaseModel):
    thread_id: str
    ward: str
    depth: Depth
    context: StrategicContext
    briefing: Briefing | None  # None: nothing at all could be said (error says why)
    error: str | None = None
    attempts: list[AttemptModel]
    confidence: Confidence
    cost_usd: float
    baseline_cost_usd: float
    total_ms: float


class BriefingOutput(TypedDict):
    """The graph's output: the result in its JSON form (as graphs/result.py ``AnalysisOutput``)."""

    result: Annotated[dict[str, Any], GetPydanticSchema(lambda _type, handler: handler(BriefingResult))]
